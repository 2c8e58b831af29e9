// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadsim

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/shoenig/test/must"
)

func startSim(t *testing.T, opts ...Option) (*Server, *api.Client) {
	t.Helper()
	s := New(opts...)
	addr := s.Start()
	t.Cleanup(s.Close)
	c, err := api.NewClient(&api.Config{Address: addr})
	must.NoError(t, err)
	return s, c
}

func parentJob(id string) *api.Job {
	return &api.Job{
		ID: ptr(id), Type: ptr("batch"),
		ParameterizedJob: &api.ParameterizedJobConfig{
			Payload: "required", MetaRequired: []string{"runner_name"}, MetaOptional: []string{"note"},
		},
		TaskGroups: []*api.TaskGroup{{
			Name: ptr("runner"),
			Tasks: []*api.Task{{
				Name: "runner", Driver: "raw_exec",
				DispatchPayload: &api.DispatchPayloadConfig{File: "jitconfig"},
			}},
		}},
	}
}

func statusOf(err error) (int, string) {
	var ue api.UnexpectedResponseError
	if errors.As(err, &ue) {
		return ue.StatusCode(), ue.Body()
	}
	return 0, ""
}

func TestServer_Dispatch_idFormatAndJob(t *testing.T) {
	s, c := startSim(t)
	must.NoError(t, s.RegisterJob(parentJob("runner-linux")))

	resp, wm, err := c.Jobs().Dispatch("runner-linux", map[string]string{"runner_name": "r-1"}, []byte("jit"), "r-1", nil)
	must.NoError(t, err)
	must.RegexMatch(t, regexp.MustCompile(`^runner-linux/dispatch-r-1-\d{10}-[0-9a-f]{8}$`), resp.DispatchedJobID)
	must.Positive(t, wm.LastIndex)
	must.Eq(t, wm.LastIndex, resp.JobCreateIndex)
	must.NotEq(t, "", resp.EvalID)

	plain, _, err := c.Jobs().Dispatch("runner-linux", map[string]string{"runner_name": "r-2"}, []byte("jit"), "", nil)
	must.NoError(t, err)
	must.RegexMatch(t, regexp.MustCompile(`^runner-linux/dispatch-\d{10}-[0-9a-f]{8}$`), plain.DispatchedJobID)

	job, _, err := c.Jobs().Info(resp.DispatchedJobID, nil)
	must.NoError(t, err)
	must.Eq(t, "runner-linux", *job.ParentID)
	must.True(t, job.Dispatched)
	must.Eq(t, []byte("jit"), job.Payload)
	must.Eq(t, "r-1", job.Meta["runner_name"])
	must.Eq(t, *job.ID, *job.Name)

	_, _, err = c.Jobs().Info("nope", nil)
	code, body := statusOf(err)
	must.Eq(t, http.StatusNotFound, code)
	must.Eq(t, "job not found", body)
}

func TestServer_Dispatch_validation(t *testing.T) {
	s, c := startSim(t)
	must.NoError(t, s.RegisterJob(parentJob("p")))
	forbidden := parentJob("forbidden")
	forbidden.ParameterizedJob.Payload = "forbidden"
	must.NoError(t, s.RegisterJob(forbidden))
	must.NoError(t, s.RegisterJob(&api.Job{ID: ptr("plain"), Type: ptr("batch"), TaskGroups: parentJob("x").TaskGroups}))
	stopped := parentJob("stopped")
	stopped.Stop = ptr(true)
	must.NoError(t, s.RegisterJob(stopped))

	ok := map[string]string{"runner_name": "r"}
	cases := []struct {
		name    string
		job     string
		meta    map[string]string
		payload []byte
		code    int
		body    string
	}{
		{"not found", "missing", ok, []byte("x"), 500, "parameterized job not found"},
		{"not parameterized", "plain", ok, []byte("x"), 500, `Specified job "plain" is not a parameterized job`},
		{"stopped", "stopped", ok, []byte("x"), 500, `Specified job "stopped" is stopped`},
		{"payload required", "p", ok, nil, 500, "Payload is not provided but required by parameterized job"},
		{"payload forbidden", "forbidden", ok, []byte("x"), 500, "Payload provided but forbidden by parameterized job"},
		{"payload too big", "p", ok, bytes.Repeat([]byte("a"), DispatchPayloadSizeLimit+1), 500, "Payload exceeds maximum size; 16385 > 16384"},
		{"unpermitted meta", "p", map[string]string{"runner_name": "r", "zz": "1"}, []byte("x"), 500, "Dispatch request included unpermitted metadata keys: [zz]"},
		{"missing meta", "p", map[string]string{"note": "n"}, []byte("x"), 500, "Dispatch did not provide required meta keys: [runner_name]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := c.Jobs().Dispatch(tc.job, tc.meta, tc.payload, "", nil)
			code, body := statusOf(err)
			must.Eq(t, tc.code, code)
			must.Eq(t, tc.body, body)
		})
	}
	// exactly at the limit is accepted
	_, _, err := c.Jobs().Dispatch("p", ok, bytes.Repeat([]byte("a"), DispatchPayloadSizeLimit), "", nil)
	must.NoError(t, err)
}

func TestServer_List_blockingQuery(t *testing.T) {
	s, c := startSim(t)
	must.NoError(t, s.RegisterJob(parentJob("p")))
	q := &api.QueryOptions{Prefix: "p/dispatch-"}
	list, meta, err := c.Jobs().List(q)
	must.NoError(t, err)
	must.SliceEmpty(t, list)
	must.True(t, meta.KnownLeader)
	start := meta.LastIndex

	// a wait that times out answers with the same index
	_, meta2, err := c.Jobs().List(&api.QueryOptions{Prefix: "p/dispatch-", WaitIndex: start, WaitTime: 50 * time.Millisecond})
	must.NoError(t, err)
	must.Eq(t, start, meta2.LastIndex)

	type result struct {
		list []*api.JobListStub
		meta *api.QueryMeta
		err  error
	}
	done := make(chan result, 1)
	go func() {
		l, m, err := c.Jobs().ListOptions(&api.JobListOptions{Fields: &api.JobListFields{Meta: true}},
			&api.QueryOptions{Prefix: "p/dispatch-", WaitIndex: start, WaitTime: time.Minute})
		done <- result{l, m, err}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	must.NoError(t, s.WaitUntil(ctx, func() bool { return s.BlockingQueries() == 1 }))
	_, _, err = c.Jobs().Dispatch("p", map[string]string{"runner_name": "r"}, []byte("x"), "r", nil)
	must.NoError(t, err)
	r := <-done
	must.NoError(t, r.err)
	must.Greater(t, start, r.meta.LastIndex)
	must.Len(t, 1, r.list)
	must.Eq(t, "p", r.list[0].ParentID)
	must.Eq(t, "r", r.list[0].Meta["runner_name"])

	// without ?meta=true the stub has no meta
	plain, _, err := c.Jobs().List(q)
	must.NoError(t, err)
	must.Nil(t, plain[0].Meta)
}

func TestServer_HTTP_headersAndErrors(t *testing.T) {
	s := New()
	addr := s.Start()
	t.Cleanup(s.Close)
	// reply is what the checks read of a response whose body get has
	// already read and closed.
	type reply struct {
		StatusCode   int
		Header       http.Header
		Uncompressed bool
	}
	get := func(path string) (reply, string) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, addr+path, nil)
		must.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		must.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return reply{StatusCode: resp.StatusCode, Header: resp.Header, Uncompressed: resp.Uncompressed}, string(b)
	}
	resp, body := get("/v1/jobs")
	must.Eq(t, 200, resp.StatusCode)
	must.Eq(t, "[]", body)
	must.Eq(t, "true", resp.Header.Get("X-Nomad-KnownLeader"))
	must.Eq(t, "0", resp.Header.Get("X-Nomad-LastContact"))
	must.NotEq(t, "", resp.Header.Get("X-Nomad-Index"))

	resp, body = get("/v1/jobs?index=abc")
	must.Eq(t, 400, resp.StatusCode)
	must.Eq(t, "Invalid index", body)
	resp, body = get("/v1/jobs?wait=forever")
	must.Eq(t, 400, resp.StatusCode)
	must.Eq(t, "Invalid wait time", body)
	resp, body = get("/v1/job/x")
	must.Eq(t, 404, resp.StatusCode)
	must.Eq(t, "job not found", body)
	// Go's client asks for gzip: Nomad's gzip handler answers errors
	// compressed and without a Content-Type
	must.True(t, resp.Uncompressed)
	must.Eq(t, "", resp.Header.Get("Content-Type"))
	must.Eq(t, "Accept-Encoding", resp.Header.Get("Vary"))
	// a client that does not gets plain text
	req, err := http.NewRequest(http.MethodGet, addr+"/v1/job/x", nil)
	must.NoError(t, err)
	req.Header.Set("Accept-Encoding", "identity")
	plain, err := http.DefaultClient.Do(req)
	must.NoError(t, err)
	_ = plain.Body.Close()
	must.Eq(t, 404, plain.StatusCode)
	must.Eq(t, plainContentType, plain.Header.Get("Content-Type"))
	resp, _ = get("/v1/nothing")
	must.Eq(t, 404, resp.StatusCode)
}

func TestServer_Deregister_purgeAndMissing(t *testing.T) {
	s, c := startSim(t)
	must.NoError(t, s.RegisterJob(parentJob("p")))
	evalID, wm, err := c.Jobs().Deregister("p/dispatch-none", true, nil)
	must.NoError(t, err)
	must.Eq(t, "", evalID)
	must.Eq(t, uint64(0), wm.LastIndex)

	resp, _, err := c.Jobs().Dispatch("p", map[string]string{"runner_name": "r"}, []byte("x"), "", nil)
	must.NoError(t, err)
	evalID, _, err = c.Jobs().Deregister(resp.DispatchedJobID, true, nil)
	must.NoError(t, err)
	must.NotEq(t, "", evalID)
	must.Eq(t, []string{"p"}, s.JobIDs("default"))
	// Nomad 2.x deletes a purged job's allocations in the same write
	allocs, _, err := c.Jobs().Allocations(resp.DispatchedJobID, true, nil)
	must.NoError(t, err)
	must.SliceEmpty(t, allocs)

	// stop without purge keeps the job, dead
	resp, _, err = c.Jobs().Dispatch("p", map[string]string{"runner_name": "r"}, []byte("x"), "", nil)
	must.NoError(t, err)
	_, _, err = c.Jobs().Deregister(resp.DispatchedJobID, false, nil)
	must.NoError(t, err)
	job, _, err := c.Jobs().Info(resp.DispatchedJobID, nil)
	must.NoError(t, err)
	must.True(t, *job.Stop)
	must.Eq(t, "dead", *job.Status)
}

func TestServer_ACL_denied(t *testing.T) {
	s, c := startSim(t, WithACL(map[string]ACLToken{
		"reader": {Namespaces: map[string][]string{"default": {"list-jobs", "read-job"}}},
		"runner": {Namespaces: map[string][]string{"default": {"list-jobs", "read-job", "dispatch-job", "purge-job"}}},
	}))
	must.NoError(t, s.RegisterJob(parentJob("p")))
	meta := map[string]string{"runner_name": "r"}

	_, _, err := c.Jobs().List(nil)
	code, body := statusOf(err)
	must.Eq(t, 403, code)
	must.Eq(t, "Permission denied", body)

	c.SetSecretID("reader")
	_, _, err = c.Jobs().List(nil)
	must.NoError(t, err)
	_, _, err = c.Jobs().Dispatch("p", meta, []byte("x"), "", nil)
	code, _ = statusOf(err)
	must.Eq(t, 403, code)

	c.SetSecretID("runner")
	resp, _, err := c.Jobs().Dispatch("p", meta, []byte("x"), "", nil)
	must.NoError(t, err)
	c.SetSecretID("reader")
	_, _, err = c.Jobs().Deregister(resp.DispatchedJobID, true, nil)
	code, _ = statusOf(err)
	must.Eq(t, 403, code)
	c.SetSecretID("runner")
	_, _, err = c.Jobs().Deregister(resp.DispatchedJobID, true, nil)
	must.NoError(t, err)
	must.Eq(t, []string{"p"}, s.JobIDs("default"))
}

func TestServer_Placement_blockedThenPlaced(t *testing.T) {
	s, c := startSim(t, WithPlacement(NoNodeWithDriver()))
	must.NoError(t, s.RegisterJob(parentJob("p")))
	resp, _, err := c.Jobs().Dispatch("p", map[string]string{"runner_name": "r"}, []byte("x"), "", nil)
	must.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var evals []*api.Evaluation
	must.NoError(t, s.WaitUntil(ctx, func() bool {
		evals, _, err = c.Jobs().Evaluations(resp.DispatchedJobID, nil)
		return err == nil && len(evals) == 2
	}))
	byStatus := map[string]*api.Evaluation{}
	for _, ev := range evals {
		byStatus[ev.Status] = ev
	}
	must.MapContainsKeys(t, byStatus, []string{"complete", "blocked"})
	must.Eq(t, 1, byStatus["complete"].FailedTGAllocs["runner"].ConstraintFiltered["missing drivers"])
	must.Eq(t, byStatus["blocked"].ID, byStatus["complete"].BlockedEval)
	job, _, err := c.Jobs().Info(resp.DispatchedJobID, nil)
	must.NoError(t, err)
	must.Eq(t, "pending", *job.Status)
	sum, _, err := c.Jobs().Summary(resp.DispatchedJobID, nil)
	must.NoError(t, err)
	must.Eq(t, 1, sum.Summary["runner"].Queued)

	s.SetPlacement(nil)
	must.NoError(t, s.WaitUntil(ctx, func() bool { return len(s.Allocations("default", resp.DispatchedJobID)) == 1 }))
	sum, _, err = c.Jobs().Summary(resp.DispatchedJobID, nil)
	must.NoError(t, err)
	must.Eq(t, 0, sum.Summary["runner"].Queued)
	must.Eq(t, 1, sum.Summary["runner"].Starting)
}

func TestServer_TaskRunner_lifecycle(t *testing.T) {
	release := make(chan int)
	runner := TaskRunnerFunc(func(ctx context.Context, task Task, started func()) (int, error) {
		if task.Meta["runner_name"] == "broken" {
			return 0, errors.New("no such image")
		}
		started()
		select {
		case code := <-release:
			return code, nil
		case <-ctx.Done():
			return 137, nil
		}
	})
	s, c := startSim(t, WithTaskRunner(runner))
	must.NoError(t, s.RegisterJob(parentJob("p")))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	dispatch := func(name string) string {
		resp, _, err := c.Jobs().Dispatch("p", map[string]string{"runner_name": name}, []byte("x"), name, nil)
		must.NoError(t, err)
		return resp.DispatchedJobID
	}
	status := func(id string) string {
		j := s.Job("default", id)
		if j == nil {
			return ""
		}
		return *j.Status
	}

	ok := dispatch("ok")
	must.NoError(t, s.WaitUntil(ctx, func() bool { return status(ok) == "running" && s.RunningTasks() == 1 }))
	release <- 0
	must.NoError(t, s.WaitUntil(ctx, func() bool { return status(ok) == "dead" }))
	a := s.Allocations("default", ok)[0]
	must.Eq(t, "complete", a.ClientStatus)
	must.Eq(t, "All tasks have completed", a.ClientDescription)

	bad := dispatch("bad")
	must.NoError(t, s.WaitUntil(ctx, func() bool { return s.RunningTasks() == 1 }))
	release <- 3
	must.NoError(t, s.WaitUntil(ctx, func() bool { return status(bad) == "dead" }))
	a = s.Allocations("default", bad)[0]
	must.Eq(t, "failed", a.ClientStatus)
	must.True(t, a.TaskStates["runner"].Failed)

	broken := dispatch("broken")
	must.NoError(t, s.WaitUntil(ctx, func() bool { return status(broken) == "dead" }))
	a = s.Allocations("default", broken)[0]
	must.Eq(t, "failed", a.ClientStatus)
	var msgs []string
	for _, e := range a.TaskStates["runner"].Events {
		msgs = append(msgs, e.Type+": "+e.DisplayMessage)
	}
	must.SliceContains(t, msgs, "Driver Failure: no such image")

	stopped := dispatch("stopped")
	must.NoError(t, s.WaitUntil(ctx, func() bool { return status(stopped) == "running" && s.RunningTasks() == 1 }))
	_, _, err := c.Jobs().Deregister(stopped, false, nil)
	must.NoError(t, err)
	must.NoError(t, s.WaitUntil(ctx, func() bool { return s.RunningTasks() == 0 }))
	a = s.Allocations("default", stopped)[0]
	must.Eq(t, "complete", a.ClientStatus)
	must.Eq(t, "stop", a.DesiredStatus)
	must.Eq(t, "alloc not needed due to job update", a.DesiredDescription)

	purged := dispatch("purged")
	must.NoError(t, s.WaitUntil(ctx, func() bool { return status(purged) == "running" && s.RunningTasks() == 1 }))
	_, _, err = c.Jobs().Deregister(purged, true, nil)
	must.NoError(t, err)
	must.NoError(t, s.WaitUntil(ctx, func() bool { return s.RunningTasks() == 0 }))
	must.SliceEmpty(t, s.Allocations("default", purged))

	parent, _, err := c.Jobs().Summary("p", nil)
	must.NoError(t, err)
	// DeleteJobTxn moves a purged running child to Dead
	must.Eq(t, api.JobChildrenSummary{Dead: 5}, *parent.Children)
}

func TestProcessRunner_RunTask_payloadFile(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	pr := &ProcessRunner{Dir: dir, Command: "/bin/sh", Args: []string{"-c", `cat "$NOMAD_TASK_DIR/jitconfig"; echo " $NOMAD_META_runner_name"`}, Stdout: &out}
	task := Task{AllocID: "a1", JobID: "p/dispatch-1", Meta: map[string]string{"runner_name": "r1"}, Payload: []byte("secret"),
		Task: &api.Task{Name: "runner", DispatchPayload: &api.DispatchPayloadConfig{File: "jitconfig"}}}
	startedCalled := false
	code, err := pr.RunTask(t.Context(), task, func() { startedCalled = true })
	must.NoError(t, err)
	must.Zero(t, code)
	must.True(t, startedCalled)
	must.Eq(t, "secret r1", strings.TrimSpace(out.String()))
	b, err := os.ReadFile(filepath.Join(dir, "a1", "runner", "local", "jitconfig"))
	must.NoError(t, err)
	must.Eq(t, "secret", string(b))

	task.Task.DispatchPayload.File = "../../escape"
	task.AllocID = "a2"
	_, err = pr.RunTask(t.Context(), task, func() {})
	must.ErrorContains(t, err, "escapes")
}

func TestServer_Index_semantics(t *testing.T) {
	release := make(chan struct{})
	s, c := startSim(t, WithTaskRunner(TaskRunnerFunc(func(ctx context.Context, _ Task, started func()) (int, error) {
		started()
		select {
		case <-release:
		case <-ctx.Done():
		}
		return 0, nil
	})))
	must.NoError(t, s.RegisterJob(parentJob("p")))
	resp, wm, err := c.Jobs().Dispatch("p", map[string]string{"runner_name": "r"}, []byte("x"), "", nil)
	must.NoError(t, err)
	job, qm, err := c.Jobs().Info(resp.DispatchedJobID, nil)
	must.NoError(t, err)
	must.Eq(t, *job.ModifyIndex, qm.LastIndex, must.Sprint("job read index is the job's ModifyIndex"))
	must.GreaterEq(t, wm.LastIndex, qm.LastIndex)

	// a blocking allocations query wakes when the task starts
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	must.NoError(t, s.WaitUntil(ctx, func() bool { return s.RunningTasks() == 1 }))
	allocs, aqm, err := c.Jobs().Allocations(resp.DispatchedJobID, false, nil)
	must.NoError(t, err)
	must.Len(t, 1, allocs)
	done := make(chan uint64, 1)
	go func() {
		_, m, err := c.Jobs().Allocations(resp.DispatchedJobID, false, &api.QueryOptions{WaitIndex: aqm.LastIndex, WaitTime: time.Minute})
		if err != nil {
			done <- 0
			return
		}
		done <- m.LastIndex
	}()
	must.NoError(t, s.WaitUntil(ctx, func() bool { return s.BlockingQueries() == 1 }))
	close(release)
	must.Greater(t, aqm.LastIndex, <-done)

	// the list index moves with the summary, so one list query sees the
	// allocation finish
	must.NoError(t, s.WaitUntil(ctx, func() bool { return *s.Job("default", resp.DispatchedJobID).Status == "dead" }))
	list, lqm, err := c.Jobs().List(&api.QueryOptions{Prefix: "p/dispatch-"})
	must.NoError(t, err)
	must.Eq(t, 1, list[0].JobSummary.Summary["runner"].Complete)
	must.Eq(t, lqm.LastIndex, max(list[0].ModifyIndex, list[0].JobSummary.ModifyIndex))
}
