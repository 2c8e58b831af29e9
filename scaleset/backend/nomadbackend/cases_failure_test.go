// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadbackend_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/nomad/api"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/nomadbackend"
)

func caseFailureReasons(t *testing.T, e *caseEnv) {
	b, _ := e.backend(t, nil)
	r1 := e.runner(1)
	_, err := b.StartRunner(t.Context(), r1, caseJIT)
	must.NoError(t, err)
	waitRunner(t, b, r1, backend.StateRunning)
	release(t, e.nt, r1, 2)
	r := waitRunner(t, b, r1, backend.StateFailed)
	must.StrContains(t, r.Reason, `task "runner": Terminated: Exit Code: 2`)
	must.StrContains(t, r.Reason, fmt.Sprintf("on node %q failed", e.nt.NodeName()))

	// a driver that cannot start the task: a job whose command is missing
	broken := ctlJob(e.jobID+"-broken", e.nt.CtlDir())
	broken.TaskGroups[0].Tasks[0].Config["command"] = "/nonexistent/runner"
	register(t, e.nt, broken)
	bb, _, err := e.newBackend(t, "", func(c *nomadbackend.Config) { c.JobID = *broken.ID })
	must.NoError(t, err)
	r2 := e.runner(2)
	_, err = bb.StartRunner(t.Context(), r2, caseJIT)
	must.NoError(t, err)
	r = waitRunner(t, bb, r2, backend.StateFailed)
	must.StrContains(t, r.Reason, `task "runner": Driver Failure: `)
	must.StrContains(t, r.Reason, "/nonexistent/runner")
	must.StrNotContains(t, r.Reason, caseJIT)
}

func casePlacementFailure(t *testing.T, e *caseEnv) {
	job := ctlJob(e.jobID+"-podman", e.nt.CtlDir())
	job.TaskGroups[0].Tasks[0].Driver = "podman" // no node has it
	register(t, e.nt, job)
	b, logs, err := e.newBackend(t, "", func(c *nomadbackend.Config) { c.JobID = *job.ID })
	must.NoError(t, err)
	r1 := e.runner(1)
	id, err := b.StartRunner(t.Context(), r1, caseJIT)
	must.NoError(t, err)
	var r backend.Runner
	eventually(t, "placement failure reason", func() bool {
		list, err := b.ListRunners(t.Context())
		if err != nil || len(list) != 1 {
			return false
		}
		r = list[0]
		return r.Reason != ""
	})
	must.Eq(t, backend.StatePending, r.State)
	must.Eq(t, `Nomad cannot place the runner: task group "runner": constraint "missing drivers" filtered 1 nodes (no eligible node with driver podman)`, r.Reason)
	eventually(t, "the warning logged", func() bool { return strings.Contains(logs.String(), "nomad cannot place runner") })
	must.Eq(t, 1, strings.Count(logs.String(), "nomad cannot place runner"))

	// Nomad's evaluations: the first completes with the failure and a
	// blocked one waits for capacity
	evals, _, err := e.nt.API().Jobs().Evaluations(id, e.q(t.Context()))
	must.NoError(t, err)
	must.Len(t, 2, evals)
	var blocked, first *api.Evaluation
	for _, ev := range evals {
		switch ev.Status {
		case "blocked":
			blocked = ev
		case "complete":
			first = ev
		}
	}
	must.NotNil(t, blocked)
	must.NotNil(t, first)
	must.Eq(t, blocked.ID, first.BlockedEval)
	must.Eq(t, first.ID, blocked.PreviousEval)
	must.Eq(t, "queued-allocs", blocked.TriggeredBy)
	must.Eq(t, "created to place remaining allocations", blocked.StatusDescription)
	for _, ev := range []*api.Evaluation{first, blocked} {
		m := ev.FailedTGAllocs["runner"]
		must.NotNil(t, m, must.Sprintf("FailedTGAllocs of the %s evaluation", ev.Status))
		must.Eq(t, map[string]int{"missing drivers": 1}, m.ConstraintFiltered)
		must.Eq(t, 1, m.NodesEvaluated)
		must.Eq(t, 1, m.NodesFiltered)
	}
	sum, _, err := e.nt.API().Jobs().Summary(id, e.q(t.Context()))
	must.NoError(t, err)
	must.Eq(t, 1, sum.Summary["runner"].Queued)
	child, _, err := e.nt.API().Jobs().Info(id, e.q(t.Context()))
	must.NoError(t, err)
	must.Eq(t, "pending", *child.Status)

	// purging it cancels the blocked evaluation
	must.NoError(t, b.RemoveRunner(t.Context(), id))
	must.True(t, e.jobGone(t, id))
}

func caseStoppedParent(t *testing.T, e *caseEnv) {
	b, logs := e.backend(t, nil)
	_, _, err := e.nt.API().Jobs().Deregister(e.jobID, false, e.w(t.Context()))
	must.NoError(t, err)
	_, err = b.StartRunner(t.Context(), e.runner(1), caseJIT)
	must.ErrorContains(t, err, fmt.Sprintf(`Specified job %q is stopped`, e.jobID))
	must.StrNotContains(t, err.Error(), caseJIT)
	must.StrNotContains(t, logs.String(), caseJIT)

	// and a new backend refuses the stopped job at startup
	_, _, err = e.newBackend(t, "", nil)
	must.ErrorIs(t, err, nomadbackend.ErrJobInvalid)
	must.StrContains(t, err.Error(), "is stopped")
}

func caseACL(t *testing.T, e *caseEnv) {
	// the example policy as written: 2.0 accepts it (the double takes its
	// capabilities); 1.6 rejects purge-job
	if e.nt.V16() {
		_, err := e.nt.API().ACLPolicies().Upsert(&api.ACLPolicy{Name: "example-as-written", Rules: examplePolicy(t, false)}, nil)
		must.ErrorContains(t, err, "Invalid namespace capability 'purge-job'")
	}

	// no token: denied at startup, with a hint to the policy
	_, _, err := e.newBackend(t, "no-such-token-00000000-0000-0000-0000-000000000000", nil)
	must.ErrorIs(t, err, nomadbackend.ErrPermissionDenied)
	must.StrContains(t, err.Error(), "Permission denied")
	must.StrContains(t, err.Error(), "scaleset-acl-policy.hcl")

	// read only: starts (it can list and read), cannot dispatch
	reader := e.nt.Token(t, `namespace "github-runners" { capabilities = ["list-jobs", "read-job"] }`)
	b, logs, err := e.newBackend(t, reader, nil)
	must.NoError(t, err)
	_, err = b.StartRunner(t.Context(), e.runner(1), caseJIT)
	must.ErrorIs(t, err, nomadbackend.ErrPermissionDenied)
	must.StrContains(t, err.Error(), "dispatch-job")
	must.StrNotContains(t, err.Error(), caseJIT)
	must.StrNotContains(t, logs.String(), caseJIT)

	// the example policy without its purge capability: dispatches, cannot purge
	noPurge := e.nt.Token(t, `namespace "github-runners" { capabilities = ["list-jobs", "read-job", "dispatch-job"] }`)
	b, _, err = e.newBackend(t, noPurge, nil)
	must.NoError(t, err)
	id, err := b.StartRunner(t.Context(), e.runner(2), caseJIT)
	must.NoError(t, err)
	err = b.RemoveRunner(t.Context(), id)
	must.ErrorIs(t, err, nomadbackend.ErrPermissionDenied)
	must.False(t, e.jobGone(t, id))

	// a token for another namespace only: denied here
	elsewhere := e.nt.Token(t, `namespace "default" { capabilities = ["list-jobs", "read-job", "dispatch-job", "submit-job"] }`)
	_, _, err = e.newBackend(t, elsewhere, nil)
	must.ErrorIs(t, err, nomadbackend.ErrPermissionDenied)

	// the example policy's rights: the whole lifecycle
	b, _, err = e.newBackend(t, "", nil)
	must.NoError(t, err)
	must.NoError(t, b.RemoveRunner(t.Context(), id))
	must.True(t, e.jobGone(t, id))
	id3, err := b.StartRunner(t.Context(), e.runner(3), caseJIT)
	must.NoError(t, err)
	waitRunner(t, b, e.runner(3), backend.StateRunning)
	must.NoError(t, b.RemoveRunner(t.Context(), id3))
	must.True(t, e.jobGone(t, id3))
}
