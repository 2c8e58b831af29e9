// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package hclspec declares driver configuration schemas in Go, in the shape of
// Nomad's hclspec protocol (object, attr, block, block list, default,
// literal, ...), converts them to hcldec specs, and decodes the msgpack cty
// values Nomad sends (SetConfig, StartTask) into Go structs.
//
// Spec is a plain Go tree; driver/sdk converts it to the wire form.
//
// The package has three parts:
//
//   - Spec, its builders (Object, Attr, Block, ...) and Validate: the schema a
//     driver advertises, with exactly the constraints Nomad's client enforces
//     when it converts the schema (plus a few that only keep users out of
//     trouble).
//   - Decode: the plugin side. It turns the msgpack bytes of
//     SetConfig/StartTask into a Go struct with codec:"name" tags, through
//     Nomad's conversion of the schema to an hcldec.Spec (mirrored
//     unexported, as are the steps Decode and the encoders share).
//   - EncodePluginConfig and EncodeTaskConfig: the Nomad-client side, for
//     test harnesses. They reproduce the bytes a Nomad 2.0.6 client sends for
//     an agent plugin config block or a job task config block.
//
// It must not import github.com/hashicorp/nomad.
package hclspec
