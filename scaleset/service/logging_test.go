// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package service

import (
	"strings"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/sim/actionssim"
)

// TestService_logs_backendKeyOnce: the scaler's runner lines carry the
// scale set and backend once, from the service's per-scale-set logger
// (the started runner line had backend=<kind> twice).
func TestService_logs_backendKeyOnce(t *testing.T) {
	sim := startSim(t, actionssim.Options{})
	be := newGoBackend()
	t.Cleanup(be.close)
	r := startService(t, testConfig(t, sim.OrgConfigURL("acme"), scaleSetSpec{name: "linux", max: 1}), map[string]*goBackend{"linux": be})
	waitListening(t, sim, "linux")
	sim.QueueJobs(1, 50*time.Millisecond, "linux")
	waitFor(t, sim, 30*time.Second, "the job done", allDone(1))
	_ = r.shutdown(t)

	started := 0
	for _, line := range strings.Split(r.logs.String(), "\n") {
		if !strings.Contains(line, `msg="started runner"`) {
			continue
		}
		started++
		must.Eq(t, 1, strings.Count(line, " backend="), must.Sprint(line))
		must.Eq(t, 1, strings.Count(line, " scale_set="), must.Sprint(line))
	}
	must.Positive(t, started)
}
