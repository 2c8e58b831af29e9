// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package demo

import (
	"context"
	"io"
)

// scaleSetService is the scale-set service the demo drives: in this
// process (tests and the benchmark, see inprocess.go) or the real
// nomad-gha-scaleset binary as a child process (the demo program, see
// process.go).
type scaleSetService interface {
	// describe is a short note for the "listening" line ("" or "(pid N) ").
	describe() string
	// addr is the address of /metrics, /healthz and /readyz.
	addr() string
	// done is closed when the service has stopped by itself or by stop.
	done() <-chan struct{}
	// counts are the service's runner counts now.
	counts(ctx context.Context) (runnerCounts, error)
	// peak is the most runners alive at once so far.
	peak() int
	// held counts the runners the backend holds.
	held(ctx context.Context) (int, error)
	// stop stops the service gracefully and waits for it; later calls
	// return the first call's result.
	stop() error
	// purge removes the runners the backend still holds once the service
	// stopped (it keeps busy ones for its next process; the demo has
	// none) and returns how many it removed.
	purge(ctx context.Context, out io.Writer) int
}

// runnerCounts are the service's runners by phase (starting counts the
// pending ones too).
type runnerCounts struct{ starting, idle, busy, finishing int }

func (c runnerCounts) active() int { return c.starting + c.idle + c.busy }
