// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package wire is the protobuf side of the plugin protocol that driver/sdk,
// the harness and the driver's tests share: the conversion of hclspec
// schemas to and from Nomad's wire messages, and the client stubs of the
// driver and device plugins. It is internal because every signature in it
// names a type of driver/internal/pb, which no package outside this module
// can use; driver/sdk's own API never does.
package wire
