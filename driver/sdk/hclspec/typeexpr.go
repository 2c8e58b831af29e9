// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package hclspec

import (
	"reflect"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// Nomad's client does not use hcl's typeexpr package for attr types: it
// evaluates the type text as an ordinary HCL expression in which the
// primitive type names are variables and the constructors are functions.
// That accepts `null` (meaning any) and rejects `optional(...)`, which
// typeexpr would accept. We evaluate the same way to accept exactly what
// Nomad accepts.

// typeCapsule carries a cty.Type through expression evaluation.
var typeCapsule = cty.Capsule("type", reflect.TypeFor[cty.Type]())

func typeVal(ty cty.Type) cty.Value { return cty.CapsuleVal(typeCapsule, &ty) }

func typeOf(v cty.Value) cty.Type { return *v.EncapsulatedValue().(*cty.Type) }

// collectionTypeFunc builds list(T), set(T) or map(T).
func collectionTypeFunc(param string, make func(cty.Type) cty.Type) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{{Name: param, Type: typeCapsule}},
		Type:   function.StaticReturnType(typeCapsule),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			return typeVal(make(typeOf(args[0]))), nil
		},
	})
}

var typeExprContext = &hcl.EvalContext{
	Variables: map[string]cty.Value{
		"string": typeVal(cty.String),
		"number": typeVal(cty.Number),
		"bool":   typeVal(cty.Bool),
		"any":    typeVal(cty.DynamicPseudoType),
	},
	Functions: map[string]function.Function{
		"list": collectionTypeFunc("element_type", cty.List),
		"set":  collectionTypeFunc("element_type", cty.Set),
		"map":  collectionTypeFunc("element_type", cty.Map),
		"tuple": function.New(&function.Spec{
			Params: []function.Parameter{{Name: "element_types", Type: cty.List(typeCapsule)}},
			Type:   function.StaticReturnType(typeCapsule),
			Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
				var elems []cty.Type
				for it := args[0].ElementIterator(); it.Next(); {
					_, ev := it.Element()
					elems = append(elems, typeOf(ev))
				}
				return typeVal(cty.Tuple(elems)), nil
			},
		}),
		"object": function.New(&function.Spec{
			Params: []function.Parameter{{Name: "attribute_types", Type: cty.Map(typeCapsule)}},
			Type:   function.StaticReturnType(typeCapsule),
			Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
				attrs := map[string]cty.Type{}
				for it := args[0].ElementIterator(); it.Next(); {
					k, ev := it.Element()
					attrs[k.AsString()] = typeOf(ev)
				}
				return typeVal(cty.Object(attrs)), nil
			},
		}),
	},
}
