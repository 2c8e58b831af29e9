// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package tart is a typed library over the `tart` CLI for running macOS and
// Linux VMs: a Client wrapping each tart command (with tart's exit codes and
// messages mapped to typed errors), host VM slots with deterministic
// per-slot MAC addresses, and a warm Pool of booted VMs that callers claim
// instantly. Commands run through an unexported runner seam that tests
// replace with fakes.
//
// It is used by the Nomad task driver (driver/) and by the scale-set
// service's tart backend (scaleset/backend/tartbackend). It must not import
// Nomad or GitHub packages. It logs through log/slog (default: discard);
// the driver adapts its hclog logger to it in one place.
package tart
