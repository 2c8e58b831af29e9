// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package sdk is the protocol layer our Nomad task drivers sit on. It owns the
// Go-native driver contract (Driver and the types it exchanges), serving that
// contract to a Nomad client over go-plugin and gRPC with Nomad's handshake,
// and the adapters between the native types and the generated protobuf types
// in driver/internal/pb. A driver written against this package never handles
// protobuf types.
//
// It must not import github.com/hashicorp/nomad (not open source, not
// available); wire compatibility comes from our own .proto files.
package sdk
