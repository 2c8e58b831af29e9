// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package demo

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// Latency summarises a set of durations.
type Latency struct{ P50, P95, Max time.Duration }

func latencyOf(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	pick := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s)-1)+0.5))] }
	return Latency{P50: pick(0.50), P95: pick(0.95), Max: s[len(s)-1]}
}

func (l Latency) String() string {
	r := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	return fmt.Sprintf("p50 %-8s p95 %-8s max %s", r(l.P50), r(l.P95), r(l.Max))
}

// Summary is the outcome of a demo run.
type Summary struct {
	Backend        string
	Why            string // why this backend was chosen
	Jobs           int
	Done           int
	Succeeded      int
	LeftBehind     int // runners left on the backend or registered on GitHub
	PeakRunners    int // most runners alive at once (backend view)
	MaxRunners     int
	QueuedToOnline Latency
	QueuedToDone   Latency
	AllDone        time.Duration // from the burst to the last job done
	Wall           time.Duration
	// Interrupted is set when the caller's context ended (Ctrl-C, SIGTERM)
	// before every job finished; the demo still cleaned up.
	Interrupted bool
	// Purged counts runners the demo removed itself after the service
	// stopped (busy ones the service leaves for a next process; the demo
	// has none).
	Purged int
}

// OK reports whether every job finished and nothing was left behind.
func (s Summary) OK() bool {
	return !s.Interrupted && s.Done == s.Jobs && s.LeftBehind == 0 && s.PeakRunners <= s.MaxRunners
}

// ErrInterrupted is returned by Run when its context ended before every job
// finished.
var ErrInterrupted = errors.New("interrupted")

func printSummary(w io.Writer, s Summary) {
	fmt.Fprintf(w, "\n==> summary (backend %s, %d jobs, max_runners %d)\n", s.Backend, s.Jobs, s.MaxRunners)
	fmt.Fprintf(w, "  jobs done:               %d/%d (%d succeeded)\n", s.Done, s.Jobs, s.Succeeded)
	fmt.Fprintf(w, "  runners left behind:     %d\n", s.LeftBehind)
	fmt.Fprintf(w, "  peak runners at once:    %d (max_runners %d)\n", s.PeakRunners, s.MaxRunners)
	fmt.Fprintf(w, "  queued -> runner online: %s\n", s.QueuedToOnline)
	fmt.Fprintf(w, "  queued -> job done:      %s\n", s.QueuedToDone)
	fmt.Fprintf(w, "  burst -> all jobs done:  %s\n", s.AllDone.Round(time.Millisecond))
	fmt.Fprintf(w, "  wall time:               %s\n", s.Wall.Round(time.Millisecond))
	if s.Purged > 0 {
		fmt.Fprintf(w, "  runners removed at exit: %d (busy when the burst ended)\n", s.Purged)
	}
	switch {
	case s.Interrupted:
		fmt.Fprintf(w, "  result:                  INTERRUPTED after %d of %d jobs (cleaned up)\n", s.Done, s.Jobs)
	case s.OK():
		fmt.Fprintln(w, "  result:                  OK")
	default:
		fmt.Fprintln(w, "  result:                  FAILED")
	}
}
