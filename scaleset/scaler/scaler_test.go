// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package scaler

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/actions/scaleset"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
)

func TestTarget(t *testing.T) {
	cases := []struct {
		name                    string
		minR, maxR, assigned, w int
	}{
		{name: "idle", minR: 0, maxR: 10, assigned: 0, w: 0},
		{name: "min pool", minR: 2, maxR: 10, assigned: 0, w: 2},
		{name: "demand on top of min", minR: 2, maxR: 10, assigned: 3, w: 5},
		{name: "capped at max", minR: 0, maxR: 10, assigned: 50, w: 10},
		{name: "min plus demand capped", minR: 5, maxR: 6, assigned: 3, w: 6},
		{name: "negative assigned", minR: 1, maxR: 3, assigned: -4, w: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			must.Eq(t, tc.w, targetRunners(tc.minR, tc.maxR, tc.assigned))
		})
	}
}

func TestConfig_Validate_namesFields(t *testing.T) {
	cfg := Config{MinRunners: 3, MaxRunners: 2}
	err := cfg.Validate()
	must.ErrorContains(t, err, "scale_set_id")
	must.ErrorContains(t, err, "name_prefix")
	must.ErrorContains(t, err, "min_runners")
	must.Eq(t, 5*time.Minute, cfg.OnlineTimeout)
}

func TestScaler_Shutdown_removeIdle(t *testing.T) {
	h := newHarness(t, Config{MinRunners: 3, MaxRunners: 5}, nil, nil)
	h.assign(t, 0)
	h.reconcile(t)
	h.jobStarted(t, "linux-1")
	h.s.Shutdown(t.Context(), true)
	must.Eq(t, []string{"linux-1"}, h.be.names())
	must.Eq(t, []string{"linux-1"}, h.gh.names())
}

func TestScaler_secretsNeverLogged(t *testing.T) {
	be := newFakeBackend()
	h := newHarness(t, Config{MaxRunners: 3}, nil, be)
	h.assign(t, 3)
	h.reconcile(t)
	must.SliceLen(t, 3, be.jits)
	must.StrContains(t, be.jits[0], "SECRET-JIT-")
	must.StrContains(t, h.logs.String(), "started runner")
	must.False(t, strings.Contains(h.logs.String(), "SECRET-JIT"))
}

func TestScaler_neverExceedsMax(t *testing.T) {
	h := newHarness(t, Config{MaxRunners: 4, MaxParallelOps: 16}, nil, nil)
	for round := range 20 {
		h.assign(t, 50)
		h.reconcile(t)
		for _, n := range h.be.names() {
			if round%2 == 0 {
				h.jobStarted(t, n)
			} else {
				h.jobCompleted(t, n)
			}
		}
	}
	must.Eq(t, 4, h.be.maxHeld)
}

func TestScaler_merge_acceptedAfterList(t *testing.T) {
	h := newHarness(t, Config{MaxRunners: 2}, nil, nil)
	listedAt := h.clock.Now()
	h.clock.Advance(time.Second)
	// decided before the list, accepted by the backend after it: the list
	// cannot show it, and it must not be taken for vanished
	h.s.runners["linux-0"] = &runner{name: "linux-0", phase: PhasePending, createdAt: listedAt.Add(-time.Second),
		acceptedAt: h.clock.Now(), resourceID: "res-linux-0"}
	h.s.mu.Lock()
	h.s.merge(nil, listedAt)
	h.s.mu.Unlock()
	must.Eq(t, PhasePending, h.s.runners["linux-0"].phase)
	// a later list without it means it is gone
	h.s.mu.Lock()
	h.s.merge(nil, h.clock.Now())
	h.s.mu.Unlock()
	must.Eq(t, PhaseFailed, h.s.runners["linux-0"].phase)
}

func TestScaler_HandleJobStarted_whileStarting(t *testing.T) {
	be := newFakeBackend()
	h := newHarness(t, Config{MaxRunners: 2}, nil, be)
	// the runner takes its job before StartRunner returns
	be.onStart = func(name string) {
		ref, _ := h.gh.GetRunnerByName(t.Context(), name)
		must.NotNil(t, ref)
		must.NoError(t, h.s.HandleJobStarted(t.Context(), &scaleset.JobStarted{RunnerName: name, RunnerID: ref.ID}))
	}
	h.assign(t, 1)
	h.reconcile(t)
	c := h.s.Counts()
	must.Eq(t, 1, c.Busy)
	must.Eq(t, 0, c.Starting)
	// and it is neither taken for vanished nor duplicated later
	h.reconcile(t)
	h.reconcile(t)
	must.Eq(t, 1, be.starts)
	must.Eq(t, []string{"linux-0"}, be.names())
}

func TestScaler_merge_staleStateIgnored(t *testing.T) {
	h := newHarness(t, Config{MaxRunners: 2}, nil, nil)
	listedAt := h.clock.Now()
	h.clock.Advance(time.Second)
	h.s.runners["linux-0"] = &runner{name: "linux-0", phase: PhaseBusy, createdAt: listedAt,
		acceptedAt: h.clock.Now(), resourceID: "res-linux-0"}
	// listed while the container was created but not started yet
	stale := []backend.Runner{{Name: "linux-0", ResourceID: "res-linux-0", State: backend.StateFailed}}
	h.s.mu.Lock()
	h.s.merge(stale, listedAt)
	h.s.mu.Unlock()
	must.Eq(t, PhaseBusy, h.s.runners["linux-0"].phase, must.Sprint("a list older than the start says nothing about it"))
	h.s.mu.Lock()
	h.s.merge(stale, h.clock.Now())
	h.s.mu.Unlock()
	must.Eq(t, PhaseDone, h.s.runners["linux-0"].phase)
}

// Issue 11: after a SIGKILL and restart the backlog replays a JobCompleted
// of an earlier runner. It names that runner's ID, not the adopted runner
// that (under the old naming) had the same name, so it is ignored and
// counted, and the adopted runner keeps its job.
func TestScaler_staleJobCompletedAfterRestart(t *testing.T) {
	gh := newFakeGitHub(7)
	be := newFakeBackend()
	earlier := gh.register("linux-0") // finished before the kill
	gh.mu.Lock()
	delete(gh.byName, "linux-0")
	gh.mu.Unlock()
	now := gh.register("linux-0") // same name, a new runner, now busy
	gh.busy["linux-0"] = true
	be.add("linux-0", now.ID, backend.StateRunning)

	h := newHarness(t, Config{MaxRunners: 5}, gh, be)
	must.NoError(t, h.s.HandleJobStarted(t.Context(), &scaleset.JobStarted{RunnerName: "linux-0", RunnerID: now.ID}))
	h.assign(t, 1)
	h.reconcile(t)
	must.NoError(t, h.s.HandleJobCompleted(t.Context(), &scaleset.JobCompleted{RunnerName: "linux-0", RunnerID: earlier.ID}))
	h.reconcile(t)
	must.Eq(t, []string{"linux-0"}, be.names(), must.Sprint("the busy runner is kept"))
	must.Eq(t, 1, h.s.Counts().Busy)
	must.Eq(t, 1, h.rec.stale["job_completed"])
	must.Eq(t, 0, h.rec.removed["done"])

	// a duplicate of its own JobCompleted ends it once, and counts the second
	must.NoError(t, h.s.HandleJobCompleted(t.Context(), &scaleset.JobCompleted{RunnerName: "linux-0", RunnerID: now.ID}))
	must.NoError(t, h.s.HandleJobCompleted(t.Context(), &scaleset.JobCompleted{RunnerName: "linux-0", RunnerID: now.ID}))
	must.Eq(t, 2, h.rec.stale["job_completed"])
}

// Without the session nothing changes; with it, nothing is started or
// removed as surplus until the statistics say what the demand is.
func TestScaler_ownerAndDemandGateChanges(t *testing.T) {
	gh := newFakeGitHub(7)
	be := newFakeBackend()
	for _, n := range []string{"linux-0", "linux-1"} {
		ref := gh.register(n)
		be.add(n, ref.ID, backend.StatePending) // adopted, waiting for placement
	}
	h := newHarness(t, Config{MinRunners: 1, MaxRunners: 5}, gh, be)
	h.s.SetOwner(false)
	h.reconcile(t)
	must.Eq(t, 0, be.starts)
	must.Eq(t, 0, h.s.Counts().Pending, must.Sprint("not even adopted: another process owns the scale set"))

	h.s.SetOwner(true) // the session, but no statistics yet
	h.reconcile(t)
	must.Eq(t, 2, h.s.Counts().Pending)
	must.SliceLen(t, 2, be.names())
	must.Eq(t, 0, h.rec.removed["surplus"])

	h.assign(t, 0) // demand known: target min_runners = 1
	h.reconcile(t)
	must.SliceLen(t, 1, be.names())
	must.Eq(t, 1, h.rec.removed["surplus"])
	must.Eq(t, 0, be.starts)
}

func TestScaler_healthHook(t *testing.T) {
	be := newFakeBackend()
	var got []bool
	h := newHarness(t, Config{MaxRunners: 2}, nil, be)
	h.s.healthHook = func(ok bool, _ error) { got = append(got, ok) }
	h.reconcile(t)
	be.mu.Lock()
	be.listErr = errors.New("engine unreachable")
	be.mu.Unlock()
	_ = h.s.reconcile(t.Context())
	_ = h.s.reconcile(t.Context())
	ok, err := h.s.health()
	must.False(t, ok)
	must.ErrorContains(t, err, "engine unreachable")
	be.mu.Lock()
	be.listErr = nil
	be.mu.Unlock()
	h.reconcile(t)
	must.Eq(t, []bool{false, true}, got, must.Sprint("told once per change"))
}
