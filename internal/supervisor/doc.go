// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package supervisor runs one detached guest command (`tart exec -i <vm>
// <argv>`) under a supervisor process that outlives its parent, and lets a
// later process adopt it. The Nomad driver and the scale-set service's tart
// backend both use it; it is the only way this repository starts a guest
// command that must survive its caller.
//
// The supervisor is the calling binary itself, re-executed as
// `<binary> supervise <state dir>` in its own session (setsid): Nomad's
// plugin_dir allows no helper executables, and the service ships as one
// binary too. A binary that starts supervisors must call MainIfInvoked
// first thing in main (and test binaries in TestMain).
//
// Everything about one supervisor lives in its state directory:
//
//	spec.json       what to run (written by Start, no secrets)
//	supervisor.lck  a POSIX record lock the live supervisor holds
//	control         a FIFO the supervisor reads commands from
//	exit.json       how the command ended, written atomically
//	supervisor.log  the supervisor's own stderr
//
// No PID is ever trusted across processes. Liveness is the lock, tested
// with F_GETLK, which never takes it, so a probe cannot make a starting
// supervisor fail. Signals and kills are written into the control FIFO:
// opening it for writing fails with ENXIO once no supervisor reads it, so
// a command can only reach the supervisor that owns the directory, never a
// process that reused its PID. The exit record is written to a unique
// temporary file and renamed, so readers see all of it or nothing.
package supervisor
