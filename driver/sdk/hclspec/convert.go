// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package hclspec

import (
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// ErrInvalidSpec is wrapped by every error of toHCLDec and Validate.
var ErrInvalidSpec = errors.New("invalid hclspec")

// functions returns the function table Nomad's client offers in literal
// specs and in configuration values: abs, coalesce, concat, hasindex, int,
// jsondecode, jsonencode, length, lower, max, min, reverse, strlen, substr,
// upper (go-cty's stdlib implementations). The map is new on every call.
func functions() map[string]function.Function {
	return map[string]function.Function{
		"abs":        stdlib.AbsoluteFunc,
		"coalesce":   stdlib.CoalesceFunc,
		"concat":     stdlib.ConcatFunc,
		"hasindex":   stdlib.HasIndexFunc,
		"int":        stdlib.IntFunc,
		"jsondecode": stdlib.JSONDecodeFunc,
		"jsonencode": stdlib.JSONEncodeFunc,
		"length":     stdlib.LengthFunc,
		"lower":      stdlib.LowerFunc,
		"max":        stdlib.MaxFunc,
		"min":        stdlib.MinFunc,
		"reverse":    stdlib.ReverseFunc,
		"strlen":     stdlib.StrlenFunc,
		"substr":     stdlib.SubstrFunc,
		"upper":      stdlib.UpperFunc,
	}
}

// toHCLDec converts spec to the hcldec.Spec Nomad's client builds from the
// same schema (helper/pluginutils/hclspecutils in Nomad): an object's key is
// the default name of its children; array elements and default members get
// no default name; type expressions are HCL type expressions (unquoted,
// `null` meaning any); literals are HCL expressions evaluated at once with
// functions and no variables.
//
// It fails where Nomad's conversion fails, naming the node by its path, and
// also where Nomad would crash (a default without primary or default, a nil
// node). Validate applies further checks that keep schemas usable.
func toHCLDec(spec *Spec) (hcldec.Spec, error) {
	c := &converter{}
	out := c.convert(spec, "", "root")
	if len(c.errs) > 0 {
		return nil, errors.Join(c.errs...)
	}
	return out, nil
}

// impliedType is the cty type hcldec.ImpliedType gives for the converted
// spec: what a config decoded with spec conforms to (except that literal
// defaults keep their own types, e.g. a tuple for a list).
func impliedType(spec *Spec) (cty.Type, error) {
	dec, err := toHCLDec(spec)
	if err != nil {
		return cty.NilType, err
	}
	return hcldec.ImpliedType(dec), nil
}

// Validate reports every problem of s as a configuration schema, joined. It
// checks what Nomad's client checks when it converts the schema (see
// toHCLDec), what crashes Nomad's client (a default missing a member), and
// what makes a schema useless or confusing to job authors:
//
//   - the root is an object (Nomad's client needs an object to fill from the
//     config block, and a task schema must not be empty);
//   - every node is non-nil and of a known kind;
//   - attr and block_attrs have a valid, unquoted type expression;
//   - names are explicit wherever no object key supplies them (array
//     elements, default members), including for block, which Nomad does not
//     check;
//   - block kinds have a nested spec; block_map has at least one non-empty
//     label; item limits are non-negative and min <= max when max is set;
//   - literals parse and evaluate without variables.
func (s *Spec) Validate() error {
	c := &converter{strict: true}
	if s != nil && s.Kind != KindObject {
		c.fail("root", "the root of a configuration schema must be an object, not %s", s.Kind)
	}
	c.convert(s, "", "root")
	return errors.Join(c.errs...)
}

type converter struct {
	strict bool // also apply Validate's checks beyond Nomad's
	errs   []error
}

func (c *converter) fail(path, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%w: %s: %s", ErrInvalidSpec, path, fmt.Sprintf(format, args...)))
}

func (c *converter) convert(s *Spec, impliedName, path string) hcldec.Spec {
	if s == nil {
		c.fail(path, "Invalid spec block: a spec node is nil")
		return nil
	}
	name := s.Name
	if name == "" {
		name = impliedName
	}
	switch s.Kind {
	case KindObject:
		return c.object(s, path)
	case KindArray:
		out := make(hcldec.TupleSpec, 0, len(s.Values))
		for i, v := range s.Values {
			out = append(out, c.convert(v, "", path+".values["+strconv.Itoa(i)+"]"))
		}
		return out
	case KindAttr:
		ty, ok := c.typeExpr(s.Type, path)
		if name == "" {
			c.fail(path, "Missing name in attribute spec: an attr needs a name where no object key supplies one")
			return nil
		}
		if !ok {
			return nil
		}
		return &hcldec.AttrSpec{Name: name, Type: ty, Required: s.Required}
	case KindBlock:
		nested := c.nested(s, path)
		if c.strict && name == "" {
			c.fail(path, "Missing name in block spec: a block needs a name where no object key supplies one")
		}
		if nested == nil {
			return nil
		}
		return &hcldec.BlockSpec{TypeName: name, Required: s.Required, Nested: nested}
	case KindBlockAttrs:
		ty, ok := c.typeExpr(s.Type, path)
		if name == "" {
			c.fail(path, "Missing name in block_attrs spec: a block_attrs needs a name where no object key supplies one")
			return nil
		}
		if !ok {
			return nil
		}
		return &hcldec.BlockAttrsSpec{TypeName: name, ElementType: ty, Required: s.Required}
	case KindBlockList, KindBlockSet:
		return c.blockCollection(s, name, path)
	case KindBlockMap:
		return c.blockMap(s, name, path)
	case KindDefault:
		return c.defaultSpec(s, path)
	case KindLiteral:
		return c.literal(s, path)
	default:
		c.fail(path, "Invalid spec block: unknown kind %d", int(s.Kind))
		return nil
	}
}

func (c *converter) object(s *Spec, path string) hcldec.Spec {
	out := make(hcldec.ObjectSpec, len(s.Attributes))
	keys := make([]string, 0, len(s.Attributes))
	for k := range s.Attributes {
		keys = append(keys, k)
	}
	sort.Strings(keys) // stable error order
	for _, k := range keys {
		if c.strict && k == "" {
			c.fail(path, "an object attribute has an empty key")
		}
		child := c.convert(s.Attributes[k], k, path+"."+k)
		if child != nil {
			out[k] = child
		}
	}
	return out
}

func (c *converter) nested(s *Spec, path string) hcldec.Spec {
	if s.Nested == nil {
		c.fail(path, "Missing spec block: a %s needs a nested spec for its body", s.Kind)
		return nil
	}
	return c.convert(s.Nested, "", path+".nested")
}

func (c *converter) blockCollection(s *Spec, name, path string) hcldec.Spec {
	nested := c.nested(s, path)
	if name == "" {
		c.fail(path, "Missing name in %s spec: a %s needs a name where no object key supplies one", s.Kind, s.Kind)
		return nil
	}
	if c.strict {
		if s.MinItems < 0 || s.MaxItems < 0 {
			c.fail(path, "min_items and max_items must not be negative")
		} else if s.MaxItems > 0 && s.MinItems > s.MaxItems {
			c.fail(path, "min_items %d is larger than max_items %d", s.MinItems, s.MaxItems)
		}
	}
	if nested == nil {
		return nil
	}
	if s.Kind == KindBlockSet {
		return &hcldec.BlockSetSpec{TypeName: name, Nested: nested, MinItems: s.MinItems, MaxItems: s.MaxItems}
	}
	return &hcldec.BlockListSpec{TypeName: name, Nested: nested, MinItems: s.MinItems, MaxItems: s.MaxItems}
}

func (c *converter) blockMap(s *Spec, name, path string) hcldec.Spec {
	nested := c.nested(s, path)
	if name == "" {
		c.fail(path, "Missing name in block_map spec: a block_map needs a name where no object key supplies one")
		return nil
	}
	if len(s.Labels) == 0 {
		c.fail(path, "Invalid block label name list: a block_map must have at least one label")
		return nil
	}
	if c.strict {
		for i, l := range s.Labels {
			if l == "" {
				c.fail(path, "label %d is empty", i)
			}
		}
	}
	if nested == nil {
		return nil
	}
	return &hcldec.BlockMapSpec{TypeName: name, LabelNames: append([]string(nil), s.Labels...), Nested: nested}
}

func (c *converter) defaultSpec(s *Spec, path string) hcldec.Spec {
	// Nomad dereferences a missing member and crashes the client agent.
	if s.Primary == nil {
		c.fail(path, "a default needs a primary spec")
	}
	if s.Default == nil {
		c.fail(path, "a default needs a default spec")
	}
	if s.Primary == nil || s.Default == nil {
		return nil
	}
	primary := c.convert(s.Primary, "", path+".primary")
	def := c.convert(s.Default, "", path+".default")
	if primary == nil || def == nil {
		return nil
	}
	return &hcldec.DefaultSpec{Primary: primary, Default: def}
}

func (c *converter) literal(s *Spec, path string) hcldec.Spec {
	v, err := evalLiteral(s.Value)
	if err != nil {
		c.fail(path, "literal %q: %v", s.Value, err)
		return nil
	}
	return &hcldec.LiteralSpec{Value: v}
}

// evalLiteral evaluates HCL expression source the way Nomad evaluates a
// literal spec: functions available, no variables.
func evalLiteral(src string) (cty.Value, error) {
	expr, diags := hclsyntax.ParseExpression([]byte(src), "literal", hcl.InitialPos)
	if diags.HasErrors() {
		return cty.NilVal, diagsError(diags)
	}
	v, diags := expr.Value(&hcl.EvalContext{Functions: functions()})
	if diags.HasErrors() {
		return cty.NilVal, diagsError(diags)
	}
	return v, nil
}

// typeExpr parses an attr/block_attrs type the way Nomad does: an unquoted
// HCL type expression, where `null` stands for any.
func (c *converter) typeExpr(src, path string) (cty.Type, bool) {
	expr, diags := hclsyntax.ParseExpression([]byte(src), "type", hcl.InitialPos)
	if diags.HasErrors() {
		c.fail(path, "type %q: %v", src, diagsError(diags))
		return cty.NilType, false
	}
	v, vdiags := expr.Value(typeExprContext)
	if vdiags.HasErrors() {
		c.fail(path, "type %q: %v", src, diagsError(vdiags))
		return cty.NilType, false
	}
	switch {
	case v.IsNull():
		return cty.DynamicPseudoType, true // Nomad reads `null` as any
	case !v.IsKnown() || !v.Type().Equals(typeCapsule):
		c.fail(path, "type %q: Invalid type expression: A type is required, not %s.", src, v.Type().FriendlyName())
		return cty.NilType, false
	default:
		return typeOf(v), true
	}
}

// diagsError formats HCL diagnostics as Nomad's client does: one
// "<summary>: <detail>" per error, joined with "; ".
func diagsError(diags hcl.Diagnostics) error {
	msgs := diagStrings(diags)
	if len(msgs) == 0 {
		return errors.New("unknown error")
	}
	out := msgs[0]
	for _, m := range msgs[1:] {
		out += "; " + m
	}
	return errors.New(out)
}

func diagStrings(diags hcl.Diagnostics) []string {
	var out []string
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		summary := d.Summary
		if summary == "Extraneous JSON object property" {
			summary = "Invalid label" // Nomad rewrites this summary
		}
		out = append(out, summary+": "+d.Detail)
	}
	return out
}
