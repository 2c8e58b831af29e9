// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package sdk is the protocol layer our Nomad task drivers sit on. It owns the
// Go-native driver contract (Driver and the types it exchanges), serving that
// contract to a Nomad client over go-plugin and gRPC with Nomad's handshake,
// and the adapters between the native types and the generated protobuf types
// in driver/internal/pb. A driver written against this package never handles
// protobuf types, and none appears in its API: the adapters are unexported,
// and what this module's harness and tests need of the protobuf side (the
// client stubs, the schema conversion) is in driver/internal/wire.
//
// It must not import github.com/hashicorp/nomad (not open source, not
// available); wire compatibility comes from our own .proto files.
package sdk
