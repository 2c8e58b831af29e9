// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package sdk_test

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/shoenig/test/must"
	"google.golang.org/protobuf/proto"

	basepb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/base"
	driverpb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/drivers"
	hclspecpb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/hclspec"
	"github.com/tartnomad/nomad-driver-tart/driver/internal/wire"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk/hclspec"
)

// neutralSpec is the schema tree of the golden vectors (see their
// conventions.schema).
type neutralSpec struct {
	Kind       string                  `json:"kind"`
	Name       string                  `json:"name"`
	Type       string                  `json:"type"`
	Required   bool                    `json:"required"`
	Nested     *neutralSpec            `json:"nested"`
	MinItems   int                     `json:"min_items"`
	MaxItems   int                     `json:"max_items"`
	Labels     []string                `json:"labels"`
	Attributes map[string]*neutralSpec `json:"attributes"`
	Values     []*neutralSpec          `json:"values"`
	Primary    *neutralSpec            `json:"primary"`
	Default    *neutralSpec            `json:"default"`
	Value      string                  `json:"value"`
}

var neutralKinds = map[string]hclspec.Kind{
	"object": hclspec.KindObject, "array": hclspec.KindArray, "attr": hclspec.KindAttr,
	"block": hclspec.KindBlock, "block_attrs": hclspec.KindBlockAttrs, "block_list": hclspec.KindBlockList,
	"block_set": hclspec.KindBlockSet, "block_map": hclspec.KindBlockMap, "default": hclspec.KindDefault,
	"literal": hclspec.KindLiteral,
}

func (n *neutralSpec) build(t *testing.T) *hclspec.Spec {
	t.Helper()
	if n == nil {
		return nil
	}
	kind, ok := neutralKinds[n.Kind]
	must.True(t, ok, must.Sprintf("unknown kind %q", n.Kind))
	s := &hclspec.Spec{
		Kind: kind, Name: n.Name, Type: n.Type, Required: n.Required, Nested: n.Nested.build(t),
		MinItems: n.MinItems, MaxItems: n.MaxItems, Labels: n.Labels,
		Primary: n.Primary.build(t), Default: n.Default.build(t), Value: n.Value,
	}
	if n.Attributes != nil {
		s.Attributes = map[string]*hclspec.Spec{}
		for k, v := range n.Attributes {
			s.Attributes[k] = v.build(t)
		}
	}
	for _, v := range n.Values {
		s.Values = append(s.Values, v.build(t))
	}
	return s
}

type vectorCase struct {
	Name        string       `json:"name"`
	Path        string       `json:"path"`
	SchemaName  string       `json:"schema_name"`
	Schema      *neutralSpec `json:"schema"`
	SpecHex     string       `json:"spec_hex"`
	SchemaProto struct {
		Message string `json:"message"`
		Hex     string `json:"hex"`
	} `json:"schema_proto"`
}

// schemaVectors returns one case per (schema, path) pair of the golden
// vectors: the schema bytes do not depend on the config input.
func schemaVectors(t *testing.T) []vectorCase {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "nomad-config-encoding.json"))
	must.NoError(t, err)
	var file struct {
		Cases []vectorCase `json:"cases"`
	}
	must.NoError(t, json.Unmarshal(raw, &file))
	seen := map[string]bool{}
	var out []vectorCase
	for _, c := range file.Cases {
		key := c.SchemaName + "/" + c.Path
		if seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, c)
	}
	must.SliceLen(t, 14, out) // 8 schemas; the two tart ones on one path each
	return out
}

func decodeHex(t *testing.T, s string, m proto.Message) {
	t.Helper()
	b, err := hex.DecodeString(s)
	must.NoError(t, err)
	must.NoError(t, proto.Unmarshal(b, m))
}

func TestSpecToProto_goldenVectors(t *testing.T) {
	t.Parallel()
	for _, vc := range schemaVectors(t) {
		t.Run(vc.SchemaName+"/"+vc.Path, func(t *testing.T) {
			t.Parallel()
			want := &hclspecpb.Spec{}
			decodeHex(t, vc.SpecHex, want)

			got, err := wire.SpecToProto(vc.Schema.build(t))
			must.NoError(t, err)
			must.True(t, proto.Equal(want, got), must.Sprintf("got %v\nwant %v", got, want))

			// The reverse conversion (used by the harness) round-trips.
			back, err := wire.SpecFromProto(want)
			must.NoError(t, err)
			again, err := wire.SpecToProto(back)
			must.NoError(t, err)
			must.True(t, proto.Equal(want, again))
		})
	}
}

// TestServer_SchemaRPCs_goldenVectors checks the whole schema responses as
// they travel over gRPC against the ones a Nomad client received.
func TestServer_SchemaRPCs_goldenVectors(t *testing.T) {
	t.Parallel()
	for _, vc := range schemaVectors(t) {
		t.Run(vc.SchemaName+"/"+vc.Path, func(t *testing.T) {
			t.Parallel()
			d := newFakeDriver()
			spec := vc.Schema.build(t)
			d.configSchema, d.taskSchema = spec, spec
			c := connect(t, d)

			var want, got proto.Message
			switch vc.SchemaProto.Message {
			case "hashicorp.nomad.plugins.base.proto.ConfigSchemaResponse":
				want = &basepb.ConfigSchemaResponse{}
				resp, err := c.Base.ConfigSchema(t.Context(), &basepb.ConfigSchemaRequest{})
				must.NoError(t, err)
				got = resp
			case "hashicorp.nomad.plugins.drivers.proto.TaskConfigSchemaResponse":
				want = &driverpb.TaskConfigSchemaResponse{}
				resp, err := c.Driver.TaskConfigSchema(t.Context(), &driverpb.TaskConfigSchemaRequest{})
				must.NoError(t, err)
				got = resp
			default:
				t.Fatalf("unexpected message %q", vc.SchemaProto.Message)
			}
			decodeHex(t, vc.SchemaProto.Hex, want)
			must.True(t, proto.Equal(want, got), must.Sprintf("got %v\nwant %v", got, want))
		})
	}
}

func TestSpecToProto_rejects(t *testing.T) {
	t.Parallel()
	attr := &hclspec.Spec{Kind: hclspec.KindAttr, Name: "a", Type: "string"}
	obj := func(s *hclspec.Spec) *hclspec.Spec {
		return &hclspec.Spec{Kind: hclspec.KindObject, Attributes: map[string]*hclspec.Spec{"x": s}}
	}
	for _, tc := range []struct {
		name string
		spec *hclspec.Spec
		want string
	}{
		{name: "default without default", spec: obj(&hclspec.Spec{Kind: hclspec.KindDefault, Primary: attr}),
			want: "root.x: a default spec needs both primary and default"},
		{name: "default primary unnamed", spec: obj(&hclspec.Spec{Kind: hclspec.KindDefault,
			Primary: &hclspec.Spec{Kind: hclspec.KindAttr, Type: "bool"},
			Default: &hclspec.Spec{Kind: hclspec.KindLiteral, Value: "true"}}),
			want: "root.x.primary: name is required"},
		{name: "attr without type", spec: obj(&hclspec.Spec{Kind: hclspec.KindAttr}), want: "root.x: type is required"},
		{name: "block without nested", spec: obj(&hclspec.Spec{Kind: hclspec.KindBlockList}), want: "root.x: nested spec is required"},
		{name: "block map without labels", spec: obj(&hclspec.Spec{Kind: hclspec.KindBlockMap, Nested: obj(attr)}),
			want: "a block map needs at least one label"},
		{name: "negative items", spec: obj(&hclspec.Spec{Kind: hclspec.KindBlockSet, Nested: obj(attr), MinItems: -1}),
			want: "must not be negative"},
		{name: "unknown kind", spec: obj(&hclspec.Spec{}), want: "root.x: unknown spec kind 0"},
		{name: "nil child", spec: obj(nil), want: "root.x: missing spec"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := wire.SpecToProto(tc.spec)
			must.ErrorContains(t, err, tc.want)
		})
	}
	got, err := wire.SpecToProto(nil)
	must.NoError(t, err)
	must.Nil(t, got)
}

func TestSpecFromProto_emptySpec(t *testing.T) {
	t.Parallel()
	_, err := wire.SpecFromProto(&hclspecpb.Spec{Block: &hclspecpb.Spec_Object{Object: &hclspecpb.Object{
		Attributes: map[string]*hclspecpb.Spec{"x": {}},
	}}})
	must.ErrorContains(t, err, fmt.Sprintf("root.x: %s", "spec has no member set"))
}
