// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package hclspec

import (
	"testing"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/shoenig/test/must"
	"github.com/zclconf/go-cty/cty"
)

func TestSpec_Validate_accepts(t *testing.T) {
	t.Parallel()
	cases := map[string]*Spec{
		"example task spec": exampleTaskSpec,
		"empty object":      Object(nil),
		"null type is any":  Object(map[string]*Spec{"x": Attr("", "null", false)}),
		"complex types": Object(map[string]*Spec{
			"o": Attr("", "object({a = string, b = list(number)})", false),
			"t": Attr("", "tuple([string, bool])", false),
			"s": Attr("", "set(map(any))", false),
		}),
		"array with explicit names": Object(map[string]*Spec{
			"pair": Array(Attr("first", "string", false), Default(Attr("second", "number", false), Literal("2"))),
		}),
		"set with limits": Object(map[string]*Spec{"s": BlockSet("", Object(nil)).WithItems(1, 3)}),
	}
	for name, spec := range cases {
		t.Run(name, func(t *testing.T) {
			must.NoError(t, spec.Validate())
			_, err := toHCLDec(spec)
			must.NoError(t, err)
		})
	}
}

func TestSpec_Validate_rejects(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		spec     *Spec
		want     string
		nomadToo bool // toHCLDec (Nomad's conversion) rejects it as well
	}{
		{"nil root", nil, "root: Invalid spec block: a spec node is nil", true},
		{"root not object", Attr("x", "string", false),
			"root: the root of a configuration schema must be an object, not attr", false},
		{"unknown kind", Object(map[string]*Spec{"x": {}}), "root.x: Invalid spec block: unknown kind 0", true},
		{"nil child", Object(map[string]*Spec{"x": nil}), "root.x: Invalid spec block: a spec node is nil", true},
		{"empty type", Object(map[string]*Spec{"x": Attr("", "", false)}),
			`root.x: type "": Missing expression`, true},
		{"quoted type", Object(map[string]*Spec{"x": Attr("", `"string"`, false)}),
			`root.x: type "\"string\"": Invalid type expression: A type is required, not string.`, true},
		{"unknown type", Object(map[string]*Spec{"x": Attr("", "strin", false)}),
			`root.x: type "strin": Unknown variable: There is no variable named "strin". Did you mean "string"?`, true},
		{"optional not supported", Object(map[string]*Spec{"x": Attr("", "object({a = optional(string)})", false)}),
			`root.x: type "object({a = optional(string)})": Call to unknown function`, true},
		{"block_attrs without type", Object(map[string]*Spec{"x": BlockAttrs("", "", false)}),
			`root.x: type "": Missing expression`, true},
		{"attr in array without name", Object(map[string]*Spec{"x": Array(Attr("", "string", false))}),
			"root.x.values[0]: Missing name in attribute spec", true},
		{"attr in default without name", Object(map[string]*Spec{"x": Default(Attr("", "string", false), Literal("1"))}),
			"root.x.primary: Missing name in attribute spec", true},
		{"block in array without name", Object(map[string]*Spec{"x": Array(Block("", false, Object(nil)))}),
			"root.x.values[0]: Missing name in block spec", false},
		{"block_list in default without name", Object(map[string]*Spec{"x": Default(BlockList("", Object(nil)), Literal("[]"))}),
			"root.x.primary: Missing name in block_list spec", true},
		{"block without nested", Object(map[string]*Spec{"x": Block("", false, nil)}),
			"root.x: Missing spec block", true},
		{"block_set without nested", Object(map[string]*Spec{"x": BlockSet("", nil)}),
			"root.x: Missing spec block", true},
		{"block_map without labels", Object(map[string]*Spec{"x": BlockMap("", nil, Object(nil))}),
			"root.x: Invalid block label name list", true},
		{"block_map with empty label", Object(map[string]*Spec{"x": BlockMap("", []string{""}, Object(nil))}),
			"root.x: label 0 is empty", false},
		{"default without primary", Object(map[string]*Spec{"x": Default(nil, Literal("1"))}),
			"root.x: a default needs a primary spec", true},
		{"default without default", Object(map[string]*Spec{"x": Default(Attr("x", "number", false), nil)}),
			"root.x: a default needs a default spec", true},
		{"literal that does not parse", Object(map[string]*Spec{"x": Literal(`"unterminated`)}),
			`root.x: literal "\"unterminated"`, true},
		{"literal with a variable", Object(map[string]*Spec{"x": Literal("nat")}),
			`root.x: literal "nat": Variables not allowed`, true},
		{"min above max", Object(map[string]*Spec{"x": BlockList("", Object(nil)).WithItems(3, 2)}),
			"root.x: min_items 3 is larger than max_items 2", false},
		{"negative limit", Object(map[string]*Spec{"x": BlockList("", Object(nil)).WithItems(-1, 0)}),
			"root.x: min_items and max_items must not be negative", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.spec.Validate()
			must.ErrorIs(t, err, ErrInvalidSpec)
			must.StrContains(t, err.Error(), tc.want)
			_, convErr := toHCLDec(tc.spec)
			if tc.nomadToo {
				must.ErrorIs(t, convErr, ErrInvalidSpec)
			} else {
				must.NoError(t, convErr)
			}
		})
	}
}

func TestSpec_Validate_reportsEveryProblem(t *testing.T) {
	t.Parallel()
	err := Object(map[string]*Spec{
		"a": Attr("", "", false),
		"b": Block("", false, nil),
	}).Validate()
	must.StrContains(t, err.Error(), "root.a:")
	must.StrContains(t, err.Error(), "root.b:")
}

func TestToHCLDec_mapping(t *testing.T) {
	t.Parallel()
	dec, err := toHCLDec(Object(map[string]*Spec{
		"image": Attr("", "string", true),
		"mode":  Default(Attr("mode", "string", false), Literal(`"nat"`)),
		"env":   BlockAttrs("environment", "string", false),
		"dir":   BlockList("", Object(map[string]*Spec{"p": Attr("", "string", false)})).WithItems(1, 2),
		"l":     BlockMap("", []string{"name"}, Object(nil)),
		"pair":  Array(Attr("first", "string", false)),
	}))
	must.NoError(t, err)
	obj := dec.(hcldec.ObjectSpec)
	must.Eq(t, &hcldec.AttrSpec{Name: "image", Type: cty.String, Required: true}, obj["image"].(*hcldec.AttrSpec))
	def := obj["mode"].(*hcldec.DefaultSpec)
	must.Eq(t, "mode", def.Primary.(*hcldec.AttrSpec).Name)
	must.True(t, def.Default.(*hcldec.LiteralSpec).Value.RawEquals(cty.StringVal("nat")))
	must.Eq(t, "environment", obj["env"].(*hcldec.BlockAttrsSpec).TypeName)
	list := obj["dir"].(*hcldec.BlockListSpec)
	must.Eq(t, "dir", list.TypeName)
	must.Eq(t, 1, list.MinItems)
	must.Eq(t, 2, list.MaxItems)
	must.Eq(t, "p", list.Nested.(hcldec.ObjectSpec)["p"].(*hcldec.AttrSpec).Name)
	must.Eq(t, []string{"name"}, obj["l"].(*hcldec.BlockMapSpec).LabelNames)
	must.Eq(t, "first", obj["pair"].(hcldec.TupleSpec)[0].(*hcldec.AttrSpec).Name)

	ty, err := impliedType(Object(map[string]*Spec{"n": Attr("", "list(number)", false)}))
	must.NoError(t, err)
	must.Eq(t, cty.Object(map[string]cty.Type{"n": cty.List(cty.Number)}), ty)
}

func TestKind_String(t *testing.T) {
	t.Parallel()
	must.Eq(t, "block_attrs", KindBlockAttrs.String())
	must.Eq(t, "invalid", Kind(0).String())
}
