// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadsim

// Tests for the differences found by checking the double against real
// Nomad agents (v1.6.1 and v2.0.5); see README "Checked against a real
// agent".

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/shoenig/test/must"
)

// rawGet returns the body of a GET as generic JSON.
func rawGet(t *testing.T, c *api.Client, path string, out any) {
	t.Helper()
	resp, err := http.Get(c.Address() + path)
	must.NoError(t, err)
	t.Cleanup(func() { _ = resp.Body.Close() })
	body, err := io.ReadAll(resp.Body)
	must.NoError(t, err)
	must.Eq(t, http.StatusOK, resp.StatusCode, must.Sprint(string(body)))
	must.NoError(t, json.Unmarshal(body, out))
}

func jobPath(id string) string { return "/v1/job/" + url.PathEscape(id) }

// Finding A: Job.Stub uses IsParameterized (ParameterizedJob != nil &&
// !Dispatched); the child itself keeps the parent's parameterized block.
// Finding B: every summary has Children, zeros included.
func TestServer_List_dispatchedChildStub(t *testing.T) {
	s, c := startSim(t)
	must.NoError(t, s.RegisterJob(parentJob("p")))
	resp, _, err := c.Jobs().Dispatch("p", map[string]string{"runner_name": "r"}, []byte("x"), "", nil)
	must.NoError(t, err)

	list, _, err := c.Jobs().List(nil)
	must.NoError(t, err)
	must.Len(t, 2, list)
	byID := map[string]*api.JobListStub{}
	for _, st := range list {
		byID[st.ID] = st
		must.NotNil(t, st.JobSummary.Children, must.Sprintf("Children of %s", st.ID))
	}
	must.True(t, byID["p"].ParameterizedJob)
	must.False(t, byID[resp.DispatchedJobID].ParameterizedJob)

	child, _, err := c.Jobs().Info(resp.DispatchedJobID, nil)
	must.NoError(t, err)
	must.True(t, child.Dispatched)
	must.NotNil(t, child.ParameterizedJob)
	must.Eq(t, "required", child.ParameterizedJob.Payload)

	var raw map[string]any
	rawGet(t, c, jobPath(resp.DispatchedJobID)+"/summary", &raw)
	must.Eq(t, map[string]any{"Pending": 0.0, "Running": 0.0, "Dead": 0.0}, raw["Children"].(map[string]any))
}

// Finding C: the job read back is canonicalized with Nomad's defaults, and
// the version moves on a stop and on a changed re-registration only.
func TestServer_JobRead_canonicalDefaults(t *testing.T) {
	s, c := startSim(t)
	must.NoError(t, s.RegisterJob(parentJob("p")))
	var raw map[string]any
	rawGet(t, c, jobPath("p"), &raw)
	for key, want := range map[string]any{
		"Region": "global", "Namespace": "default", "NodePool": "default", "AllAtOnce": false, "Stable": false,
		"Stop": false, "Version": 0.0, "ParentID": "", "Status": "running", "StatusDescription": "",
		"Dispatched": false, "DispatchIdempotencyToken": "", "Priority": 50.0, "Name": "p",
	} {
		must.Eq(t, want, raw[key], must.Sprintf("job field %s", key))
	}
	must.Eq(t, []any{"*"}, raw["Datacenters"].([]any))

	job, _, err := c.Jobs().Info("p", nil)
	must.NoError(t, err)
	tg := job.TaskGroups[0]
	// batch defaults of api.TaskGroup.Canonicalize
	must.Eq(t, 3, *tg.RestartPolicy.Attempts)
	must.Eq(t, "fail", *tg.RestartPolicy.Mode)
	must.Eq(t, 1, *tg.ReschedulePolicy.Attempts)
	must.Eq(t, 300, *tg.EphemeralDisk.SizeMB)
	must.Eq(t, 5*time.Second, *tg.Tasks[0].KillTimeout)

	// unchanged re-registration: no new version, no job write
	must.NoError(t, s.RegisterJob(parentJob("p")))
	job2, _, err := c.Jobs().Info("p", nil)
	must.NoError(t, err)
	must.Eq(t, uint64(0), *job2.Version)
	must.Eq(t, *job.ModifyIndex, *job2.ModifyIndex)

	changed := parentJob("p")
	changed.Meta = map[string]string{"team": "ci"}
	must.NoError(t, s.RegisterJob(changed))
	job3, _, err := c.Jobs().Info("p", nil)
	must.NoError(t, err)
	must.Eq(t, uint64(1), *job3.Version)

	// a dispatched child keeps the parent's version
	resp, _, err := c.Jobs().Dispatch("p", map[string]string{"runner_name": "r"}, []byte("x"), "", nil)
	must.NoError(t, err)
	child, _, err := c.Jobs().Info(resp.DispatchedJobID, nil)
	must.NoError(t, err)
	must.Eq(t, uint64(1), *child.Version)

	// a stop is a new version
	_, _, err = c.Jobs().Deregister(resp.DispatchedJobID, false, nil)
	must.NoError(t, err)
	child, _, err = c.Jobs().Info(resp.DispatchedJobID, nil)
	must.NoError(t, err)
	must.Eq(t, uint64(2), *child.Version)
	must.True(t, *child.Stop)
}

// Finding D: deregistering stops only non-terminal allocations; finished
// ones keep DesiredStatus "run".
func TestServer_Deregister_finishedAllocationsKeepRun(t *testing.T) {
	release := make(chan struct{})
	runner := TaskRunnerFunc(func(ctx context.Context, task Task, started func()) (int, error) {
		started()
		if task.Meta["runner_name"] == "done" {
			return 0, nil
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return 0, nil
	})
	s, c := startSim(t, WithTaskRunner(runner))
	t.Cleanup(func() { close(release) })
	must.NoError(t, s.RegisterJob(parentJob("p")))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	dispatch := func(name string) string {
		resp, _, err := c.Jobs().Dispatch("p", map[string]string{"runner_name": name}, []byte("x"), name, nil)
		must.NoError(t, err)
		return resp.DispatchedJobID
	}
	clientStatus := func(id string) string {
		if a := s.Allocations("default", id); len(a) == 1 {
			return a[0].ClientStatus
		}
		return ""
	}

	done := dispatch("done")
	must.NoError(t, s.WaitUntil(ctx, func() bool { return clientStatus(done) == "complete" }))
	_, _, err := c.Jobs().Deregister(done, false, nil)
	must.NoError(t, err)
	allocs, _, err := c.Jobs().Allocations(done, true, nil)
	must.NoError(t, err)
	must.Len(t, 1, allocs)
	must.Eq(t, "run", allocs[0].DesiredStatus)
	must.Eq(t, "", allocs[0].DesiredDescription)
	must.Eq(t, "complete", allocs[0].ClientStatus)

	live := dispatch("live")
	must.NoError(t, s.WaitUntil(ctx, func() bool { return clientStatus(live) == "running" }))
	_, _, err = c.Jobs().Deregister(live, false, nil)
	must.NoError(t, err)
	must.NoError(t, s.WaitUntil(ctx, func() bool { return clientStatus(live) == "complete" }))
	allocs, _, err = c.Jobs().Allocations(live, true, nil)
	must.NoError(t, err)
	must.Eq(t, "stop", allocs[0].DesiredStatus)
}

// Finding E: after a purge the allocations are gone at once (2.0.x).
func TestServer_Deregister_purgeDeletesAllocations(t *testing.T) {
	s, c := startSim(t)
	must.NoError(t, s.RegisterJob(parentJob("p")))
	resp, _, err := c.Jobs().Dispatch("p", map[string]string{"runner_name": "r"}, []byte("x"), "", nil)
	must.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	must.NoError(t, s.WaitUntil(ctx, func() bool { return len(s.Allocations("default", resp.DispatchedJobID)) == 1 }))
	before, _, err := c.Jobs().Summary("p", nil)
	must.NoError(t, err)
	must.Eq(t, api.JobChildrenSummary{Running: 1}, *before.Children) // a pending allocation is non-terminal

	_, wm, err := c.Jobs().Deregister(resp.DispatchedJobID, true, nil)
	must.NoError(t, err)
	allocs, qm, err := c.Jobs().Allocations(resp.DispatchedJobID, true, nil)
	must.NoError(t, err)
	must.SliceEmpty(t, allocs)
	must.GreaterEq(t, wm.LastIndex, qm.LastIndex)
	after, _, err := c.Jobs().Summary("p", nil)
	must.NoError(t, err)
	must.Eq(t, api.JobChildrenSummary{Dead: 1}, *after.Children)
}

// Harmless difference fixed: evaluations leave out empty fields.
func TestServer_Evaluations_omitEmptyFields(t *testing.T) {
	s, c := startSim(t, WithPlacement(NoNodeWithDriver()))
	must.NoError(t, s.RegisterJob(parentJob("p")))
	resp, _, err := c.Jobs().Dispatch("p", map[string]string{"runner_name": "r"}, []byte("x"), "", nil)
	must.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	must.NoError(t, s.WaitUntil(ctx, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.evalsOf("default", resp.DispatchedJobID)) == 2
	}))
	var raw []map[string]any
	rawGet(t, c, jobPath(resp.DispatchedJobID)+"/evaluations", &raw)
	must.Len(t, 2, raw)
	for _, ev := range raw {
		for _, key := range []string{"WaitUntil", "Wait", "NodeID", "DeploymentID", "NextEval", "RelatedEvals"} {
			_, has := ev[key]
			must.False(t, has, must.Sprintf("evaluation has empty %s", key))
		}
		must.NotEq(t, "", ev["ID"])
	}
	// the api package still decodes it
	evals, _, err := c.Jobs().Evaluations(resp.DispatchedJobID, nil)
	must.NoError(t, err)
	var blocked int
	for _, ev := range evals {
		if ev.Status == "blocked" {
			blocked++
			must.Eq(t, "created to place remaining allocations", ev.StatusDescription)
			must.MapContainsKey(t, ev.FailedTGAllocs, "runner")
		}
	}
	must.Eq(t, 1, blocked)
}
