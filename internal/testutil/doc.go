// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package testutil holds helpers shared by this repository's tests: building
// the repository's binaries once per test process, skip rules for
// dependencies that only some machines have, and a census of what a test
// left behind (processes, VMs, containers, volumes, temp files), scoped to
// what that test created.
package testutil
