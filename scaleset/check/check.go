// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package check is `nomad-gha-scaleset check`: it validates a
// configuration and probes everything the service will need before it is
// started (GitHub credentials, the runner group and scale set, the
// backend), and prints a report with one verdict.
//
// Every probe sits behind a small interface (GitHub, Docker, Nomad, Tart)
// built by a factory in Probes, so tests can substitute doubles for the
// parts they do not exercise; DefaultProbes talks to the real things.
// Probes only read: check creates no scale set, pulls no image and
// dispatches no job.
package check

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tartnomad/nomad-driver-tart/scaleset/config"
	"github.com/tartnomad/nomad-driver-tart/scaleset/service"
)

// Status is the outcome of one check.
type Status int

// Statuses, from good to bad.
const (
	OK Status = iota
	Skip
	Warn
	Fail
)

// String is the status as the report prints it: ok, skip, warn or FAIL.
func (s Status) String() string {
	switch s {
	case OK:
		return "ok"
	case Skip:
		return "skip"
	case Warn:
		return "warn"
	default:
		return "FAIL"
	}
}

// Result is one line of the report.
type Result struct {
	// Scope is "config" or the scale set's name.
	Scope  string
	Name   string
	Status Status
	Detail string
}

// Report is every result in the order the checks ran.
type Report struct {
	Results []Result
}

func (r *Report) add(scope, name string, st Status, format string, a ...any) {
	r.Results = append(r.Results, Result{Scope: scope, Name: name, Status: st, Detail: fmt.Sprintf(format, a...)})
}

// Count returns how many results have status s.
func (r *Report) Count(s Status) int {
	n := 0
	for _, res := range r.Results {
		if res.Status == s {
			n++
		}
	}
	return n
}

// OK reports whether nothing failed (warnings allowed).
func (r *Report) OK() bool { return r.Count(Fail) == 0 }

// Write prints the report and its verdict.
func (r *Report) Write(w io.Writer) {
	for _, res := range r.Results {
		fmt.Fprintf(w, "  [%-4s] %s: %s: %s\n", res.Status, res.Scope, res.Name, res.Detail)
	}
	fails, warns := r.Count(Fail), r.Count(Warn)
	switch {
	case fails > 0:
		fmt.Fprintf(w, "verdict: NOT READY: %d problem(s), %d warning(s); fix the FAIL lines and run check again\n", fails, warns)
	case warns > 0:
		fmt.Fprintf(w, "verdict: READY with %d warning(s)\n", warns)
	default:
		fmt.Fprintln(w, "verdict: READY")
	}
}

// Options configure Run.
type Options struct {
	// Probes build the probes; zero fields get DefaultProbes' values.
	Probes Probes
	// Timeout bounds each probe. Default 20s.
	Timeout time.Duration
}

// Run validates cfg (ResolveSecrets must have run; its error is given as
// secretsErr) and, if it is valid, probes GitHub and each scale set's
// backend. It always returns a report; the verdict is Report.OK.
func Run(ctx context.Context, cfg *config.Config, secretsErr error, o Options) *Report {
	r := &Report{}
	o.Probes = o.Probes.withDefaults()
	if o.Timeout <= 0 {
		o.Timeout = 20 * time.Second
	}
	if err := errors.Join(secretsErr, cfg.Validate(), service.ValidateBackends(cfg)); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			r.add("config", "validate", Fail, "%s", line)
		}
		return r
	}
	r.add("config", "validate", OK, "%d scale set(s), listen_address %s", len(cfg.ScaleSets), cfg.ListenAddress)
	for _, ss := range cfg.ScaleSets {
		checkGitHub(ctx, r, cfg, ss, o)
		checkBackend(ctx, r, ss, o)
	}
	return r
}
