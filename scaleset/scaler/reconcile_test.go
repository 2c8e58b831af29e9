// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package scaler

import (
	"errors"
	"testing"
	"time"

	"github.com/actions/scaleset"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
)

func TestScaler_Reconcile_scaleUp(t *testing.T) {
	cases := []struct {
		name           string
		minR, maxR     int
		assigned       int
		preexisting    int // runners on the backend before the pass (a restart)
		wantHeld       int
		wantNewStarts  int
		wantJITPerPass int
	}{
		{name: "assigned jobs", minR: 0, maxR: 10, assigned: 3, wantHeld: 3, wantNewStarts: 3},
		{name: "min runners idle pool", minR: 2, maxR: 10, assigned: 0, wantHeld: 2, wantNewStarts: 2},
		{name: "burst capped at max", minR: 0, maxR: 10, assigned: 50, wantHeld: 10, wantNewStarts: 10},
		{name: "restart adopts and tops up", minR: 0, maxR: 10, assigned: 4, preexisting: 3, wantHeld: 4, wantNewStarts: 1},
		{name: "restart adopts without duplicates", minR: 0, maxR: 10, assigned: 3, preexisting: 3, wantHeld: 3, wantNewStarts: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gh := newFakeGitHub(7)
			be := newFakeBackend()
			for i := range tc.preexisting {
				name := "linux-" + string(rune('0'+i))
				ref := gh.register(name)
				be.add(name, ref.ID, backend.StateRunning)
			}
			h := newHarness(t, Config{MinRunners: tc.minR, MaxRunners: tc.maxR, MaxParallelOps: 20}, gh, be)
			h.assign(t, tc.assigned)
			h.reconcile(t)
			must.Eq(t, tc.wantNewStarts, be.starts)
			must.SliceLen(t, tc.wantHeld, be.names())
			// idempotent: a second pass with nothing changed does nothing
			h.reconcile(t)
			must.Eq(t, tc.wantNewStarts, be.starts)
			must.SliceLen(t, tc.wantHeld, be.names())
			must.Eq(t, tc.wantHeld, h.s.Counts().Active())
			// every backend runner has exactly one GitHub registration
			must.Eq(t, be.names(), gh.names())
		})
	}
}

func TestScaler_Reconcile_scaleDownKeepsBusy(t *testing.T) {
	h := newHarness(t, Config{MaxRunners: 10}, nil, nil)
	h.assign(t, 4)
	h.reconcile(t)
	must.SliceLen(t, 4, h.be.names())
	h.jobStarted(t, "linux-0")
	h.jobStarted(t, "linux-1")

	// demand drops (jobs cancelled): target 0, busy runners must stay
	h.assign(t, 0)
	h.reconcile(t)
	must.Eq(t, []string{"linux-0", "linux-1"}, h.be.names())
	must.Eq(t, []string{"linux-0", "linux-1"}, h.gh.names())
	c := h.s.Counts()
	must.Eq(t, 2, c.Busy)
	must.Eq(t, 0, c.Idle)
	must.Eq(t, 2, h.rec.removed["surplus"])
}

func TestScaler_Reconcile_jobCompletedRemovesResource(t *testing.T) {
	h := newHarness(t, Config{MaxRunners: 5}, nil, nil)
	h.assign(t, 2)
	h.reconcile(t)
	h.jobStarted(t, "linux-0")
	h.jobStarted(t, "linux-1")
	h.jobCompleted(t, "linux-0")
	h.assign(t, 1)
	h.reconcile(t)
	must.Eq(t, []string{"linux-1"}, h.be.names())
	must.Eq(t, 2, h.be.starts, must.Sprint("no replacement for a finished job"))
	must.Eq(t, 1, h.rec.removed["done"])
}

// The listener delivers a message's JobCompleted before its statistics: a
// pass in between must not replace the finished runner.
func TestScaler_Reconcile_jobCompletedBeforeNewCount(t *testing.T) {
	h := newHarness(t, Config{MaxRunners: 5, FinishGrace: 10 * time.Second}, nil, nil)
	h.assign(t, 2)
	h.reconcile(t)
	h.jobStarted(t, "linux-0")
	h.jobStarted(t, "linux-1")
	h.jobCompleted(t, "linux-0")
	h.reconcile(t) // the count still says 2
	must.Eq(t, 2, h.be.starts, must.Sprint("no start for a job that just completed"))
	h.assign(t, 1)
	h.reconcile(t)
	must.Eq(t, 2, h.be.starts)
	must.Eq(t, []string{"linux-1"}, h.be.names())

	// a count that never follows stops holding the slot after FinishGrace
	h.jobCompleted(t, "linux-1")
	h.clock.Advance(11 * time.Second)
	h.reconcile(t) // the stale count (1) asks for a runner again
	must.Eq(t, 3, h.be.starts)
}

// A runner that exited before its JobCompleted keeps its name until the
// event arrives, and a late event never ends a new runner of that name.
func TestScaler_Reconcile_lateJobCompletedSparesNewRunner(t *testing.T) {
	h := newHarness(t, Config{MaxRunners: 5, FinishGrace: 10 * time.Second}, nil, nil)
	h.assign(t, 2)
	h.reconcile(t)
	h.jobStarted(t, "linux-0")
	oldID := h.s.runners["linux-0"].runnerID
	h.runnerExited("linux-0")
	h.reconcile(t) // linux-0 is removed from the backend
	must.Eq(t, []string{"linux-1"}, h.be.names())
	h.assign(t, 3) // more work arrives before linux-0's JobCompleted
	h.reconcile(t)
	must.Eq(t, 3, h.be.starts)
	must.Eq(t, []string{"linux-1", "linux-2"}, h.be.names(), must.Sprint("linux-0 is not reused while its JobCompleted may still come"))

	// the late event of the first runner names a runner that is gone
	must.NoError(t, h.s.HandleJobCompleted(t.Context(), &scaleset.JobCompleted{RunnerName: "linux-0", RunnerID: oldID}))
	h.assign(t, 2)
	h.reconcile(t)
	must.Eq(t, []string{"linux-1", "linux-2"}, h.be.names(), must.Sprint("the new runners are kept"))

	// a starting runner that took no job ignores a JobCompleted
	r := &runner{name: "linux-0", phase: PhaseStarting}
	h.s.mu.Lock()
	h.s.runners["linux-0"] = r
	h.s.mu.Unlock()
	must.NoError(t, h.s.HandleJobCompleted(t.Context(), &scaleset.JobCompleted{RunnerName: "linux-0", RunnerID: oldID}))
	h.s.mu.Lock()
	must.False(t, r.jobCompleted)
	delete(h.s.runners, "linux-0")
	h.s.mu.Unlock()
}

func TestScaler_Reconcile_unknownRunnerEvents(t *testing.T) {
	h := newHarness(t, Config{MaxRunners: 5}, nil, nil)
	must.NoError(t, h.s.HandleJobStarted(t.Context(), &scaleset.JobStarted{RunnerName: "someone-else"}))
	must.NoError(t, h.s.HandleJobCompleted(t.Context(), &scaleset.JobCompleted{RunnerName: "", Result: "canceled"}))
	h.reconcile(t)
	must.Eq(t, 0, h.be.starts)
}

func TestScaler_Reconcile_startFailureBacksOff(t *testing.T) {
	be := newFakeBackend()
	be.startErr = errors.New("engine unavailable")
	h := newHarness(t, Config{MaxRunners: 5, StartBackoffMin: time.Second, StartBackoffMax: 8 * time.Second}, nil, be)
	h.assign(t, 2)
	h.reconcile(t)
	must.Eq(t, 2, be.starts)
	must.Eq(t, 2, h.rec.errors["start"])
	must.SliceEmpty(t, h.gh.names(), must.Sprint("registrations of failed starts are removed"))

	// within the backoff nothing is retried, however often we reconcile
	for range 5 {
		h.reconcile(t)
	}
	must.Eq(t, 2, be.starts)

	// after the backoff it retries, and a success resets the failure count
	h.clock.Advance(9 * time.Second)
	be.mu.Lock()
	be.startErr = nil
	be.mu.Unlock()
	h.reconcile(t)
	must.SliceLen(t, 2, be.names())
	h.reconcile(t)
	must.Eq(t, 0, h.s.Counts().ConsecutiveFailures)
}

func TestScaler_Reconcile_backoffGrows(t *testing.T) {
	be := newFakeBackend()
	be.startErr = errors.New("boom")
	h := newHarness(t, Config{MaxRunners: 1, StartBackoffMin: time.Second, StartBackoffMax: 4 * time.Second}, nil, be)
	h.assign(t, 1)
	h.reconcile(t) // first failure
	var gaps []int
	for len(gaps) < 4 {
		before := be.starts
		n := 0
		for be.starts == before {
			h.clock.Advance(time.Second)
			n++
			h.reconcile(t)
			must.Less(t, 10, n)
		}
		gaps = append(gaps, n)
	}
	must.Eq(t, []int{1, 2, 4, 4}, gaps)
}

func TestScaler_Reconcile_failedRunnerReplaced(t *testing.T) {
	h := newHarness(t, Config{MaxRunners: 3, StartBackoffMin: time.Second}, nil, nil)
	h.assign(t, 1)
	h.reconcile(t)
	h.be.setState("linux-0", backend.StateFailed)
	h.reconcile(t)
	must.SliceEmpty(t, h.be.names())
	must.SliceEmpty(t, h.gh.names())
	must.Eq(t, 1, h.rec.removed["failed"])
	h.clock.Advance(2 * time.Second)
	h.reconcile(t)
	must.SliceLen(t, 1, h.be.names())
}

func TestScaler_Reconcile_neverOnline(t *testing.T) {
	cases := []struct {
		name  string
		state backend.State
		setup func(h *harness)
	}{
		{name: "stuck pending on the backend", state: backend.StatePending},
		{name: "running but idle while jobs wait", state: backend.StateRunning, setup: func(h *harness) {
			h.s.ObserveStatistics(&scaleset.RunnerScaleSetStatistic{TotalAssignedJobs: 1})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			be := newFakeBackend()
			be.startState = tc.state
			h := newHarness(t, Config{MaxRunners: 3, OnlineTimeout: time.Minute}, nil, be)
			if tc.setup != nil {
				tc.setup(h)
			}
			h.assign(t, 1)
			h.reconcile(t)
			h.reconcile(t) // sees it running (or not)
			must.Eq(t, []string{"linux-0"}, be.names())
			h.clock.Advance(30 * time.Second)
			h.reconcile(t)
			must.Eq(t, []string{"linux-0"}, be.names(), must.Sprint("not yet timed out"))
			h.clock.Advance(45 * time.Second)
			h.reconcile(t)
			must.Eq(t, 1, h.rec.removed["never_online"])
			must.SliceEmpty(t, h.gh.names(), must.Sprint("registration removed on GitHub"))
			// removed on the backend, and a replacement waits for the backoff
			must.SliceEmpty(t, be.names())
			h.clock.Advance(5 * time.Second)
			h.reconcile(t)
			must.Eq(t, []string{"linux-1"}, be.names(), must.Sprint("a replacement under a fresh name"))
		})
	}
}

// A runner the backend reports queued for capacity is not removed as never
// online within queue_timeout; once it leaves the queue, the online timeout
// counts from then; a runner queued longer than queue_timeout is removed.
func TestScaler_Reconcile_waitingForCapacity(t *testing.T) {
	be := newFakeBackend()
	be.startState = backend.StatePending
	h := newHarness(t, Config{MaxRunners: 3, OnlineTimeout: time.Minute, QueueTimeout: 10 * time.Minute}, nil, be)
	h.assign(t, 2)
	h.reconcile(t)
	be.setQueued("linux-0", true, "queued for capacity: devices exhausted")
	be.setQueued("linux-1", true, "queued for capacity: devices exhausted")
	h.reconcile(t)
	must.Eq(t, 2, h.s.Counts().WaitingForCapacity)

	h.clock.Advance(5 * time.Minute) // far past online_timeout
	h.reconcile(t)
	must.Eq(t, []string{"linux-0", "linux-1"}, be.names())
	must.Zero(t, h.rec.removed["never_online"])

	// linux-0 is placed (booting): one online timeout from now.
	be.setQueued("linux-0", false, "")
	h.reconcile(t)
	must.Eq(t, 1, h.s.Counts().WaitingForCapacity)
	h.clock.Advance(30 * time.Second)
	h.reconcile(t)
	must.Eq(t, []string{"linux-0", "linux-1"}, be.names())

	// linux-1 waits past queue_timeout; linux-0 past its online timeout.
	h.clock.Advance(5 * time.Minute)
	h.reconcile(t)
	must.Eq(t, 2, h.rec.removed["never_online"])
	must.SliceEmpty(t, be.names())
	must.Zero(t, h.s.Counts().WaitingForCapacity)
}

func TestScaler_Reconcile_idleWithoutDemandIsKept(t *testing.T) {
	h := newHarness(t, Config{MinRunners: 1, MaxRunners: 3, OnlineTimeout: time.Minute}, nil, nil)
	h.s.ObserveStatistics(&scaleset.RunnerScaleSetStatistic{})
	h.assign(t, 0)
	h.reconcile(t)
	h.clock.Advance(time.Hour)
	h.reconcile(t)
	must.Eq(t, []string{"linux-0"}, h.be.names())
	must.Eq(t, 1, h.be.starts)
}

func TestScaler_Reconcile_restartKeepsBusyAdopted(t *testing.T) {
	gh := newFakeGitHub(7)
	be := newFakeBackend()
	for _, n := range []string{"linux-0", "linux-1", "linux-2"} {
		ref := gh.register(n)
		be.add(n, ref.ID, backend.StateRunning)
	}
	gh.busy["linux-0"] = true
	gh.busy["linux-1"] = true
	// a new process: it saw no JobStarted, and demand is 2 (the two busy ones)
	h := newHarness(t, Config{MaxRunners: 5}, gh, be)
	h.assign(t, 2)
	// each pass may pick a busy runner first (it cannot know); GitHub
	// refuses to remove those, so within three passes only the idle one goes
	for range 3 {
		h.reconcile(t)
	}
	must.Eq(t, []string{"linux-0", "linux-1"}, be.names(), must.Sprint("busy runners survive, idle surplus goes"))
	must.Eq(t, 0, be.starts)
	must.Eq(t, 2, h.s.Counts().Active())
}

func TestScaler_Reconcile_busyHintAfterRestart(t *testing.T) {
	gh := newFakeGitHub(7)
	be := newFakeBackend()
	ref := gh.register("linux-4")
	be.add("linux-4", ref.ID, backend.StateRunning)
	h := newHarness(t, Config{MaxRunners: 5}, gh, be)
	// JobStarted arrives before the first pass adopted the runner
	must.NoError(t, h.s.HandleJobStarted(t.Context(), &scaleset.JobStarted{RunnerName: "linux-4", RunnerID: 101}))
	h.assign(t, 1)
	h.reconcile(t)
	must.Eq(t, 1, h.s.Counts().Busy)
	must.Eq(t, 0, be.starts)
}

// A name clash with a registration the scaler does not know (another
// process's, an earlier version's) is not taken for its runner: the
// registration is left alone and the runner gets a fresh name.
func TestScaler_Reconcile_nameClashTakesFreshName(t *testing.T) {
	gh := newFakeGitHub(7)
	h := newHarness(t, Config{MaxRunners: 2}, gh, nil)
	gh.register("linux-0") // someone else's registration
	h.assign(t, 1)
	h.reconcile(t)
	must.Eq(t, []string{"linux-1"}, h.be.names())
	must.Eq(t, []string{"linux-0", "linux-1"}, gh.names())
	must.SliceEmpty(t, gh.removed)
}

// Starting looks nothing up on GitHub: no probe of 2×max_runners names.
func TestScaler_Reconcile_noNameProbeAtStart(t *testing.T) {
	h := newHarness(t, Config{MaxRunners: 1000}, nil, nil)
	h.assign(t, 0)
	h.reconcile(t)
	must.Eq(t, 0, h.gh.lookups)
}

func TestScaler_Reconcile_vanishedRunnerDeregistered(t *testing.T) {
	h := newHarness(t, Config{MaxRunners: 2}, nil, nil)
	h.assign(t, 1)
	h.reconcile(t)
	// someone removed the container behind our back
	must.NoError(t, h.be.RemoveRunner(t.Context(), "res-linux-0"))
	h.reconcile(t)
	h.clock.Advance(2 * time.Second)
	h.reconcile(t)
	must.SliceLen(t, 1, h.be.names(), must.Sprint("replaced"))
	must.Eq(t, h.be.names(), h.gh.names())
	must.Eq(t, 1, h.rec.removed["vanished"])
}

func TestScaler_Reconcile_listErrorDoesNothing(t *testing.T) {
	be := newFakeBackend()
	be.listErr = errors.New("engine down")
	h := newHarness(t, Config{MaxRunners: 2}, nil, be)
	h.assign(t, 2)
	must.ErrorContains(t, h.s.reconcile(t.Context()), "engine down")
	must.Eq(t, 0, be.starts)
	must.Eq(t, 1, h.rec.errors["list"])
}

func TestScaler_Reconcile_githubRemoveErrorRetried(t *testing.T) {
	h := newHarness(t, Config{MaxRunners: 2}, nil, nil)
	h.assign(t, 1)
	h.reconcile(t)
	h.gh.removeErr = errors.New("502 bad gateway")
	h.assign(t, 0)
	h.reconcile(t)
	must.Eq(t, []string{"linux-0"}, h.be.names(), must.Sprint("backend resource kept until GitHub removal succeeds"))
	h.gh.removeErr = nil
	h.reconcile(t)
	must.SliceEmpty(t, h.be.names())
	must.SliceEmpty(t, h.gh.names())
}

func TestScaler_Reconcile_exitBeforeJobCompleted(t *testing.T) {
	h := newHarness(t, Config{MaxRunners: 5, FinishGrace: 10 * time.Second}, nil, nil)
	h.assign(t, 2)
	h.reconcile(t)
	h.jobStarted(t, "linux-0")
	id0 := h.s.runners["linux-0"].runnerID
	// the runner finished and exited; the statistics still count its job
	h.runnerExited("linux-0")
	h.reconcile(t)
	must.Eq(t, 2, h.be.starts, must.Sprint("no surplus start for a job that is finishing"))
	must.Eq(t, []string{"linux-1"}, h.be.names(), must.Sprint("the exited runner is cleaned up"))
	// JobCompleted arrives with the new statistics
	must.NoError(t, h.s.HandleJobCompleted(t.Context(), &scaleset.JobCompleted{RunnerName: "linux-0", RunnerID: id0}))
	h.assign(t, 1)
	h.reconcile(t)
	must.Eq(t, 2, h.be.starts)

	// without JobCompleted, the grace ends and the target is honoured again
	h.jobStarted(t, "linux-1")
	h.runnerExited("linux-1")
	h.reconcile(t)
	must.Eq(t, 2, h.be.starts)
	h.clock.Advance(11 * time.Second)
	h.reconcile(t)
	must.Eq(t, 3, h.be.starts)
}
