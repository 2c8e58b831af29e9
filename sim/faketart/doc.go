// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package faketart is a simulator of the tart CLI (2.32.x) for tests and
// demos on Linux, built as the faketart binary (sim/cmd/faketart). It follows
// the real tart CLI (tart.run, github.com/cirruslabs/tart): the TART_HOME storage layout, the
// config.json lock that makes a VM "running", the exact exit codes and
// stderr shapes, pull progress lines, the macOS two-VM limit, and `exec`
// that runs the command for real on the host inside the VM's guest/
// directory.
//
// Every faketart invocation is its own process, like tart: state lives on
// disk and in POSIX/flock locks, so many faketart processes can share one
// TART_HOME. Fault and timing knobs are FAKETART_* environment variables,
// documented in README.md; production code must never read them.
//
// The package imports only the standard library and this repository's
// version package; the tart client package must not import it outside
// tests.
package faketart
