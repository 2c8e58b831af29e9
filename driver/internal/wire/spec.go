// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package wire

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	hclspecpb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/hclspec"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk/hclspec"
)

// SpecToProto converts a schema to the hclspec.Spec message Nomad expects in
// ConfigSchema and TaskConfigSchema. It rejects the shapes Nomad's converter
// rejects or crashes on (a default without primary or default, a block
// without nested spec, an attribute without type or name, a block map
// without labels), naming the offending path, so a bad schema fails in our
// tests rather than at agent start. A nil spec converts to nil.
func SpecToProto(s *hclspec.Spec) (*hclspecpb.Spec, error) {
	if s == nil {
		return nil, nil
	}
	return specToProto(s, "root", false)
}

// specToProto converts s found at path; hasKey says whether s is a direct
// child of an object, whose key then stands in for an empty name.
func specToProto(s *hclspec.Spec, path string, hasKey bool) (*hclspecpb.Spec, error) {
	if s == nil {
		return nil, fmt.Errorf("%s: missing spec", path)
	}
	if err := checkName(s, path, hasKey); err != nil {
		return nil, err
	}
	switch s.Kind {
	case hclspec.KindObject:
		return objectToProto(s, path)
	case hclspec.KindArray:
		return arrayToProto(s, path)
	case hclspec.KindAttr, hclspec.KindBlockAttrs:
		return typedToProto(s, path)
	case hclspec.KindBlock, hclspec.KindBlockList, hclspec.KindBlockSet, hclspec.KindBlockMap:
		return blockToProto(s, path)
	case hclspec.KindDefault:
		return defaultToProto(s, path)
	case hclspec.KindLiteral:
		return &hclspecpb.Spec{Block: &hclspecpb.Spec_Literal{Literal: &hclspecpb.Literal{Value: s.Value}}}, nil
	default:
		return nil, fmt.Errorf("%s: unknown spec kind %d", path, s.Kind)
	}
}

// checkName enforces Nomad's naming rule: only direct children of an object
// may leave the name empty (the key is used).
func checkName(s *hclspec.Spec, path string, hasKey bool) error {
	switch s.Kind {
	case hclspec.KindAttr, hclspec.KindBlock, hclspec.KindBlockAttrs,
		hclspec.KindBlockList, hclspec.KindBlockSet, hclspec.KindBlockMap:
		if s.Name == "" && !hasKey {
			return fmt.Errorf("%s: name is required outside a direct object attribute", path)
		}
	}
	return nil
}

func objectToProto(s *hclspec.Spec, path string) (*hclspecpb.Spec, error) {
	attrs := make(map[string]*hclspecpb.Spec, len(s.Attributes))
	for _, key := range slices.Sorted(maps.Keys(s.Attributes)) {
		child, err := specToProto(s.Attributes[key], path+"."+key, true)
		if err != nil {
			return nil, err
		}
		attrs[key] = child
	}
	return &hclspecpb.Spec{Block: &hclspecpb.Spec_Object{Object: &hclspecpb.Object{Attributes: attrs}}}, nil
}

func arrayToProto(s *hclspec.Spec, path string) (*hclspecpb.Spec, error) {
	values := make([]*hclspecpb.Spec, 0, len(s.Values))
	for i, v := range s.Values {
		child, err := specToProto(v, fmt.Sprintf("%s[%d]", path, i), false)
		if err != nil {
			return nil, err
		}
		values = append(values, child)
	}
	return &hclspecpb.Spec{Block: &hclspecpb.Spec_Array{Array: &hclspecpb.Array{Values: values}}}, nil
}

func typedToProto(s *hclspec.Spec, path string) (*hclspecpb.Spec, error) {
	if s.Type == "" {
		return nil, fmt.Errorf("%s: type is required", path)
	}
	if s.Kind == hclspec.KindAttr {
		return &hclspecpb.Spec{Block: &hclspecpb.Spec_Attr{Attr: &hclspecpb.Attr{
			Name: s.Name, Type: s.Type, Required: s.Required,
		}}}, nil
	}
	return &hclspecpb.Spec{Block: &hclspecpb.Spec_BlockAttrs{BlockAttrs: &hclspecpb.BlockAttrs{
		Name: s.Name, Type: s.Type, Required: s.Required,
	}}}, nil
}

func blockToProto(s *hclspec.Spec, path string) (*hclspecpb.Spec, error) {
	if s.Nested == nil {
		return nil, fmt.Errorf("%s: nested spec is required", path)
	}
	nested, err := specToProto(s.Nested, path+"{}", false)
	if err != nil {
		return nil, err
	}
	if s.MinItems < 0 || s.MaxItems < 0 {
		return nil, fmt.Errorf("%s: min_items %d and max_items %d must not be negative", path, s.MinItems, s.MaxItems)
	}
	minItems, maxItems := uint64(s.MinItems), uint64(s.MaxItems)
	switch s.Kind {
	case hclspec.KindBlock:
		return &hclspecpb.Spec{Block: &hclspecpb.Spec_BlockValue{BlockValue: &hclspecpb.Block{
			Name: s.Name, Required: s.Required, Nested: nested,
		}}}, nil
	case hclspec.KindBlockList:
		return &hclspecpb.Spec{Block: &hclspecpb.Spec_BlockList{BlockList: &hclspecpb.BlockList{
			Name: s.Name, MinItems: minItems, MaxItems: maxItems, Nested: nested,
		}}}, nil
	case hclspec.KindBlockSet:
		return &hclspecpb.Spec{Block: &hclspecpb.Spec_BlockSet{BlockSet: &hclspecpb.BlockSet{
			Name: s.Name, MinItems: minItems, MaxItems: maxItems, Nested: nested,
		}}}, nil
	default: // hclspec.KindBlockMap
		if len(s.Labels) == 0 {
			return nil, fmt.Errorf("%s: a block map needs at least one label", path)
		}
		return &hclspecpb.Spec{Block: &hclspecpb.Spec_BlockMap{BlockMap: &hclspecpb.BlockMap{
			Name: s.Name, Labels: slices.Clone(s.Labels), Nested: nested,
		}}}, nil
	}
}

func defaultToProto(s *hclspec.Spec, path string) (*hclspecpb.Spec, error) {
	// Nomad converts both children without a default name, and a missing
	// child crashes the agent; both must be present and named.
	if s.Primary == nil || s.Default == nil {
		return nil, fmt.Errorf("%s: a default spec needs both primary and default", path)
	}
	primary, err := specToProto(s.Primary, path+".primary", false)
	if err != nil {
		return nil, err
	}
	def, err := specToProto(s.Default, path+".default", false)
	if err != nil {
		return nil, err
	}
	return &hclspecpb.Spec{Block: &hclspecpb.Spec_Default{Default: &hclspecpb.Default{
		Primary: primary, Default: def,
	}}}, nil
}

// errEmptySpec reports a Spec message with no oneof member set.
var errEmptySpec = errors.New("spec has no member set")

// SpecFromProto converts a wire schema back into the Go tree, e.g. for a
// test harness that received it over gRPC. A nil message converts to nil.
func SpecFromProto(p *hclspecpb.Spec) (*hclspec.Spec, error) {
	if p == nil {
		return nil, nil
	}
	return specFromProto(p, "root")
}

func specFromProto(p *hclspecpb.Spec, path string) (*hclspec.Spec, error) {
	if p == nil {
		return nil, fmt.Errorf("%s: missing spec", path)
	}
	switch b := p.GetBlock().(type) {
	case *hclspecpb.Spec_Object:
		return objectFromProto(b.Object, path)
	case *hclspecpb.Spec_Array:
		return arrayFromProto(b.Array, path)
	case *hclspecpb.Spec_Attr:
		a := b.Attr
		return &hclspec.Spec{Kind: hclspec.KindAttr, Name: a.GetName(), Type: a.GetType(), Required: a.GetRequired()}, nil
	case *hclspecpb.Spec_BlockAttrs:
		a := b.BlockAttrs
		return &hclspec.Spec{Kind: hclspec.KindBlockAttrs, Name: a.GetName(), Type: a.GetType(), Required: a.GetRequired()}, nil
	case *hclspecpb.Spec_BlockValue:
		return nestedFromProto(&hclspec.Spec{Kind: hclspec.KindBlock, Name: b.BlockValue.GetName(),
			Required: b.BlockValue.GetRequired()}, b.BlockValue.GetNested(), path)
	case *hclspecpb.Spec_BlockList:
		return blockListFromProto(hclspec.KindBlockList, b.BlockList.GetName(), b.BlockList.GetMinItems(),
			b.BlockList.GetMaxItems(), b.BlockList.GetNested(), path)
	case *hclspecpb.Spec_BlockSet:
		return blockListFromProto(hclspec.KindBlockSet, b.BlockSet.GetName(), b.BlockSet.GetMinItems(),
			b.BlockSet.GetMaxItems(), b.BlockSet.GetNested(), path)
	case *hclspecpb.Spec_BlockMap:
		return nestedFromProto(&hclspec.Spec{Kind: hclspec.KindBlockMap, Name: b.BlockMap.GetName(),
			Labels: slices.Clone(b.BlockMap.GetLabels())}, b.BlockMap.GetNested(), path)
	case *hclspecpb.Spec_Default:
		return defaultFromProto(b.Default, path)
	case *hclspecpb.Spec_Literal:
		return &hclspec.Spec{Kind: hclspec.KindLiteral, Value: b.Literal.GetValue()}, nil
	default:
		return nil, fmt.Errorf("%s: %w", path, errEmptySpec)
	}
}

func objectFromProto(o *hclspecpb.Object, path string) (*hclspec.Spec, error) {
	attrs := make(map[string]*hclspec.Spec, len(o.GetAttributes()))
	for key, child := range o.GetAttributes() {
		s, err := specFromProto(child, path+"."+key)
		if err != nil {
			return nil, err
		}
		attrs[key] = s
	}
	return &hclspec.Spec{Kind: hclspec.KindObject, Attributes: attrs}, nil
}

func arrayFromProto(a *hclspecpb.Array, path string) (*hclspec.Spec, error) {
	values := make([]*hclspec.Spec, 0, len(a.GetValues()))
	for i, v := range a.GetValues() {
		s, err := specFromProto(v, fmt.Sprintf("%s[%d]", path, i))
		if err != nil {
			return nil, err
		}
		values = append(values, s)
	}
	return &hclspec.Spec{Kind: hclspec.KindArray, Values: values}, nil
}

func blockListFromProto(kind hclspec.Kind, name string, minItems, maxItems uint64, nested *hclspecpb.Spec, path string) (*hclspec.Spec, error) {
	const maxInt = uint64(^uint(0) >> 1)
	if minItems > maxInt || maxItems > maxInt {
		return nil, fmt.Errorf("%s: min_items %d or max_items %d out of range", path, minItems, maxItems)
	}
	s := &hclspec.Spec{Kind: kind, Name: name, MinItems: int(minItems), MaxItems: int(maxItems)}
	return nestedFromProto(s, nested, path)
}

func nestedFromProto(s *hclspec.Spec, nested *hclspecpb.Spec, path string) (*hclspec.Spec, error) {
	n, err := specFromProto(nested, path+"{}")
	if err != nil {
		return nil, err
	}
	s.Nested = n
	return s, nil
}

func defaultFromProto(d *hclspecpb.Default, path string) (*hclspec.Spec, error) {
	primary, err := specFromProto(d.GetPrimary(), path+".primary")
	if err != nil {
		return nil, err
	}
	def, err := specFromProto(d.GetDefault(), path+".default")
	if err != nil {
		return nil, err
	}
	return &hclspec.Spec{Kind: hclspec.KindDefault, Primary: primary, Default: def}, nil
}
