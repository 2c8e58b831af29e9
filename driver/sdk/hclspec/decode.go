// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package hclspec

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"

	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	ctymsgpack "github.com/zclconf/go-cty/cty/msgpack"
)

// ErrDecode is wrapped by every error Decode returns for bad input.
var ErrDecode = errors.New("cannot decode config")

// DecodeError is a problem with one field of a decoded configuration.
type DecodeError struct {
	// Path is the field's path in the configuration, using the schema's
	// names: "cpu", "dir[1].host_path", `env["HOME"]`. Empty for the root.
	Path    string
	Problem string
}

// Error names the field path, or says "config" for the root.
func (e *DecodeError) Error() string {
	if e.Path == "" {
		return "config: " + e.Problem
	}
	return fmt.Sprintf("field %q: %s", e.Path, e.Problem)
}

// Unwrap makes errors.Is(err, ErrDecode) true.
func (e *DecodeError) Unwrap() error { return ErrDecode }

// decodeValue turns the msgpack bytes Nomad sends (SetConfigRequest.
// msgpack_config, TaskConfig.msgpack_driver_config) into a cty value whose
// type is implied by the bytes: maps become objects, arrays tuples, nil a
// dynamic null, and numbers sent as decimal text stay strings. Empty input
// gives cty.NilVal and no error.
func decodeValue(raw []byte) (val cty.Value, err error) {
	if len(raw) == 0 {
		return cty.NilVal, nil
	}
	defer func() {
		// Guard against a decoder panic on hostile input: a bad config must
		// fail the task, never the plugin.
		if r := recover(); r != nil {
			val, err = cty.NilVal, &DecodeError{Problem: fmt.Sprintf("malformed msgpack: %v", r)}
		}
	}()
	if err := checkMsgpack(raw); err != nil {
		return cty.NilVal, &DecodeError{Problem: fmt.Sprintf("malformed msgpack: %v", err)}
	}
	ty, err := ctymsgpack.ImpliedType(raw)
	if err != nil {
		return cty.NilVal, &DecodeError{Problem: fmt.Sprintf("malformed msgpack: %v", err)}
	}
	val, err = ctymsgpack.Unmarshal(raw, ty)
	if err != nil {
		return cty.NilVal, &DecodeError{Problem: fmt.Sprintf("malformed msgpack: %v", err)}
	}
	return val, nil
}

// Decode decodes raw (msgpack-encoded cty, as Nomad sends it) into out, a
// pointer to a struct with `codec:"name"` tags, checking it against spec.
// Errors name the field and the problem; callers add their context, e.g.
// fmt.Errorf("task config: %w", err).
//
// out is reset to its zero value first; empty raw leaves it zero. With a
// non-nil spec, keys the schema does not declare are rejected and the value
// is first converted to the schema's implied type where possible (so a
// number sent as text is a number even for an `any` field). Every key of
// the value must have a struct field (tag `codec:"name"`, or the Go field name
// when untagged; `codec:"-"` fields are skipped; untagged embedded structs are
// inlined). Conversions:
//
//   - string, bool: from the same cty type only;
//   - all int, uint and float kinds: from a number or from a decimal string
//     (Nomad sends 0.1, 1e19 and integers beyond int64 as text), with range
//     checks and no silent truncation of fractions into integers;
//   - time.Duration: from a string such as "30s" (time.ParseDuration);
//   - slices and arrays: from a list, set or tuple;
//   - maps with string keys: from a map or object, or from a list of objects
//     (merged in order: what HCL job files send for `x = {...}`);
//   - structs: from an object (block); pointers: nil from null;
//   - cty.Value: the value as is; any (interface{}): string, bool, int64 or
//     float64, []any, map[string]any, nil.
func Decode(spec *Spec, raw []byte, out any) error {
	rv := reflect.ValueOf(out)
	if !rv.IsValid() || rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("%w: out must be a non-nil pointer, got %T", ErrDecode, out)
	}
	target := rv.Elem()
	target.SetZero()
	if len(raw) == 0 {
		return nil
	}
	val, err := decodeValue(raw)
	if err != nil {
		return err
	}
	return decodeCty(spec, val, out)
}

// decodeCty is Decode for a value already decoded with decodeValue (or built
// by EncodePluginConfigValue and friends). out is reset to its zero value
// first; a cty.NilVal or null val leaves it zero.
func decodeCty(spec *Spec, val cty.Value, out any) error {
	rv := reflect.ValueOf(out)
	if !rv.IsValid() || rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("%w: out must be a non-nil pointer, got %T", ErrDecode, out)
	}
	target := rv.Elem()
	target.SetZero()
	if val == cty.NilVal || val.IsNull() {
		return nil
	}
	if spec != nil {
		if err := checkKeys(spec, val, ""); err != nil {
			return err
		}
		val = conformToSpec(spec, val)
	}
	return assign(target, val, "")
}

// conformToSpec converts val to the type the schema implies where that
// works, so that numbers sent as text become numbers (also for `any` Go
// fields) and literal tuples become lists. Where it does not work, val is
// returned unchanged and the struct walk reports the precise problem.
func conformToSpec(spec *Spec, val cty.Value) cty.Value {
	ty, err := impliedType(spec)
	if err != nil {
		return val
	}
	conv, err := convert.Convert(val, ty)
	if err != nil {
		return val
	}
	return conv
}

// checkKeys rejects object keys the schema does not declare, where the
// schema is an object (the root, and the bodies of blocks).
func checkKeys(spec *Spec, val cty.Value, path string) error {
	if spec == nil || val.IsNull() || !val.IsKnown() {
		return nil
	}
	ty := val.Type()
	switch spec.Kind {
	case KindObject:
		if !ty.IsObjectType() && !ty.IsMapType() {
			return nil // the struct walk reports the type mismatch
		}
		for it := val.ElementIterator(); it.Next(); {
			k, v := it.Element()
			name := k.AsString()
			child, ok := spec.Attributes[name]
			if !ok {
				return &DecodeError{Path: joinPath(path, name), Problem: "not declared in the schema"}
			}
			if err := checkKeys(child, v, joinPath(path, name)); err != nil {
				return err
			}
		}
	case KindBlock:
		return checkKeys(spec.Nested, val, path)
	case KindDefault:
		return checkKeys(spec.Primary, val, path)
	case KindBlockList, KindBlockSet:
		if !ty.IsListType() && !ty.IsSetType() && !ty.IsTupleType() {
			return nil
		}
		i := 0
		for it := val.ElementIterator(); it.Next(); i++ {
			_, v := it.Element()
			if err := checkKeys(spec.Nested, v, path+"["+strconv.Itoa(i)+"]"); err != nil {
				return err
			}
		}
	case KindBlockMap:
		return checkBlockMapKeys(spec, val, path, len(spec.Labels))
	}
	return nil
}

func checkBlockMapKeys(spec *Spec, val cty.Value, path string, depth int) error {
	if depth == 0 {
		return checkKeys(spec.Nested, val, path)
	}
	if val.IsNull() || !val.IsKnown() || (!val.Type().IsObjectType() && !val.Type().IsMapType()) {
		return nil
	}
	for it := val.ElementIterator(); it.Next(); {
		k, v := it.Element()
		if err := checkBlockMapKeys(spec, v, path+"["+strconv.Quote(k.AsString())+"]", depth-1); err != nil {
			return err
		}
	}
	return nil
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
