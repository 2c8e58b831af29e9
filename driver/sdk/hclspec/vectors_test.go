// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package hclspec

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	"github.com/shoenig/test/must"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// vectorFile is testdata/nomad-config-encoding.json: what a real Nomad
// 2.0.6 client sent to a driver plugin for each schema and config.
type vectorFile struct {
	Cases           []vectorCase    `json:"cases"`
	TaskEnvironment vectorTaskEnv   `json:"task_environment"`
	Schemas         json.RawMessage `json:"schemas"`
}

type vectorTaskEnv struct {
	Env  map[string]string `json:"env"`
	Node map[string]string `json:"node"`
}

type vectorCase struct {
	Name         string          `json:"name"`
	Path         string          `json:"path"` // plugin_config or task_config
	SchemaName   string          `json:"schema_name"`
	Schema       *neutralSpec    `json:"schema"`
	HCLInput     string          `json:"hcl_input"`
	ConfigBody   *string         `json:"config_body"`
	ConfigMap    json.RawMessage `json:"config_map"`
	Result       string          `json:"result"`
	MsgpackHex   string          `json:"msgpack_hex"`
	Value        json.RawMessage `json:"value"`
	ValueCtyType json.RawMessage `json:"value_cty_type"`
	Error        *vectorError    `json:"error"`
}

type vectorError struct {
	Stage               string     `json:"stage"`
	Diagnostics         []string   `json:"diagnostics"`
	Text                string     `json:"text"`
	Nondeterministic    bool       `json:"nondeterministic"`
	DiagnosticsVariants [][]string `json:"diagnostics_variants"`
}

// neutralSpec is the vectors' neutral schema tree.
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

// specFromNeutral builds a *Spec from a vector's neutral schema tree.
func specFromNeutral(t *testing.T, n *neutralSpec) *Spec {
	t.Helper()
	if n == nil {
		return nil
	}
	kinds := map[string]Kind{
		"object": KindObject, "array": KindArray, "attr": KindAttr, "block": KindBlock,
		"block_attrs": KindBlockAttrs, "block_list": KindBlockList, "block_set": KindBlockSet,
		"block_map": KindBlockMap, "default": KindDefault, "literal": KindLiteral,
	}
	kind, ok := kinds[n.Kind]
	must.True(t, ok, must.Sprintf("unknown kind %q", n.Kind))
	s := &Spec{
		Kind: kind, Name: n.Name, Type: n.Type, Required: n.Required,
		Nested: specFromNeutral(t, n.Nested), MinItems: n.MinItems, MaxItems: n.MaxItems,
		Labels: n.Labels, Primary: specFromNeutral(t, n.Primary), Default: specFromNeutral(t, n.Default),
		Value: n.Value,
	}
	if n.Attributes != nil {
		s.Attributes = map[string]*Spec{}
		for k, v := range n.Attributes {
			s.Attributes[k] = specFromNeutral(t, v)
		}
	}
	for _, v := range n.Values {
		s.Values = append(s.Values, specFromNeutral(t, v))
	}
	return s
}

var (
	vectorsOnce sync.Once
	vectors     vectorFile
	vectorsErr  error
)

func loadVectors(t *testing.T) *vectorFile {
	t.Helper()
	vectorsOnce.Do(func() {
		b, err := os.ReadFile(filepath.Join("testdata", "nomad-config-encoding.json"))
		if err != nil {
			vectorsErr = err
			return
		}
		vectorsErr = json.Unmarshal(b, &vectors)
	})
	must.NoError(t, vectorsErr)
	must.Greater(t, 100, len(vectors.Cases))
	return &vectors
}

// expectedValue parses a case's value with its cty type.
func expectedValue(t *testing.T, c *vectorCase) cty.Value {
	t.Helper()
	ty, err := ctyjson.UnmarshalType(c.ValueCtyType)
	must.NoError(t, err)
	v, err := ctyjson.Unmarshal(c.Value, ty)
	must.NoError(t, err)
	return v
}

func TestVectors_schemasAreValid(t *testing.T) {
	t.Parallel()
	v := loadVectors(t)
	for _, c := range v.Cases {
		spec := specFromNeutral(t, c.Schema)
		must.NoError(t, spec.Validate(), must.Sprint(c.Name))
		_, err := toHCLDec(spec)
		must.NoError(t, err, must.Sprint(c.Name))
	}
}

// TestVectors_DecodeValue checks that every captured blob decodes to the
// recorded value, both as cty (after converting the implied type to the
// recorded one) and through Decode into plain Go values.
func TestVectors_DecodeValue(t *testing.T) {
	t.Parallel()
	v := loadVectors(t)
	n := 0
	for _, c := range v.Cases {
		if c.Result != "ok" {
			continue
		}
		n++
		t.Run(c.Name, func(t *testing.T) {
			raw, err := hex.DecodeString(c.MsgpackHex)
			must.NoError(t, err)
			got, err := decodeValue(raw)
			must.NoError(t, err)
			want := expectedValue(t, &c)
			conv, err := convert.Convert(got, want.Type())
			must.NoError(t, err)
			must.True(t, conv.Equals(want).True(), must.Sprintf("got %#v\nwant %#v", conv, want))

			// Decode into a generic map checks the struct-free path and the
			// schema key check.
			var m map[string]any
			must.NoError(t, Decode(specFromNeutral(t, c.Schema), raw, &m))
			keys := make([]string, 0, len(m))
			for k := range m {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			wantKeys := make([]string, 0)
			for k := range want.Type().AttributeTypes() {
				wantKeys = append(wantKeys, k)
			}
			sort.Strings(wantKeys)
			must.Eq(t, wantKeys, keys)
		})
	}
	must.Greater(t, 60, n)
}
