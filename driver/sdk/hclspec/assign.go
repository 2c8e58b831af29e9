// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package hclspec

import (
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zclconf/go-cty/cty"
)

var (
	ctyValueType  = reflect.TypeFor[cty.Value]()
	durationType  = reflect.TypeFor[time.Duration]()
	stringKeyKind = reflect.String
)

func assign(dst reflect.Value, v cty.Value, path string) error {
	if dst.Type() == ctyValueType {
		dst.Set(reflect.ValueOf(v))
		return nil
	}
	if !v.IsKnown() {
		return &DecodeError{Path: path, Problem: "value is unknown"}
	}
	if v.IsNull() {
		dst.SetZero()
		return nil
	}
	if dst.Type() == durationType {
		return assignDuration(dst, v, path)
	}
	switch dst.Kind() {
	case reflect.Pointer:
		elem := reflect.New(dst.Type().Elem())
		if err := assign(elem.Elem(), v, path); err != nil {
			return err
		}
		dst.Set(elem)
		return nil
	case reflect.Interface:
		if dst.NumMethod() != 0 {
			return &DecodeError{Path: path, Problem: fmt.Sprintf("cannot decode into interface type %s", dst.Type())}
		}
		g, err := toGo(v, path)
		if err != nil {
			return err
		}
		if g != nil {
			dst.Set(reflect.ValueOf(g))
		}
		return nil
	case reflect.String:
		if v.Type() != cty.String {
			return mismatch(path, "a string", v)
		}
		dst.SetString(v.AsString())
		return nil
	case reflect.Bool:
		if v.Type() != cty.Bool {
			return mismatch(path, "a bool", v)
		}
		dst.SetBool(v.True())
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return assignInt(dst, v, path)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return assignUint(dst, v, path)
	case reflect.Float32, reflect.Float64:
		return assignFloat(dst, v, path)
	case reflect.Slice:
		return assignSlice(dst, v, path)
	case reflect.Array:
		return assignArray(dst, v, path)
	case reflect.Map:
		return assignMap(dst, v, path)
	case reflect.Struct:
		return assignStruct(dst, v, path)
	default:
		return &DecodeError{Path: path, Problem: fmt.Sprintf("cannot decode into Go type %s", dst.Type())}
	}
}

// number returns v as a big.Float, accepting the decimal strings Nomad sends
// for numbers that neither int64 nor float64 hold exactly.
func number(v cty.Value, path string) (*big.Float, error) {
	switch v.Type() {
	case cty.Number:
		return v.AsBigFloat(), nil
	case cty.String:
		n, err := cty.ParseNumberVal(strings.TrimSpace(v.AsString()))
		if err != nil {
			return nil, mismatch(path, "a number", v)
		}
		return n.AsBigFloat(), nil
	default:
		return nil, mismatch(path, "a number", v)
	}
}

func assignInt(dst reflect.Value, v cty.Value, path string) error {
	f, err := number(v, path)
	if err != nil {
		return err
	}
	if f.IsInf() || !f.IsInt() {
		return &DecodeError{Path: path, Problem: fmt.Sprintf("expected a whole number, got %s", numText(f))}
	}
	i, acc := f.Int64()
	if acc != big.Exact || dst.OverflowInt(i) {
		return &DecodeError{Path: path, Problem: fmt.Sprintf("%s is out of range for %s", numText(f), dst.Type())}
	}
	dst.SetInt(i)
	return nil
}

func assignUint(dst reflect.Value, v cty.Value, path string) error {
	f, err := number(v, path)
	if err != nil {
		return err
	}
	if f.IsInf() || !f.IsInt() {
		return &DecodeError{Path: path, Problem: fmt.Sprintf("expected a whole number, got %s", numText(f))}
	}
	u, acc := f.Uint64()
	if acc != big.Exact || dst.OverflowUint(u) {
		return &DecodeError{Path: path, Problem: fmt.Sprintf("%s is out of range for %s", numText(f), dst.Type())}
	}
	dst.SetUint(u)
	return nil
}

func assignFloat(dst reflect.Value, v cty.Value, path string) error {
	f, err := number(v, path)
	if err != nil {
		return err
	}
	x, _ := f.Float64()
	if !f.IsInf() && (math.IsInf(x, 0) || dst.OverflowFloat(x)) {
		return &DecodeError{Path: path, Problem: fmt.Sprintf("%s is out of range for %s", numText(f), dst.Type())}
	}
	dst.SetFloat(x)
	return nil
}

func assignDuration(dst reflect.Value, v cty.Value, path string) error {
	if v.Type() != cty.String {
		return mismatch(path, `a duration string such as "30s"`, v)
	}
	d, err := time.ParseDuration(strings.TrimSpace(v.AsString()))
	if err != nil {
		return &DecodeError{Path: path, Problem: fmt.Sprintf("expected a duration such as \"30s\", got %s", describe(v))}
	}
	dst.SetInt(int64(d))
	return nil
}

func isSequence(ty cty.Type) bool {
	return ty.IsListType() || ty.IsSetType() || ty.IsTupleType()
}

func assignSlice(dst reflect.Value, v cty.Value, path string) error {
	if !isSequence(v.Type()) {
		return mismatch(path, "a list", v)
	}
	n := v.LengthInt()
	s := reflect.MakeSlice(dst.Type(), n, n)
	i := 0
	for it := v.ElementIterator(); it.Next(); i++ {
		_, ev := it.Element()
		if err := assign(s.Index(i), ev, path+"["+strconv.Itoa(i)+"]"); err != nil {
			return err
		}
	}
	dst.Set(s)
	return nil
}

func assignArray(dst reflect.Value, v cty.Value, path string) error {
	if !isSequence(v.Type()) {
		return mismatch(path, "a list", v)
	}
	if n := v.LengthInt(); n != dst.Len() {
		return &DecodeError{Path: path, Problem: fmt.Sprintf("expected %d elements, got %d", dst.Len(), n)}
	}
	i := 0
	for it := v.ElementIterator(); it.Next(); i++ {
		_, ev := it.Element()
		if err := assign(dst.Index(i), ev, path+"["+strconv.Itoa(i)+"]"); err != nil {
			return err
		}
	}
	return nil
}

func isObjectLike(ty cty.Type) bool {
	return ty.IsObjectType() || ty.IsMapType()
}

func assignMap(dst reflect.Value, v cty.Value, path string) error {
	if dst.Type().Key().Kind() != stringKeyKind {
		return &DecodeError{Path: path, Problem: fmt.Sprintf("cannot decode into %s: map keys must be strings", dst.Type())}
	}
	var parts []cty.Value
	switch ty := v.Type(); {
	case isObjectLike(ty):
		parts = []cty.Value{v}
	case isSequence(ty):
		// HCL job files deliver `x = { ... }` and `x { ... }` as a list of
		// objects; merge them in order.
		for it := v.ElementIterator(); it.Next(); {
			_, ev := it.Element()
			if ev.IsNull() {
				continue
			}
			if !ev.IsKnown() || !isObjectLike(ev.Type()) {
				return mismatch(path, "a map", v)
			}
			parts = append(parts, ev)
		}
	default:
		return mismatch(path, "a map", v)
	}
	m := reflect.MakeMap(dst.Type())
	for _, part := range parts {
		for it := part.ElementIterator(); it.Next(); {
			k, ev := it.Element()
			key := k.AsString()
			elem := reflect.New(dst.Type().Elem()).Elem()
			if err := assign(elem, ev, path+"["+strconv.Quote(key)+"]"); err != nil {
				return err
			}
			m.SetMapIndex(reflect.ValueOf(key).Convert(dst.Type().Key()), elem)
		}
	}
	dst.Set(m)
	return nil
}

func assignStruct(dst reflect.Value, v cty.Value, path string) error {
	if !isObjectLike(v.Type()) {
		return mismatch(path, "an object", v)
	}
	fields := structFields(dst.Type())
	for it := v.ElementIterator(); it.Next(); {
		k, ev := it.Element()
		name := k.AsString()
		index, ok := fields[name]
		if !ok {
			return &DecodeError{Path: joinPath(path, name), Problem: fmt.Sprintf("no field of %s has the tag codec:%q", dst.Type(), name)}
		}
		f, err := fieldByIndexAlloc(dst, index)
		if err != nil {
			return &DecodeError{Path: joinPath(path, name), Problem: err.Error()}
		}
		if err := assign(f, ev, joinPath(path, name)); err != nil {
			return err
		}
	}
	return nil
}

// fieldByIndexAlloc is FieldByIndex that allocates nil embedded pointers.
func fieldByIndexAlloc(v reflect.Value, index []int) (reflect.Value, error) {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				if !v.CanSet() {
					return reflect.Value{}, fmt.Errorf("cannot set embedded pointer %s", v.Type())
				}
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v, nil
}

var fieldCache sync.Map // reflect.Type -> map[string][]int

// structFields maps codec names to field index paths for t, inlining
// untagged embedded structs (as ugorji's codec does).
func structFields(t reflect.Type) map[string][]int {
	if cached, ok := fieldCache.Load(t); ok {
		return cached.(map[string][]int)
	}
	out := map[string][]int{}
	collectFields(t, nil, out, 0)
	fieldCache.Store(t, out)
	return out
}

func collectFields(t reflect.Type, prefix []int, out map[string][]int, depth int) {
	if depth > 8 {
		return // pathological embedding
	}
	for i := range t.NumField() {
		f := t.Field(i)
		tag, hasTag := f.Tag.Lookup("codec")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		index := append(append([]int(nil), prefix...), i)
		if f.Anonymous && (!hasTag || name == "") {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				collectFields(ft, index, out, depth+1)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if _, dup := out[name]; !dup || len(prefix) == 0 {
			out[name] = index
		}
	}
}

// toGo converts v into plain Go values for an `any` field.
func toGo(v cty.Value, path string) (any, error) {
	if !v.IsKnown() {
		return nil, &DecodeError{Path: path, Problem: "value is unknown"}
	}
	if v.IsNull() {
		return nil, nil
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
			return i, nil
		}
		x, _ := f.Float64()
		return x, nil
	case isSequence(ty):
		out := make([]any, 0, v.LengthInt())
		i := 0
		for it := v.ElementIterator(); it.Next(); i++ {
			_, ev := it.Element()
			g, err := toGo(ev, path+"["+strconv.Itoa(i)+"]")
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
			g, err := toGo(ev, path+"["+strconv.Quote(k.AsString())+"]")
			if err != nil {
				return nil, err
			}
			out[k.AsString()] = g
		}
		return out, nil
	default:
		return nil, &DecodeError{Path: path, Problem: "unsupported value of type " + ty.FriendlyName()}
	}
}

// numText formats a number for a message: integers below 1e30 in full,
// everything else with at most 20 significant digits (a number such as
// 1e100000000 must not become a hundred-million-digit string).
func numText(f *big.Float) string {
	if f.IsInt() && f.MantExp(nil) <= 100 {
		return f.Text('f', 0)
	}
	return f.Text('g', 20)
}

func mismatch(path, want string, v cty.Value) error {
	return &DecodeError{Path: path, Problem: fmt.Sprintf("expected %s, got %s", want, describe(v))}
}

// describe names a value for an error message. Strings are quoted and cut
// short so that a long value does not flood logs.
func describe(v cty.Value) string {
	if v.IsNull() {
		return "null"
	}
	if !v.IsKnown() {
		return "an unknown value"
	}
	ty := v.Type()
	switch {
	case ty == cty.String:
		s := v.AsString()
		if len(s) > 40 {
			s = s[:40] + "..."
		}
		return "string " + strconv.Quote(s)
	case ty == cty.Number:
		return "number " + numText(v.AsBigFloat())
	case ty == cty.Bool:
		return "bool " + strconv.FormatBool(v.True())
	case isSequence(ty):
		return fmt.Sprintf("a list of %d elements", v.LengthInt())
	case isObjectLike(ty):
		return "an object"
	default:
		return ty.FriendlyName()
	}
}
