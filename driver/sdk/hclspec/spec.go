// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

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

// String returns the kind's name as used in Nomad's hclspec.Spec oneof and in
// the golden vectors ("object", "attr", "block", "block_attrs", ...).
func (k Kind) String() string {
	switch k {
	case KindObject:
		return "object"
	case KindArray:
		return "array"
	case KindAttr:
		return "attr"
	case KindBlock:
		return "block"
	case KindBlockAttrs:
		return "block_attrs"
	case KindBlockList:
		return "block_list"
	case KindBlockSet:
		return "block_set"
	case KindBlockMap:
		return "block_map"
	case KindDefault:
		return "default"
	case KindLiteral:
		return "literal"
	default:
		return "invalid"
	}
}

// Object is a spec whose value is an object with one attribute per map
// entry. A child with an empty name (attr, block, ...) takes its key as name.
func Object(attributes map[string]*Spec) *Spec {
	return &Spec{Kind: KindObject, Attributes: attributes}
}

// Attr is an attribute `name = value` of the HCL type expression typ, e.g.
// "string", "number", "bool", "any", "list(string)", "map(string)".
func Attr(name, typ string, required bool) *Spec {
	return &Spec{Kind: KindAttr, Name: name, Type: typ, Required: required}
}

// Block is a single optional (or required) block `name { ... }` decoded with
// nested. An absent optional block yields null, not nested's defaults.
func Block(name string, required bool, nested *Spec) *Spec {
	return &Spec{Kind: KindBlock, Name: name, Required: required, Nested: nested}
}

// BlockAttrs is a block `name { k = v ... }` whose arbitrary attributes form a
// map of elemType. It is the schema to use for string maps such as env or
// labels: it accepts both `name { ... }` and `name = { ... }` in job files.
func BlockAttrs(name, elemType string, required bool) *Spec {
	return &Spec{Kind: KindBlockAttrs, Name: name, Type: elemType, Required: required}
}

// BlockList is a repeatable block decoded into a list, in order. Use
// WithItems to bound the number of blocks.
func BlockList(name string, nested *Spec) *Spec {
	return &Spec{Kind: KindBlockList, Name: name, Nested: nested}
}

// BlockSet is a repeatable block decoded into a set. Use WithItems to bound
// the number of blocks.
func BlockSet(name string, nested *Spec) *Spec {
	return &Spec{Kind: KindBlockSet, Name: name, Nested: nested}
}

// BlockMap is a repeatable labelled block `name "l1" "l2" { ... }` decoded
// into nested maps keyed by the labels (at least one).
func BlockMap(name string, labels []string, nested *Spec) *Spec {
	return &Spec{Kind: KindBlockMap, Name: name, Labels: labels, Nested: nested}
}

// Default yields primary's value, or def's when primary's is null. Nomad
// converts both without an implied name, so a primary attr must name itself:
//
//	"mode": hclspec.Default(hclspec.Attr("mode", "string", false), hclspec.Literal(`"nat"`)),
func Default(primary, def *Spec) *Spec {
	return &Spec{Kind: KindDefault, Primary: primary, Default: def}
}

// Literal is a constant: expr is HCL expression source evaluated once, so
// strings need quotes (`"nat"`), and `5`, `true`, `["a"]`, `{k = "v"}`,
// `upper("x")` are all valid.
func Literal(expr string) *Spec {
	return &Spec{Kind: KindLiteral, Value: expr}
}

// Array is a tuple of the values of its children, in order. Each child must
// name what it reads (there is no object key to borrow).
func Array(values ...*Spec) *Spec {
	return &Spec{Kind: KindArray, Values: values}
}

// WithItems sets the minimum and maximum number of blocks of a block_list or
// block_set (0 = unbounded) and returns s, for use inside a builder chain.
func (s *Spec) WithItems(minItems, maxItems int) *Spec {
	s.MinItems, s.MaxItems = minItems, maxItems
	return s
}
