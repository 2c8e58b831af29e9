// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package tartbackend runs GitHub Actions runners for the scale-set service
// as ephemeral Tart VMs on the local host: it claims a warm VM from a
// tart.Pool (or cold-starts one), starts the runner inside it with a
// detached `tart exec -i`, feeding the JIT config on stdin (never argv, env
// or a file on the host), recovers running runners after a service restart,
// and deletes the VM when the runner is removed.
//
// It implements scaleset/backend.Backend and logs with log/slog, as the
// tart library does, into the same logger.
package tartbackend
