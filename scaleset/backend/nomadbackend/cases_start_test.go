// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadbackend_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/nomadbackend"
)

func caseDispatch(t *testing.T, e *caseEnv) {
	b, _ := e.backend(t, nil)
	r1 := e.runner(1)
	id, err := b.StartRunner(t.Context(), r1, caseJIT)
	must.NoError(t, err)
	must.RegexMatch(t, regexp.MustCompile(`^`+regexp.QuoteMeta(e.jobID+"/dispatch-"+r1+"-")+`\d+-[0-9a-f]{8}$`), id)

	parent, _, err := e.nt.API().Jobs().Info(e.jobID, e.q(t.Context()))
	must.NoError(t, err)
	child, _, err := e.nt.API().Jobs().Info(id, e.q(t.Context()))
	must.NoError(t, err)
	must.Eq(t, caseJIT, string(child.Payload))
	must.Eq(t, map[string]string{nomadbackendRunnerKey: r1, nomadbackendScaleSetKey: caseScaleSet}, child.Meta)
	must.Eq(t, e.jobID, *child.ParentID)
	must.Eq(t, id, *child.Name)
	must.True(t, child.Dispatched)
	must.NotNil(t, child.ParameterizedJob)
	must.Eq(t, "required", child.ParameterizedJob.Payload)
	must.Eq(t, *parent.Version, *child.Version)
	must.Eq(t, "batch", *child.Type)
	must.Eq(t, runnerNS, *child.Namespace)

	// the task got the payload in local/<dispatch_payload.file>
	r := waitRunner(t, b, r1, backend.StateRunning)
	must.Eq(t, id, r.ResourceID)
	must.False(t, r.CreatedAt.IsZero())
	eventually(t, "the task read its payload", func() bool { return taskPayload(e.nt, r1) != "" })
	must.Eq(t, caseJIT, taskPayload(e.nt, r1))
	release(t, e.nt, r1, 0)
	waitRunner(t, b, r1, backend.StateExited)
	must.NoError(t, b.RemoveRunner(t.Context(), id))

	// the raw answer: the child's create index as listed
	resp, wm, err := e.nt.API().Jobs().Dispatch(e.jobID, map[string]string{nomadbackendRunnerKey: e.runner(2), nomadbackendScaleSetKey: caseScaleSet},
		[]byte(caseJIT), e.runner(2), e.w(t.Context()))
	must.NoError(t, err)
	stub := listedStub(t, e, resp.DispatchedJobID)
	must.Eq(t, stub.CreateIndex, resp.JobCreateIndex, must.Sprint("JobCreateIndex is the child's CreateIndex"))
	if e.nt.V16() {
		// version difference F: the evaluation is written after the job
		must.Less(t, wm.LastIndex, resp.JobCreateIndex)
	} else {
		must.Eq(t, wm.LastIndex, resp.JobCreateIndex)
	}
	must.NotEq(t, "", resp.EvalID)
}

func casePayloadLimit(t *testing.T, e *caseEnv) {
	b, _ := e.backend(t, nil)
	big := strings.Repeat("s", nomadbackend.DispatchPayloadLimit+1)
	_, err := b.StartRunner(t.Context(), e.runner(1), big)
	must.ErrorIs(t, err, nomadbackend.ErrPayloadTooLarge)
	must.StrContains(t, err.Error(), "16385 bytes")
	must.StrNotContains(t, err.Error(), "sss")
	must.Zero(t, e.proxy.Requests("PUT /v1/job/:id/dispatch"))

	// exactly 16 KiB is what Nomad still accepts
	exact := strings.Repeat("s", nomadbackend.DispatchPayloadLimit)
	id, err := b.StartRunner(t.Context(), e.runner(2), exact)
	must.NoError(t, err)
	child, _, err := e.nt.API().Jobs().Info(id, e.q(t.Context()))
	must.NoError(t, err)
	must.Eq(t, nomadbackend.DispatchPayloadLimit, len(child.Payload))

	// and one byte more is refused by Nomad itself, with its text
	_, _, err = e.nt.API().Jobs().Dispatch(e.jobID, map[string]string{nomadbackendRunnerKey: "x", nomadbackendScaleSetKey: "y"},
		[]byte(big), "x", e.w(t.Context()))
	var ue api.UnexpectedResponseError
	must.True(t, errors.As(err, &ue), must.Sprint(err))
	must.Eq(t, 500, ue.StatusCode())
	must.StrContains(t, ue.Body(), "Payload exceeds maximum size; 16385 > 16384")
}

func caseListChildren(t *testing.T, e *caseEnv) {
	b, _ := e.backend(t, nil)
	r1, r2 := e.runner(1), e.runner(2)
	id1, err := b.StartRunner(t.Context(), r1, caseJIT)
	must.NoError(t, err)
	id2, err := b.StartRunner(t.Context(), r2, caseJIT)
	must.NoError(t, err)
	other := e.dispatchRaw(t, e.jobID, e.runner(3), "other-scale-set").DispatchedJobID

	waitRunner(t, b, r1, backend.StateRunning)
	waitRunner(t, b, r2, backend.StateRunning)
	list, err := b.ListRunners(t.Context())
	must.NoError(t, err)
	// the other scale set's child is not ours
	must.Eq(t, map[string]backend.State{r1: backend.StateRunning, r2: backend.StateRunning}, runnerNames(list))

	// the raw list: the children as stubs with meta, the parent as parameterized
	stubs, _, err := e.nt.API().Jobs().ListOptions(&api.JobListOptions{Fields: &api.JobListFields{Meta: true}},
		&api.QueryOptions{Namespace: runnerNS, Prefix: e.jobID})
	must.NoError(t, err)
	byID := map[string]*api.JobListStub{}
	for _, s := range stubs {
		byID[s.ID] = s
	}
	must.MapLen(t, 4, byID)
	must.True(t, byID[e.jobID].ParameterizedJob)
	must.Eq(t, "running", byID[e.jobID].Status)
	for _, id := range []string{id1, id2, other} {
		s := byID[id]
		must.NotNil(t, s, must.Sprint(id))
		must.False(t, s.ParameterizedJob, must.Sprintf("a dispatched child (%s) is not listed as parameterized", id))
		must.Eq(t, e.jobID, s.ParentID)
		must.NotNil(t, s.Meta)
		must.NotNil(t, s.JobSummary.Children)
		must.Eq(t, api.JobChildrenSummary{}, *s.JobSummary.Children)
	}
	must.Eq(t, "other-scale-set", byID[other].Meta[nomadbackendScaleSetKey])
	// without ?meta=true no meta
	plain, _, err := e.nt.API().Jobs().List(&api.QueryOptions{Namespace: runnerNS, Prefix: id1})
	must.NoError(t, err)
	must.Len(t, 1, plain)
	must.Nil(t, plain[0].Meta)

	// the parent's summary counts its children
	eventually(t, "3 children running in the parent's summary", func() bool {
		sum, _, err := e.nt.API().Jobs().Summary(e.jobID, e.q(t.Context()))
		return err == nil && sum.Children != nil && *sum.Children == api.JobChildrenSummary{Running: 3}
	})
	// a child's allocation
	allocs, _, err := e.nt.API().Jobs().Allocations(id1, true, e.q(t.Context()))
	must.NoError(t, err)
	must.Len(t, 1, allocs)
	must.Eq(t, id1+".runner[0]", allocs[0].Name)
	must.Eq(t, e.nt.NodeName(), allocs[0].NodeName)
	must.Eq(t, "run", allocs[0].DesiredStatus)
	must.Eq(t, "running", allocs[0].ClientStatus)

	for i := 1; i <= 3; i++ {
		release(t, e.nt, e.runner(i), 0)
	}
	waitRunner(t, b, r1, backend.StateExited)
	waitRunner(t, b, r2, backend.StateExited)
	eventually(t, "3 children dead in the parent's summary", func() bool {
		sum, _, err := e.nt.API().Jobs().Summary(e.jobID, e.q(t.Context()))
		return err == nil && sum.Children != nil && *sum.Children == api.JobChildrenSummary{Dead: 3}
	})
}

func caseBlockingWatch(t *testing.T, e *caseEnv) {
	b, _ := e.backend(t, nil)
	r1 := e.runner(1)
	// a blocking query on the list wakes up on a dispatch
	_, qm, err := e.nt.API().Jobs().List(&api.QueryOptions{Namespace: runnerNS, Prefix: e.jobID + "/dispatch-"})
	must.NoError(t, err)
	type answer struct {
		stubs []*api.JobListStub
		index uint64
		took  time.Duration
		err   error
	}
	woke := make(chan answer, 1)
	go func() {
		began := time.Now()
		stubs, qm2, err := e.nt.API().Jobs().List(&api.QueryOptions{Namespace: runnerNS, Prefix: e.jobID + "/dispatch-",
			WaitIndex: qm.LastIndex, WaitTime: time.Minute})
		a := answer{stubs: stubs, err: err, took: time.Since(began)}
		if qm2 != nil {
			a.index = qm2.LastIndex
		}
		woke <- a
	}()

	id, err := b.StartRunner(t.Context(), r1, caseJIT)
	must.NoError(t, err)
	select {
	case a := <-woke:
		must.NoError(t, a.err)
		must.Greater(t, qm.LastIndex, a.index)
		must.Less(t, time.Minute, a.took)
		// woken by our write or an earlier one of the same dispatch
		if len(a.stubs) == 1 {
			must.Eq(t, id, a.stubs[0].ID)
		}
	case <-time.After(caseWait):
		t.Fatal("the blocking query did not wake up on a dispatch")
	}

	// the backend sees pending → running → exited through its blocking
	// queries: a handful of list calls for the whole lifecycle
	waitRunner(t, b, r1, backend.StateRunning)
	release(t, e.nt, r1, 0)
	waitRunner(t, b, r1, backend.StateExited)
	must.Less(t, 15, e.proxy.Requests("GET /v1/jobs"))
	must.NoError(t, b.RemoveRunner(t.Context(), id))
}
