// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package devicepb holds our own .proto definition and the generated Go code of
// Nomad's device plugin service (hashicorp.nomad.plugins.device), wire-compatible
// with Nomad's plugin protocol. Regenerate with `make proto`; never edit the
// *.pb.go files. Used by driver/sdk and the test harness.
package devicepb
