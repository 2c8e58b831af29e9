// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadbackend_test

// One table of the nomad backend's behaviours, run against the API double
// (TestNomadBackend_cases/double, in every `go test`) and a real Nomad
// agent (TestNomadBackend_cases/agent). A case asserts the same on both;
// where Nomad 1.6 (the agent) must answer differently from the 2.0.x the
// double models, the case's v16 field says what differs and the case
// branches on nomadTarget.V16 there. Any other difference is a bug in the
// double.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/nomadbackend"
)

const (
	caseScaleSet = "macos-arm64"
	// caseJIT looks like a real JIT config (base64 JSON).
	caseJIT = "eyJydW5uZXIiOiJjYXNlLXRhYmxlLXNlY3JldC1qaXQtY29uZmlnIn0="
	// caseWait bounds every wait of a case; it only limits a failure.
	caseWait = 90 * time.Second
)

// backendCase is one behaviour of the backend, asserted on every target.
type backendCase struct {
	name string
	// v16 says how Nomad 1.6 answers differently in this case (empty:
	// identical on both).
	v16 string
	run func(t *testing.T, e *caseEnv)
}

var backendCases = []backendCase{
	{name: "dispatch payload and meta", v16: "the dispatch response's JobCreateIndex is less than its Index on 1.6 (equal on 2.0)", run: caseDispatch},
	{name: "payload limit 16 KiB", run: casePayloadLimit},
	{name: "list and read dispatched children", run: caseListChildren},
	{name: "blocking query watch", run: caseBlockingWatch},
	{name: "stop and purge", v16: "1.6 still lists a purged job's allocations (stopped) until garbage collection; 2.0 answers [] at once", run: caseStopPurge},
	{name: "adoption after restart", run: caseAdoption},
	{name: "newest dispatch per runner name", run: caseNewestPerName},
	{name: "failure reasons", run: caseFailureReasons},
	{name: "placement failure reason", run: casePlacementFailure},
	{name: "dispatch to a stopped parent", run: caseStoppedParent},
	{name: "ACL denials with the example policy", v16: "1.6 rejects the example policy as written (no purge-job capability): the agent gets it with submit-job instead", run: caseACL},
}

// runBackendCases runs the table on nt, each case with its own parent job.
func runBackendCases(t *testing.T, nt nomadTarget) {
	policyToken := nt.Token(t, examplePolicy(t, nt.V16()))
	for i, tc := range backendCases {
		t.Run(tc.name, func(t *testing.T) {
			e := &caseEnv{nt: nt, jobID: fmt.Sprintf("runner-case%02d", i), slug: fmt.Sprintf("c%02d", i), token: policyToken}
			e.proxy = newCountingProxy(t, nt.Addr())
			register(t, nt, ctlJob(e.jobID, nt.CtlDir()))
			t.Cleanup(func() { e.cleanup(t) })
			tc.run(t, e)
		})
	}
}

// TestNomadBackend_casesDouble runs the table on the API double (in every
// go test); TestNomadBackend_cases (realtarget_test.go) runs it on a real
// agent.
func TestNomadBackend_casesDouble(t *testing.T) {
	runBackendCases(t, newDoubleTarget(t))
}

// caseEnv is what one case works with.
type caseEnv struct {
	nt    nomadTarget
	proxy *countingProxy
	jobID string
	slug  string
	// token holds the example policy's rights; the backend uses it
	// unless a case says otherwise.
	token string
	logs  []*testutil.SyncBuffer
}

// runner is a runner name unique to the case (the control files are
// shared by the target's cases).
func (e *caseEnv) runner(n int) string { return fmt.Sprintf("%s-r-%d", e.slug, n) }

func (e *caseEnv) q(ctx context.Context) *api.QueryOptions {
	return (&api.QueryOptions{Namespace: runnerNS}).WithContext(ctx)
}

func (e *caseEnv) w(ctx context.Context) *api.WriteOptions {
	return (&api.WriteOptions{Namespace: runnerNS}).WithContext(ctx)
}

func (e *caseEnv) config() nomadbackend.Config {
	return nomadbackend.Config{Address: e.proxy.url, Namespace: runnerNS, JobID: e.jobID,
		PurgeGracePeriod: "1h", StartupTimeout: "5s"}
}

// newBackend starts a backend with token (the example policy's when
// empty) and mutate applied to the config.
func (e *caseEnv) newBackend(t *testing.T, token string, mutate func(*nomadbackend.Config)) (*nomadbackend.Backend, *testutil.SyncBuffer, error) {
	t.Helper()
	if token == "" {
		token = e.token
	}
	cfg := e.config()
	if mutate != nil {
		mutate(&cfg)
	}
	logs := &testutil.SyncBuffer{}
	e.logs = append(e.logs, logs)
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	env := func(k string) string {
		if k == "NOMAD_TOKEN" {
			return token
		}
		return ""
	}
	b, err := nomadbackend.New(t.Context(), cfg, caseScaleSet, logger, nomadbackend.WithGetenv(env),
		nomadbackend.WithBackoff(func(int) time.Duration { return 50 * time.Millisecond }))
	if err == nil {
		t.Cleanup(func() { b.Shutdown(context.Background()) })
	}
	return b, logs, err
}

func (e *caseEnv) backend(t *testing.T, mutate func(*nomadbackend.Config)) (*nomadbackend.Backend, *testutil.SyncBuffer) {
	t.Helper()
	b, logs, err := e.newBackend(t, "", mutate)
	must.NoError(t, err)
	return b, logs
}

// dispatchRaw dispatches the case's job as an earlier run of the service
// (or another tool) would.
func (e *caseEnv) dispatchRaw(t *testing.T, jobID, runner, scaleSet string) *api.JobDispatchResponse {
	t.Helper()
	resp, _, err := e.nt.API().Jobs().Dispatch(jobID, map[string]string{nomadbackendRunnerKey: runner, nomadbackendScaleSetKey: scaleSet},
		[]byte(caseJIT), runner, e.w(t.Context()))
	must.NoError(t, err)
	return resp
}

// cleanup purges every job the case left (children first) and checks that
// no JIT config reached a backend log.
func (e *caseEnv) cleanup(t *testing.T) {
	for _, l := range e.logs {
		if strings.Contains(l.String(), caseJIT) {
			t.Errorf("the JIT config is in a backend log")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stubs, _, err := e.nt.API().Jobs().List(e.q(ctx).WithContext(ctx))
	if err != nil {
		t.Errorf("cleanup: list jobs: %v", err)
		return
	}
	for _, s := range stubs {
		if s.ParentID == e.jobID || strings.HasPrefix(s.ID, e.jobID) {
			_, _, _ = e.nt.API().Jobs().Deregister(s.ID, true, e.w(ctx))
		}
	}
}

// waitRunner polls ListRunners until runner is in state.
func waitRunner(t *testing.T, b *nomadbackend.Backend, runner string, state backend.State) backend.Runner {
	t.Helper()
	var last []backend.Runner
	var lastErr error
	deadline := time.Now().Add(caseWait)
	for time.Now().Before(deadline) {
		list, err := b.ListRunners(t.Context())
		last, lastErr = list, err
		for _, r := range list {
			if r.Name == runner && r.State == state {
				return r
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("runner %s never reached %s; last list %+v (error %v)", runner, state, last, lastErr)
	return backend.Runner{}
}

// eventually polls cond until it holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(caseWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func runnerNames(list []backend.Runner) map[string]backend.State {
	out := map[string]backend.State{}
	for _, r := range list {
		out[r.Name] = r.State
	}
	return out
}

// jobGone reports whether id no longer exists (404 job not found).
func (e *caseEnv) jobGone(t *testing.T, id string) bool {
	t.Helper()
	_, _, err := e.nt.API().Jobs().Info(id, e.q(t.Context()))
	if err == nil {
		return false
	}
	var ue api.UnexpectedResponseError
	must.True(t, errors.As(err, &ue), must.Sprintf("read %s: %v", id, err))
	must.Eq(t, 404, ue.StatusCode())
	must.StrContains(t, ue.Body(), "job not found")
	return true
}

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

// listedStub finds id in the job list of the case's namespace.
func listedStub(t *testing.T, e *caseEnv, id string) *api.JobListStub {
	t.Helper()
	stubs, _, err := e.nt.API().Jobs().ListOptions(&api.JobListOptions{Fields: &api.JobListFields{Meta: true}},
		&api.QueryOptions{Namespace: runnerNS, Prefix: id})
	must.NoError(t, err)
	for _, s := range stubs {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("%s not listed", id)
	return nil
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

// mustRemove deletes runner's control files, so the runner name can be
// dispatched again.
func mustRemove(t *testing.T, e *caseEnv, runner string) {
	t.Helper()
	for _, suffix := range []string{".exit", ".payload", ".started"} {
		_ = os.Remove(filepath.Join(e.nt.CtlDir(), runner+suffix))
	}
}
