// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package hclspec

import "errors"

// Decode decodes raw (msgpack-encoded cty, as Nomad sends it) into out, a
// pointer to a struct with `codec:"name"` tags, checking it against spec.
// Errors name the field and the problem.
//
// Placeholder: replaced by the full implementation.
func Decode(spec *Spec, raw []byte, out any) error {
	return errors.New("hclspec.Decode: not implemented yet")
}
