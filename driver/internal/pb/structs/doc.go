// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package structspb holds our own .proto definition and the generated Go code of
// shared attributes, statistics and RecoverableError (hashicorp.nomad.plugins.shared.structs),
// wire-compatible with Nomad's plugin protocol. Regenerate with `make proto`;
// never edit the *.pb.go files. Used by driver/sdk and the test harness.
package structspb
