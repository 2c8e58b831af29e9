// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package hclspec

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// fuzzSeeds reads the vectors without testing.T (fuzz seeding happens before
// any T exists).
func fuzzSeeds(f *testing.F) *vectorFile {
	b, err := os.ReadFile(filepath.Join("testdata", "nomad-config-encoding.json"))
	if err != nil {
		f.Fatal(err)
	}
	var v vectorFile
	if err := json.Unmarshal(b, &v); err != nil {
		f.Fatal(err)
	}
	return &v
}

// FuzzDecode feeds arbitrary bytes to Decode: it must return an error or a
// value, never panic. The seeds (every captured blob plus malformed
// fragments) run as an ordinary test in `go test`.
func FuzzDecode(f *testing.F) {
	for _, c := range fuzzSeeds(f).Cases {
		if c.MsgpackHex != "" {
			b, err := hex.DecodeString(c.MsgpackHex)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
			f.Add(b[:len(b)/2])
		}
	}
	for _, h := range []string{"", "c0", "80", "81a178c0", "91c0", "d4000000", "c7ff00", "dd7fffffff", "a3616263",
		"cb7ff0000000000000", "cbfff8000000000000", "81a16ecf8000000000000000", "81a163d903316532"} {
		b, _ := hex.DecodeString(h)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var task exampleTask
		_ = Decode(exampleTaskSpec, raw, &task)
		var generic map[string]any
		_ = Decode(nil, raw, &generic)
		var numbers numbersConfig
		_ = Decode(nil, raw, &numbers)
	})
}

// FuzzEncode feeds arbitrary config bodies to both encoders and decodes what
// they accept: no input may panic.
func FuzzEncode(f *testing.F) {
	for _, c := range fuzzSeeds(f).Cases {
		if c.ConfigBody != nil {
			f.Add(*c.ConfigBody)
		}
	}
	f.Add("image = <<EOF\nx\nEOF\n")
	f.Add("image = \"img\"\nx = [for s in [\"a\"] : upper(s)]")
	f.Add("image = \"${a.b[0].c}${env[\"X\"]}\"")
	f.Fuzz(func(t *testing.T, body string) {
		if raw, err := EncodeTaskConfig(exampleTaskSpec, body, nil); err == nil {
			var task exampleTask
			_ = Decode(exampleTaskSpec, raw, &task)
		}
		if raw, err := EncodePluginConfig(exampleTaskSpec, body); err == nil {
			var task exampleTask
			_ = Decode(exampleTaskSpec, raw, &task)
		}
	})
}
