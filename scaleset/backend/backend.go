// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package backend defines what the scale-set service needs from a place that
// runs ephemeral runners (Docker containers, Tart VMs, dispatched Nomad jobs):
// start one with a JIT config, remove one, list what exists for
// reconciliation, and clean up. Implementations live in sub-packages and
// know nothing about GitHub beyond the opaque JIT config string.
package backend

import (
	"context"
	"time"
)

// RunnerBackend is the seed's contract, kept as the documented minimum of
// a runner backend: runner lifecycle operations across execution
// backends. The service itself asks for Backend, which embeds it; each
// backend asserts both at compile time.
type RunnerBackend interface {
	// StartRunner creates and starts a new ephemeral runner with the given
	// name and JIT configuration. Returns a resource ID used for cleanup.
	// The JIT config is a secret: it must never appear in logs or errors.
	StartRunner(ctx context.Context, name string, jitConfig string) (resourceID string, err error)
	// RemoveRunner stops and removes a runner by its resource ID. Removing
	// one that is already gone is not an error.
	RemoveRunner(ctx context.Context, resourceID string) error
	// Shutdown performs backend-specific cleanup (prune images, remove
	// volumes, stop warm pools).
	Shutdown(ctx context.Context)
}

// Identity is who a runner is: the GitHub runner ID from its JIT config
// response (unique, never reused) and its name (readable, unique per
// runner). A backend records both with the resource (a container label,
// dispatch meta, a VM record) so that a restarted service adopts its
// runners by ID, never by guessing from a name.
type Identity struct {
	Name     string
	RunnerID int
}

// Backend is a RunnerBackend that can also tell what it holds, which the
// scale-set service's reconcile loop compares with its target and with the
// runners GitHub knows.
type Backend interface {
	RunnerBackend
	// StartIdentified is StartRunner for a runner whose GitHub runner ID
	// is known: the backend records id with the resource and ListRunners
	// reports it.
	StartIdentified(ctx context.Context, id Identity, jitConfig string) (resourceID string, err error)
	// Name is the backend kind ("docker", "tart", "nomad"), used in metrics.
	Name() string
	// ListRunners returns every runner this backend instance holds for its
	// scale set, including exited and failed ones not yet removed.
	ListRunners(ctx context.Context) ([]Runner, error)
}

// StartPathReporter is implemented by backends whose runner starts take
// different paths (the tart backend: "warm", "resumed", "cold"); the
// scaler labels its start-latency metric with it.
type StartPathReporter interface {
	// StartPath returns how the runner with this resource ID was started
	// ("" if unknown).
	StartPath(resourceID string) string
}

// State is the backend-side state of a runner.
type State string

// Runner states as a backend sees them.
const (
	// StatePending: accepted but not yet running (image pull, VM boot,
	// Nomad placement).
	StatePending State = "pending"
	// StateRunning: the runner process is running.
	StateRunning State = "running"
	// StateExited: the runner process ended with success.
	StateExited State = "exited"
	// StateFailed: the runner could not be started or ended with an error.
	StateFailed State = "failed"
)

// Runner is one runner as a backend holds it.
type Runner struct {
	Name       string // the GitHub runner name
	ResourceID string // container ID, VM name, dispatched job ID
	// RunnerID is the GitHub runner ID the backend recorded at start; 0
	// when it recorded none (a resource started through StartRunner, or
	// by a version that did not record it).
	RunnerID int
	State    State
	// Reason explains StateFailed or a long StatePending (e.g. "no node
	// with driver tart has capacity").
	Reason string
	// WaitingForCapacity: a pending runner is queued for capacity (no node
	// can take it yet; for Nomad a blocked evaluation whose placements
	// failed on full nodes, e.g. every VM slot device taken) rather than
	// failing to start; Reason says what is exhausted. The scaler keeps it
	// up to its queue timeout instead of the never-online timeout.
	WaitingForCapacity bool
	CreatedAt          time.Time
}

// WarmPool is implemented by backends that keep runners' machines booted
// ahead of demand (the tart backend's warm VMs). The service exports it as
// metrics: how full the pool is, and how many runner starts it served
// (warm) against those that had to boot a machine first (cold).
type WarmPool interface {
	WarmPoolStats() WarmPoolStats
}

// WarmPoolStats is a snapshot of a backend's warm pool.
type WarmPoolStats struct {
	// Size is the configured number of warm machines; Ready how many are
	// booted and unclaimed now.
	Size, Ready int
	// WarmStarts, ResumedStarts and ColdStarts count runner starts since
	// the backend was created, by path: a warm machine claimed, a
	// suspended template's clone resumed, or a machine booted.
	WarmStarts, ResumedStarts, ColdStarts uint64
	// TemplatesReady is the suspended templates ready (tart resume mode).
	TemplatesReady int
}
