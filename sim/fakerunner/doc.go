// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package fakerunner is a stand-in for the GitHub Actions runner
// (actions/runner) that works against the actionssim simulator. Like the
// real runner started with a JIT config it is ephemeral: it redeems the JIT
// config (exactly once), comes online, takes one job of its scale set,
// "runs" it for the job's duration, reports the result and exits 0.
//
// It reads the JIT config the way the real runner does (--jitconfig <blob>,
// or ACTIONS_RUNNER_INPUT_JITCONFIG, which it removes from its environment)
// and also from stdin (--jitconfig -) and from a file (--jitconfig-file),
// because the project's backends deliver it privately. The blob is a
// secret: it never appears in output or errors.
//
// Use Main for the sim/cmd/fakerunner binary (static, CGO_ENABLED=0) and Run to
// run a runner in-process in tests. Exit codes are the Exit* constants.
// It must import nothing but the standard library and actionssim.
package fakerunner
