// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package testdriver is a small task driver that runs host processes, used
// only to test driver/harness. It is deliberately built like a real driver
// should be: tasks outlive the plugin process and are re-attachable from
// driver_state alone.
//
// Each task runs under a wrapper process (this package's Wrap, started as
// "<binary> wrap" in its own session) that waits for the command and writes
// its exit status to a file in the task's state directory. The plugin
// records the wrapper's PID and that directory in driver_state; a fresh
// plugin process recovers the task by polling for the status file while the
// wrapper is alive. Signals go straight to the command's PID, which the
// wrapper records as well.
//
// It must not be imported outside driver/harness tests.
package testdriver
