// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadbackend_test

import (
	"testing"

	"github.com/hashicorp/nomad/api"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/nomadbackend"
)

func caseStopPurge(t *testing.T, e *caseEnv) {
	b, _ := e.backend(t, nil)
	r1, r2 := e.runner(1), e.runner(2)
	id, err := b.StartRunner(t.Context(), r1, caseJIT)
	must.NoError(t, err)
	waitRunner(t, b, r1, backend.StateRunning)

	// RemoveRunner purges a running child: gone from the job table
	must.NoError(t, b.RemoveRunner(t.Context(), id))
	must.True(t, e.jobGone(t, id))
	list, err := b.ListRunners(t.Context())
	must.NoError(t, err)
	must.MapNotContainsKey(t, runnerNames(list), r1)
	must.NoError(t, b.RemoveRunner(t.Context(), id)) // gone is not an error
	must.ErrorIs(t, b.RemoveRunner(t.Context(), "some-other-job"), nomadbackend.ErrNotOurs)
	allocs, _, err := e.nt.API().Jobs().Allocations(id, true, e.q(t.Context()))
	must.NoError(t, err)
	if e.nt.V16() {
		// version difference E: listed until GC, stopped by the purge
		// (the scheduler's stop lands after the purge's write)
		must.Len(t, 1, allocs)
		eventually(t, "the purged child's task stopped", func() bool {
			a, _, err := e.nt.API().Jobs().Allocations(id, true, e.q(t.Context()))
			return err == nil && len(a) == 1 && a[0].DesiredStatus == "stop" && a[0].ClientStatus == "complete"
		})
	} else {
		must.SliceEmpty(t, allocs)
	}
	eventually(t, "the purged child dead in the parent's summary", func() bool {
		sum, _, err := e.nt.API().Jobs().Summary(e.jobID, e.q(t.Context()))
		return err == nil && sum.Children != nil && *sum.Children == api.JobChildrenSummary{Dead: 1}
	})

	// a stop without purge keeps a stopped, dead copy, one version on
	id2, err := b.StartRunner(t.Context(), r2, caseJIT)
	must.NoError(t, err)
	waitRunner(t, b, r2, backend.StateRunning)
	before, _, err := e.nt.API().Jobs().Info(id2, e.q(t.Context()))
	must.NoError(t, err)
	_, _, err = e.nt.API().Jobs().Deregister(id2, false, e.w(t.Context()))
	must.NoError(t, err)
	eventually(t, "the stopped child dead", func() bool {
		j, _, err := e.nt.API().Jobs().Info(id2, e.q(t.Context()))
		return err == nil && *j.Status == "dead"
	})
	after, _, err := e.nt.API().Jobs().Info(id2, e.q(t.Context()))
	must.NoError(t, err)
	must.True(t, *after.Stop)
	must.Eq(t, *before.Version+1, *after.Version)
	// dead as soon as the allocation is to stop (TerminalStatus), while
	// the client may still be stopping the task
	allocs, _, err = e.nt.API().Jobs().Allocations(id2, true, e.q(t.Context()))
	must.NoError(t, err)
	must.Len(t, 1, allocs)
	must.Eq(t, "stop", allocs[0].DesiredStatus)
	eventually(t, "the stopped child's task killed", func() bool {
		a, _, err := e.nt.API().Jobs().Allocations(id2, true, e.q(t.Context()))
		return err == nil && len(a) == 1 && a[0].ClientStatus == "complete"
	})
	// a runner stopped while running counts as exited (its allocation
	// completed), and the backend purges it when asked
	r := waitRunner(t, b, r2, backend.StateExited)
	must.NoError(t, b.RemoveRunner(t.Context(), r.ResourceID))
	must.True(t, e.jobGone(t, id2))
}

func caseAdoption(t *testing.T, e *caseEnv) {
	r1, r2, r3 := e.runner(1), e.runner(2), e.runner(3)
	first, _ := e.backend(t, nil)
	alive, err := first.StartRunner(t.Context(), r1, caseJIT)
	must.NoError(t, err)
	dead, err := first.StartRunner(t.Context(), r2, caseJIT)
	must.NoError(t, err)
	other := e.dispatchRaw(t, e.jobID, r3, "other-scale-set").DispatchedJobID
	waitRunner(t, first, r1, backend.StateRunning)
	waitRunner(t, first, r2, backend.StateRunning)
	release(t, e.nt, r2, 0)
	waitRunner(t, first, r2, backend.StateExited)
	first.Shutdown(t.Context()) // the service stops; the jobs stay

	second, logs := e.backend(t, func(c *nomadbackend.Config) { c.PurgeGracePeriod = "500ms" })
	list, err := second.ListRunners(t.Context())
	must.NoError(t, err)
	states := map[string]backend.State{}
	for _, r := range list {
		states[r.ResourceID] = r.State
	}
	// adopted at startup, before New returns
	if len(states) == 2 {
		must.Eq(t, map[string]backend.State{alive: backend.StateRunning, dead: backend.StateExited}, states)
	} else {
		// the dead one may be purged already (grace 500ms)
		must.Eq(t, map[string]backend.State{alive: backend.StateRunning}, states)
	}
	must.StrContains(t, logs.String(), "adopted dispatched runner job")

	// the dead child is purged after the grace period; the live one and
	// the other scale set's stay
	eventually(t, "dead child purged", func() bool { return e.jobGone(t, dead) })
	must.False(t, e.jobGone(t, alive))
	must.False(t, e.jobGone(t, other))
	eventually(t, "only the live runner listed", func() bool {
		list, err := second.ListRunners(t.Context())
		return err == nil && len(list) == 1 && list[0].ResourceID == alive
	})
	release(t, e.nt, r1, 0)
	release(t, e.nt, r3, 0)
	waitRunner(t, second, r1, backend.StateExited)
	eventually(t, "the adopted child purged after it finished", func() bool { return e.jobGone(t, alive) })
	must.False(t, e.jobGone(t, other))
}

func caseNewestPerName(t *testing.T, e *caseEnv) {
	r1 := e.runner(1)
	old := e.dispatchRaw(t, e.jobID, r1, caseScaleSet).DispatchedJobID
	eventually(t, "the old task started", func() bool { return taskPayload(e.nt, r1) != "" })
	release(t, e.nt, r1, 1) // the old one failed
	eventually(t, "the old child dead", func() bool {
		j, _, err := e.nt.API().Jobs().Info(old, e.q(t.Context()))
		return err == nil && *j.Status == "dead"
	})
	// a new task for the same name must not see the old exit file
	mustRemove(t, e, r1)

	b, _ := e.backend(t, nil) // grace 1h: only supersession purges
	id, err := b.StartRunner(t.Context(), r1, caseJIT)
	must.NoError(t, err)
	r := waitRunner(t, b, r1, backend.StateRunning)
	must.Eq(t, id, r.ResourceID)
	list, err := b.ListRunners(t.Context())
	must.NoError(t, err)
	must.Len(t, 1, list)
	// the superseded dead child is purged at once
	eventually(t, "superseded child purged", func() bool { return e.jobGone(t, old) })
	must.False(t, e.jobGone(t, id))
	release(t, e.nt, r1, 0)
	waitRunner(t, b, r1, backend.StateExited)
}
