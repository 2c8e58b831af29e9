// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package hclspec declares driver configuration schemas in Go, in the shape of
// Nomad's hclspec protocol (object, attr, block, block list, default,
// literal, ...), converts them to hcldec specs, and decodes the msgpack cty
// values Nomad sends (SetConfig, StartTask) into Go structs.
//
// Spec is a plain Go tree; driver/sdk converts it to the wire form.
package hclspec

// Kind says which member of Nomad's hclspec.Spec oneof a Spec is.
type Kind int

// The kinds of Spec, one per member of the hclspec.Spec oneof.
const (
	KindObject Kind = iota + 1
	KindArray
	KindAttr
	KindBlock
	KindBlockAttrs
	KindBlockList
	KindBlockSet
	KindBlockMap
	KindDefault
	KindLiteral
)

// Spec is one node of a configuration schema. Which fields are meaningful
// depends on Kind:
//
//	object:      Attributes
//	array:       Values
//	attr:        Name, Type, Required
//	block:       Name, Required, Nested
//	block_attrs: Name, Type (element type), Required
//	block_list, block_set: Name, Nested, MinItems, MaxItems (0 = unlimited)
//	block_map:   Name, Labels, Nested
//	default:     Primary, Default
//	literal:     Value (an HCL expression, e.g. `"nat"`, `2`, `["a"]`)
//
// An empty Name on a direct child of an object means "use the object key".
type Spec struct {
	Kind       Kind
	Name       string
	Type       string
	Required   bool
	Nested     *Spec
	MinItems   int
	MaxItems   int
	Labels     []string
	Attributes map[string]*Spec
	Values     []*Spec
	Primary    *Spec
	Default    *Spec
	Value      string
}
