// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package hclspec

import (
	"fmt"
	"maps"
	"math/big"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// parseJobTaskConfig turns the body of a job file's task config block into
// the generic map Nomad's job parser produces (jobspec2): attributes are
// evaluated with var.*, local.* and the jobspec functions, references to
// anything else are kept as "${...}" text for the client, `x = {...}`
// becomes a one-element list of objects, blocks become lists of objects
// (labels as nested keys), and attributes whose value is null are dropped.
func parseJobTaskConfig(body string, jobVars map[string]cty.Value) (map[string]any, error) {
	src := []byte(body)
	file, diags := hclsyntax.ParseConfig(src, "job.nomad.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		return nil, &ConfigError{Stage: StageJobParse, Diagnostics: diagStrings(diags)}
	}
	p := &jobParser{src: src, vars: jobVars}
	out := p.body(file.Body.(*hclsyntax.Body), true)
	if p.diags.HasErrors() {
		return nil, &ConfigError{Stage: StageJobParse, Diagnostics: diagStrings(p.diags)}
	}
	return out, nil
}

type jobParser struct {
	src   []byte
	vars  map[string]cty.Value
	diags hcl.Diagnostics
}

func (p *jobParser) body(b *hclsyntax.Body, top bool) map[string]any {
	out := make(map[string]any, len(b.Attributes)+len(b.Blocks))
	for name, attr := range b.Attributes {
		v := p.attr(attr.Expr)
		if v == nil && top {
			continue // the job parser deletes null attributes of the config map
		}
		out[name] = v
	}
	byType := map[string][]*hclsyntax.Block{}
	var order []string
	for _, blk := range b.Blocks {
		if _, seen := byType[blk.Type]; !seen {
			order = append(order, blk.Type)
		}
		byType[blk.Type] = append(byType[blk.Type], blk)
	}
	for _, typ := range order {
		list := make([]map[string]any, 0, len(byType[typ]))
		for _, blk := range byType[typ] {
			list = append(list, p.block(blk))
		}
		out[typ] = list
	}
	return out
}

// block turns one block into an object; labels wrap it from the innermost
// out: `l "a" "b" {...}` gives {"a": [{"b": [{...}]}]}.
func (p *jobParser) block(b *hclsyntax.Block) map[string]any {
	obj := p.body(b.Body, false)
	for i := len(b.Labels) - 1; i >= 0; i-- {
		obj = map[string]any{b.Labels[i]: []map[string]any{obj}}
	}
	return obj
}

// attr evaluates an attribute expression; an object constructor is wrapped
// into a one-element list, as Nomad's job parser does for driver configs.
func (p *jobParser) attr(expr hclsyntax.Expression) any {
	v, diags := expr.Value(p.evalContext(expr))
	p.diags = append(p.diags, diags...)
	if diags.HasErrors() {
		return nil
	}
	if _, isObject := expr.(*hclsyntax.ObjectConsExpr); isObject {
		v = cty.TupleVal([]cty.Value{v})
	}
	g, err := jobGoValue(v)
	if err != nil {
		p.diags = append(p.diags, &hcl.Diagnostic{
			Severity: hcl.DiagError, Summary: "unsuitable value type",
			Detail: "Unsuitable value: " + err.Error(), Subject: expr.StartRange().Ptr(),
		})
		return nil
	}
	return g
}

// evalContext offers var.*, local.* and the jobspec functions, plus a
// placeholder for every other variable the expression references, whose
// value is the reference's own text wrapped in "${...}" (Nomad's job parser
// keeps such references for the client to interpolate).
func (p *jobParser) evalContext(expr hclsyntax.Expression) *hcl.EvalContext {
	vars := map[string]cty.Value{"local": cty.EmptyObjectVal}
	if p.vars != nil {
		vars["var"] = cty.ObjectVal(p.vars)
	} else {
		vars["var"] = cty.EmptyObjectVal
	}
	root := &placeholder{}
	for _, trav := range expr.Variables() {
		name := trav.RootName()
		if name == "var" || name == "local" {
			continue
		}
		rng := trav.SourceRange()
		text := "${" + trav.RootName() + "}"
		if rng.Start.Byte >= 0 && rng.End.Byte <= len(p.src) && rng.Start.Byte < rng.End.Byte {
			text = "${" + string(p.src[rng.Start.Byte:rng.End.Byte]) + "}"
		}
		root.add(trav, text)
	}
	for name, ph := range root.children {
		vars[name] = ph.value()
	}
	return &hcl.EvalContext{Variables: vars, Functions: jobspecFunctions()}
}

// placeholder is a trie of traversal steps whose leaves are "${...}" texts.
type placeholder struct {
	text     string
	children map[string]*placeholder
}

func (ph *placeholder) add(trav hcl.Traversal, text string) {
	node := ph
	for _, step := range trav {
		var key string
		switch s := step.(type) {
		case hcl.TraverseRoot:
			key = s.Name
		case hcl.TraverseAttr:
			key = s.Name
		case hcl.TraverseIndex:
			if s.Key.Type() != cty.String || s.Key.IsNull() || !s.Key.IsKnown() {
				break
			}
			key = s.Key.AsString()
		}
		if key == "" {
			break // splats and numeric indexes: keep the text up to here
		}
		if node.children == nil {
			node.children = map[string]*placeholder{}
		}
		child, ok := node.children[key]
		if !ok {
			child = &placeholder{}
			node.children[key] = child
		}
		node = child
	}
	if node.text == "" {
		node.text = text
	}
}

func (ph *placeholder) value() cty.Value {
	if len(ph.children) == 0 {
		return cty.StringVal(ph.text)
	}
	attrs := make(map[string]cty.Value, len(ph.children))
	for k, c := range ph.children {
		attrs[k] = c.value()
	}
	return cty.ObjectVal(attrs)
}

// jobGoValue converts an evaluated value into the generic form the job
// parser stores: numbers as int or float64 (the smallest that fits),
// collections of objects as []map[string]any.
func jobGoValue(v cty.Value) (any, error) {
	if v.IsNull() {
		return nil, nil
	}
	if !v.IsKnown() {
		return nil, fmt.Errorf("value is not known")
	}
	if v.IsMarked() {
		v, _ = v.Unmark()
	}
	ty := v.Type()
	switch {
	case ty == cty.String:
		return v.AsString(), nil
	case ty == cty.Bool:
		return v.True(), nil
	case ty == cty.Number:
		f := v.AsBigFloat()
		if i, acc := f.Int64(); acc == big.Exact {
			return int(i), nil
		}
		x, _ := f.Float64()
		return x, nil
	case isSequence(ty) && allObjects(ty):
		out := make([]map[string]any, 0, v.LengthInt())
		for it := v.ElementIterator(); it.Next(); {
			_, ev := it.Element()
			g, err := jobGoValue(ev)
			if err != nil {
				return nil, err
			}
			m, _ := g.(map[string]any) // nil for a null element
			out = append(out, m)
		}
		return out, nil
	case isSequence(ty):
		out := make([]any, 0, v.LengthInt())
		for it := v.ElementIterator(); it.Next(); {
			_, ev := it.Element()
			g, err := jobGoValue(ev)
			if err != nil {
				return nil, err
			}
			out = append(out, g)
		}
		return out, nil
	case isObjectLike(ty):
		out := make(map[string]any, v.LengthInt())
		for it := v.ElementIterator(); it.Next(); {
			k, ev := it.Element()
			g, err := jobGoValue(ev)
			if err != nil {
				return nil, err
			}
			out[k.AsString()] = g
		}
		return out, nil
	default:
		return nil, fmt.Errorf("cannot serialize %s", ty.FriendlyName())
	}
}

// allObjects reports whether a list/set/tuple type holds only objects or
// maps (and, for a tuple, at least one element).
func allObjects(ty cty.Type) bool {
	if ty.IsTupleType() {
		ets := ty.TupleElementTypes()
		for _, et := range ets {
			if !isObjectLike(et) {
				return false
			}
		}
		return len(ets) > 0
	}
	return isObjectLike(ty.ElementType())
}

// taskVariables builds the client's interpolation variables from env, as
// Nomad's client does: every env name and node attribute expanded at its
// dots into nested objects (an object wins over a string at the same
// place), env as a map of every variable, and node.attr/node.meta aliases.
func taskVariables(env *TaskEnv) map[string]cty.Value {
	tree := map[string]any{}
	envMap := make(map[string]cty.Value, len(env.Env))
	for _, k := range slices.Sorted(maps.Keys(env.Env)) {
		addNested(tree, k, env.Env[k])
		envMap[k] = cty.StringVal(env.Env[k])
	}
	for _, k := range slices.Sorted(maps.Keys(env.Node)) {
		addNested(tree, k, env.Node[k])
	}
	vars := make(map[string]cty.Value, len(tree)+1)
	if node, ok := tree["node"].(map[string]any); ok {
		if attr, ok := tree["attr"]; ok {
			node["attr"] = attr
		}
		if meta, ok := tree["meta"]; ok {
			node["meta"] = meta
		}
	}
	for k, v := range tree {
		vars[k] = treeValue(v)
	}
	if len(envMap) == 0 {
		vars["env"] = cty.MapValEmpty(cty.String)
	} else {
		vars["env"] = cty.MapVal(envMap)
	}
	return vars
}

// addNested stores v at the dotted path k, ignoring paths with empty
// segments (Nomad reports and skips those).
func addNested(dst map[string]any, k, v string) {
	segs := strings.Split(k, ".")
	for _, s := range segs {
		if s == "" {
			return
		}
	}
	for _, s := range segs[:len(segs)-1] {
		next, ok := dst[s].(map[string]any)
		if !ok {
			next = map[string]any{}
			dst[s] = next
		}
		dst = next
	}
	last := segs[len(segs)-1]
	if _, isMap := dst[last].(map[string]any); isMap {
		return
	}
	dst[last] = v
}

func treeValue(v any) cty.Value {
	switch x := v.(type) {
	case map[string]any:
		attrs := make(map[string]cty.Value, len(x))
		for k, e := range x {
			attrs[k] = treeValue(e)
		}
		return cty.ObjectVal(attrs)
	case string:
		return cty.StringVal(x)
	default:
		return cty.NullVal(cty.DynamicPseudoType)
	}
}

// jobspecFunctions is the part of Nomad's jobspec function table that go-cty
// and hcl provide.
func jobspecFunctions() map[string]function.Function {
	fns := functions()
	for name, fn := range map[string]function.Function{
		"can": tryfunc.CanFunc, "ceil": stdlib.CeilFunc, "chomp": stdlib.ChompFunc,
		"chunklist": stdlib.ChunklistFunc, "coalescelist": stdlib.CoalesceListFunc,
		"compact": stdlib.CompactFunc, "contains": stdlib.ContainsFunc,
		"convert": typeexpr.ConvertFunc, "csvdecode": stdlib.CSVDecodeFunc,
		"distinct": stdlib.DistinctFunc, "element": stdlib.ElementFunc,
		"flatten": stdlib.FlattenFunc, "floor": stdlib.FloorFunc, "format": stdlib.FormatFunc,
		"formatdate": stdlib.FormatDateFunc, "formatlist": stdlib.FormatListFunc,
		"indent": stdlib.IndentFunc, "index": stdlib.IndexFunc, "join": stdlib.JoinFunc,
		"keys": stdlib.KeysFunc, "log": stdlib.LogFunc, "lookup": stdlib.LookupFunc,
		"merge": stdlib.MergeFunc, "parseint": stdlib.ParseIntFunc, "pow": stdlib.PowFunc,
		"range": stdlib.RangeFunc, "replace": stdlib.ReplaceFunc,
		"regex_replace": stdlib.RegexReplaceFunc, "setintersection": stdlib.SetIntersectionFunc,
		"setproduct": stdlib.SetProductFunc, "setunion": stdlib.SetUnionFunc,
		"signum": stdlib.SignumFunc, "slice": stdlib.SliceFunc, "sort": stdlib.SortFunc,
		"split": stdlib.SplitFunc, "strrev": stdlib.ReverseFunc, "timeadd": stdlib.TimeAddFunc,
		"title": stdlib.TitleFunc, "trim": stdlib.TrimFunc, "trimprefix": stdlib.TrimPrefixFunc,
		"trimspace": stdlib.TrimSpaceFunc, "trimsuffix": stdlib.TrimSuffixFunc,
		"try": tryfunc.TryFunc, "values": stdlib.ValuesFunc, "zipmap": stdlib.ZipmapFunc,
	} {
		fns[name] = fn
	}
	return fns
}
