// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package hclspec

import (
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/shoenig/test/must"
	"github.com/zclconf/go-cty/cty"
	ctymsgpack "github.com/zclconf/go-cty/cty/msgpack"
)

type tartTaskConfig struct {
	Image    string            `codec:"image"`
	Command  string            `codec:"command"`
	Args     []string          `codec:"args"`
	CPU      int               `codec:"cpu"`
	Memory   *uint32           `codec:"memory"`
	DiskSize int64             `codec:"disk_size"`
	Env      map[string]string `codec:"env"`
	Network  *tartNetwork      `codec:"network"`
	Dirs     []tartDir         `codec:"dir"`
}

type tartNetwork struct {
	Mode string `codec:"mode"`
}

type tartDir struct {
	HostPath  string `codec:"host_path"`
	GuestName string `codec:"guest_name"`
	ReadOnly  bool   `codec:"read_only"`
}

func vectorCaseByName(t *testing.T, name string) *vectorCase {
	t.Helper()
	v := loadVectors(t)
	for i := range v.Cases {
		if v.Cases[i].Name == name {
			return &v.Cases[i]
		}
	}
	t.Fatalf("no vector case %q", name)
	return nil
}

func TestDecode_tartTaskVector(t *testing.T) {
	t.Parallel()
	c := vectorCaseByName(t, "tart/task_config/full")
	raw, err := hex.DecodeString(c.MsgpackHex)
	must.NoError(t, err)

	var cfg tartTaskConfig
	must.NoError(t, Decode(specFromNeutral(t, c.Schema), raw, &cfg))
	mem := uint32(8192)
	must.Eq(t, tartTaskConfig{
		Image:    "ghcr.io/cirruslabs/macos-sequoia-xcode:latest",
		Command:  "/bin/bash",
		Args:     []string{"-c", "echo hello"},
		CPU:      4,
		Memory:   &mem,
		DiskSize: 60,
		Network:  &tartNetwork{Mode: "softnet"},
		Dirs: []tartDir{
			{HostPath: "/Users/ci/cache", GuestName: "cache"},
			{HostPath: "/Users/ci/tools", GuestName: "tools", ReadOnly: true},
		},
	}, cfg)
}

func TestDecode_emptyRawGivesZero(t *testing.T) {
	t.Parallel()
	cfg := tartTaskConfig{Image: "stale"}
	must.NoError(t, Decode(nil, nil, &cfg))
	must.Eq(t, tartTaskConfig{}, cfg)
}

func TestDecode_outMustBePointer(t *testing.T) {
	t.Parallel()
	var cfg tartTaskConfig
	err := Decode(nil, []byte{0x80}, cfg)
	must.ErrorIs(t, err, ErrDecode)
	must.ErrorIs(t, Decode(nil, []byte{0x80}, nil), ErrDecode)
}

func marshalValue(t *testing.T, v cty.Value) []byte {
	t.Helper()
	b, err := ctymsgpack.Marshal(v, v.Type())
	must.NoError(t, err)
	return b
}

type numbersConfig struct {
	I   int           `codec:"i"`
	I8  int8          `codec:"i8"`
	U16 uint16        `codec:"u16"`
	U64 uint64        `codec:"u64"`
	F32 float32       `codec:"f32"`
	F64 float64       `codec:"f64"`
	D   time.Duration `codec:"d"`
	Any any           `codec:"any"`
	Raw cty.Value     `codec:"raw"`
}

func TestDecode_numbersAndDurations(t *testing.T) {
	t.Parallel()
	raw := marshalValue(t, cty.ObjectVal(map[string]cty.Value{
		"i":   cty.NumberIntVal(-7),
		"i8":  cty.StringVal("-128"),
		"u16": cty.NumberIntVal(65535),
		"u64": cty.StringVal("18446744073709551615"), // Nomad's text form
		"f32": cty.NumberFloatVal(2.5),
		"f64": cty.StringVal("0.1"),
		"d":   cty.StringVal("1m30s"),
		"any": cty.TupleVal([]cty.Value{cty.NumberIntVal(1), cty.StringVal("a"), cty.True}),
		"raw": cty.StringVal("kept"),
	}))
	var got numbersConfig
	must.NoError(t, Decode(nil, raw, &got))
	must.Eq(t, -7, got.I)
	must.Eq(t, int8(-128), got.I8)
	must.Eq(t, uint16(65535), got.U16)
	must.Eq(t, uint64(18446744073709551615), got.U64)
	must.Eq(t, float32(2.5), got.F32)
	must.Eq(t, 0.1, got.F64)
	must.Eq(t, 90*time.Second, got.D)
	must.Eq(t, []any{int64(1), "a", true}, got.Any.([]any))
	must.True(t, got.Raw.RawEquals(cty.StringVal("kept")))
}

func TestDecode_errorsNameTheField(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		value cty.Value
		want  string
	}{
		{"bad number string", cty.ObjectVal(map[string]cty.Value{"i": cty.StringVal("abc")}),
			`field "i": expected a number, got string "abc"`},
		{"fraction into int", cty.ObjectVal(map[string]cty.Value{"i": cty.NumberFloatVal(2.5)}),
			`field "i": expected a whole number, got 2.5`},
		{"int8 overflow", cty.ObjectVal(map[string]cty.Value{"i8": cty.NumberIntVal(128)}),
			`field "i8": 128 is out of range for int8`},
		{"negative into uint", cty.ObjectVal(map[string]cty.Value{"u16": cty.NumberIntVal(-1)}),
			`field "u16": -1 is out of range for uint16`},
		{"uint64 overflow", cty.ObjectVal(map[string]cty.Value{"u64": cty.StringVal("18446744073709551616")}),
			`field "u64": 18446744073709551616 is out of range for uint64`},
		{"float32 overflow", cty.ObjectVal(map[string]cty.Value{"f32": cty.StringVal("1e39")}),
			`field "f32": 1e+39 is out of range for float32`},
		{"bad duration", cty.ObjectVal(map[string]cty.Value{"d": cty.StringVal("soon")}),
			`field "d": expected a duration such as "30s", got string "soon"`},
		{"unknown key", cty.ObjectVal(map[string]cty.Value{"nope": cty.True}),
			`field "nope": no field of hclspec.numbersConfig has the tag codec:"nope"`},
		{"root not object", cty.StringVal("x"),
			`config: expected an object, got string "x"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got numbersConfig
			err := Decode(nil, marshalValue(t, tc.value), &got)
			must.ErrorIs(t, err, ErrDecode)
			must.EqError(t, err, tc.want)
			var de *DecodeError
			must.True(t, errors.As(err, &de))
		})
	}
}
