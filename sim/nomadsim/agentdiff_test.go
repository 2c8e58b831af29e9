// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadsim

// TestNomadDouble_matchesAgent sends the same requests to the double and to
// a real Nomad agent and compares what a client sees: status, content
// type, query/write headers, error texts, and every response decoded into
// the api package's type it belongs to and encoded again (so JSON key
// order and keys the api package does not know do not count), with
// identifiers, indexes and times normalised. A difference is a bug in the
// double unless agentDifferences lists it with the reason.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil/nomadagent"
)

// agentDifference is an expected difference: steps matching step, at
// paths matching path, for reason.
type agentDifference struct {
	step, path *regexp.Regexp
	reason     string
}

// agentDifferences are the expected differences. Nomad 1.6 is the agent;
// the double follows 2.0.x. Everything else is a bug in the double.
var agentDifferences = []agentDifference{
	{regexp.MustCompile(`(^read |child$)`), regexp.MustCompile(`\.RestartPolicy\.RenderTemplates$`),
		"version: restart.render_templates came with Nomad 1.7; 1.6 has no such field (null), 2.0 canonicalizes it to false"},
	{regexp.MustCompile(`^stopped child allocations$`), regexp.MustCompile(`Events\[4\]\.(Details\.signal|DisplayMessage|Signal)$`),
		"double: a TaskRunner reports an exit code only (128+signal), so the Terminated event of a killed task has signal 0"},
	{regexp.MustCompile(`^no-command child allocations$`), regexp.MustCompile(`Events\[2\]\.(Details\.driver_error|DisplayMessage|DriverError)$`),
		"driver: the error text is the driver's own (raw_exec's executor vs the double's ProcessRunner)"},
}

// diffTarget is one side of the comparison.
type diffTarget struct {
	name  string
	addr  string
	token string
}

// response is what a client sees of one answer.
type response struct {
	status  int
	ctype   string
	headers []string // X-Nomad-* header names present
	body    []byte
}

func (d diffTarget) do(t *testing.T, method, path string, body any, token bool) response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		switch b := body.(type) {
		case string:
			rd = strings.NewReader(b)
		default:
			raw, err := json.Marshal(b)
			must.NoError(t, err)
			rd = bytes.NewReader(raw)
		}
	}
	req, err := http.NewRequestWithContext(t.Context(), method, d.addr+path, rd)
	must.NoError(t, err)
	if token {
		req.Header.Set("X-Nomad-Token", d.token)
	}
	resp, err := http.DefaultClient.Do(req)
	must.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	must.NoError(t, err)
	r := response{status: resp.StatusCode, ctype: resp.Header.Get("Content-Type"), body: raw}
	for k := range resp.Header {
		if strings.HasPrefix(k, "X-Nomad-") {
			r.headers = append(r.headers, k)
		}
	}
	sort.Strings(r.headers)
	return r
}

// step is one request of the script and the api type its answer decodes
// into (nil: compare the body as text, for errors).
type step struct {
	name   string
	method string
	path   func(s *scriptState) string
	body   func(s *scriptState) any
	noAuth bool
	// token, when set, is sent instead of the target's management token
	token string
	into  func() any
	// key names the child a dispatch step creates (default "main");
	// wait is the client status its allocation must reach before the
	// next step.
	key, wait string
}

// scriptState carries IDs learnt along the script, per target.
type scriptState struct {
	child    string // the "main" child
	children map[string]string
}

func diffParent() *api.Job {
	j := parentJob("diff-parent")
	j.Namespace = ptr("github-runners")
	j.TaskGroups[0].RestartPolicy = &api.RestartPolicy{Attempts: ptr(0), Mode: ptr("fail")}
	j.TaskGroups[0].ReschedulePolicy = &api.ReschedulePolicy{Attempts: ptr(0), Unlimited: ptr(false)}
	j.TaskGroups[0].Tasks[0].Config = map[string]any{"command": "/bin/sleep", "args": []any{"300"}}
	j.TaskGroups[0].Tasks[0].KillTimeout = ptr(time.Second)
	j.TaskGroups[0].Tasks[0].Resources = &api.Resources{CPU: ptr(20), MemoryMB: ptr(32)}
	return j
}

func esc(id string) string { return url.PathEscape(id) }

const diffNS = "?namespace=github-runners"

func diffScript() []step {
	job := func() any { return &api.Job{} }
	stubs := func() any { return &[]*api.JobListStub{} }
	summary := func() any { return &api.JobSummary{} }
	fixed := func(p string) func(*scriptState) string { return func(*scriptState) string { return p } }
	child := func(suffix string) func(*scriptState) string {
		return func(s *scriptState) string { return "/v1/job/" + esc(s.child) + suffix }
	}
	dispatch := func(meta map[string]string, payload []byte) func(*scriptState) any {
		return func(*scriptState) any {
			return &api.JobDispatchRequest{JobID: "diff-parent", Meta: meta, Payload: payload}
		}
	}
	okMeta := map[string]string{"runner_name": "r-1"}
	steps := []step{
		{name: "register", method: "PUT", path: fixed("/v1/jobs" + diffNS),
			body: func(*scriptState) any { return &api.JobRegisterRequest{Job: diffParent()} },
			into: func() any { return &api.JobRegisterResponse{} }},
		{name: "list parent", method: "GET", path: fixed("/v1/jobs" + diffNS + "&prefix=diff-parent"), into: stubs},
		{name: "read parent", method: "GET", path: fixed("/v1/job/diff-parent" + diffNS), into: job},
		{name: "parent summary", method: "GET", path: fixed("/v1/job/diff-parent/summary" + diffNS), into: summary},
		{name: "dispatch", method: "PUT", path: fixed("/v1/job/diff-parent/dispatch" + diffNS),
			body: dispatch(okMeta, []byte("payload")), into: func() any { return &api.JobDispatchResponse{} }, wait: "running"},
		// (the script waits here until the child's allocation runs)
		{name: "list child with meta", method: "GET", path: func(s *scriptState) string {
			return "/v1/jobs" + diffNS + "&meta=true&prefix=" + url.QueryEscape(s.child)
		}, into: stubs},
		{name: "read child", method: "GET", path: child(diffNS), into: job},
		{name: "child summary", method: "GET", path: child("/summary" + diffNS), into: summary},
		{name: "child allocations", method: "GET", path: child("/allocations" + diffNS + "&all=true"),
			into: func() any { return &[]*api.AllocationListStub{} }},
		{name: "child evaluations", method: "GET", path: child("/evaluations" + diffNS),
			into: func() any { return &[]*api.Evaluation{} }},
		{name: "dispatch without meta", method: "PUT", path: fixed("/v1/job/diff-parent/dispatch" + diffNS),
			body: dispatch(nil, []byte("payload"))},
		{name: "dispatch without payload", method: "PUT", path: fixed("/v1/job/diff-parent/dispatch" + diffNS),
			body: dispatch(okMeta, nil)},
		{name: "dispatch unpermitted meta", method: "PUT", path: fixed("/v1/job/diff-parent/dispatch" + diffNS),
			body: dispatch(map[string]string{"runner_name": "r", "bogus": "x"}, []byte("p"))},
		{name: "dispatch too large", method: "PUT", path: fixed("/v1/job/diff-parent/dispatch" + diffNS),
			body: dispatch(okMeta, bytes.Repeat([]byte("x"), 16385))},
		{name: "dispatch exactly 16 KiB", method: "PUT", path: fixed("/v1/job/diff-parent/dispatch" + diffNS),
			body: dispatch(map[string]string{"runner_name": "r-2"}, bytes.Repeat([]byte("x"), 16384)),
			into: func() any { return &api.JobDispatchResponse{} }},
		{name: "dispatch a dispatched child", method: "PUT", path: child("/dispatch" + diffNS),
			body: func(s *scriptState) any {
				return &api.JobDispatchRequest{JobID: s.child, Meta: okMeta, Payload: []byte("p")}
			}},
		{name: "dispatch unknown job", method: "PUT", path: fixed("/v1/job/nope/dispatch" + diffNS),
			body: func(*scriptState) any {
				return &api.JobDispatchRequest{JobID: "nope", Meta: okMeta, Payload: []byte("p")}
			}},
		{name: "dispatch id mismatch", method: "PUT", path: fixed("/v1/job/diff-parent/dispatch" + diffNS),
			body: func(*scriptState) any {
				return &api.JobDispatchRequest{JobID: "other", Meta: okMeta, Payload: []byte("p")}
			}},
		{name: "dispatch bad json", method: "PUT", path: fixed("/v1/job/diff-parent/dispatch" + diffNS),
			body: func(*scriptState) any { return "{" }},
		{name: "read unknown job", method: "GET", path: fixed("/v1/job/nope" + diffNS)},
		{name: "deregister unknown job", method: "DELETE", path: fixed("/v1/job/nope" + diffNS),
			into: func() any { return &api.JobDeregisterResponse{} }},
		{name: "bad index", method: "GET", path: fixed("/v1/jobs" + diffNS + "&index=x")},
		{name: "bad wait", method: "GET", path: fixed("/v1/jobs" + diffNS + "&index=1&wait=x")},
		{name: "wrong method", method: "PATCH", path: fixed("/v1/jobs" + diffNS)},
		{name: "no token", method: "GET", path: fixed("/v1/jobs" + diffNS), noAuth: true},
		{name: "unknown token", method: "GET", path: fixed("/v1/jobs" + diffNS), token: "8f2d6f0e-3c1b-4a57-9a0e-2b7f3c9d1e44"},
		{name: "malformed token", method: "GET", path: fixed("/v1/jobs" + diffNS), token: "not-a-uuid"},
		{name: "unknown token dispatch", method: "PUT", path: fixed("/v1/job/diff-parent/dispatch" + diffNS),
			token: "8f2d6f0e-3c1b-4a57-9a0e-2b7f3c9d1e44", body: dispatch(okMeta, []byte("p"))},
		{name: "stop child", method: "DELETE", path: child(diffNS), into: func() any { return &api.JobDeregisterResponse{} },
			wait: "complete"},
		// (the script waits here until the child's allocation completed)
		{name: "read stopped child", method: "GET", path: child(diffNS), into: job},
		{name: "stopped child allocations", method: "GET", path: child("/allocations" + diffNS + "&all=true"),
			into: func() any { return &[]*api.AllocationListStub{} }},
		{name: "parent summary after stop", method: "GET", path: fixed("/v1/job/diff-parent/summary" + diffNS), into: summary},
		{name: "purge child", method: "DELETE", path: child(diffNS + "&purge=true"),
			into: func() any { return &api.JobDeregisterResponse{} }},
		{name: "read purged child", method: "GET", path: child(diffNS)},
		{name: "stop parent", method: "DELETE", path: fixed("/v1/job/diff-parent" + diffNS),
			into: func() any { return &api.JobDeregisterResponse{} }},
		{name: "dispatch stopped parent", method: "PUT", path: fixed("/v1/job/diff-parent/dispatch" + diffNS),
			body: dispatch(okMeta, []byte("p"))},
	}
	// how a task ends: exit 0, exit 3, a command that cannot start
	for _, end := range []struct {
		kind, wait string
		command    string
		args       []any
	}{
		{"exit-0", "complete", "/bin/true", nil},
		{"exit-3", "failed", "/bin/sh", []any{"-c", "exit 3"}},
		{"no-command", "failed", "/nonexistent/runner", nil},
	} {
		id := "diff-" + end.kind
		kid := func(suffix string) func(*scriptState) string {
			return func(s *scriptState) string { return "/v1/job/" + esc(s.children[end.kind]) + suffix }
		}
		steps = append(steps,
			step{name: "register " + end.kind, method: "PUT", path: fixed("/v1/jobs" + diffNS),
				body: func(*scriptState) any {
					j := diffParent()
					j.ID, j.Name = ptr(id), ptr(id)
					j.TaskGroups[0].Tasks[0].Config = map[string]any{"command": end.command, "args": end.args}
					return &api.JobRegisterRequest{Job: j}
				},
				into: func() any { return &api.JobRegisterResponse{} }},
			step{name: "dispatch " + end.kind, method: "PUT", path: fixed("/v1/job/" + id + "/dispatch" + diffNS),
				body: func(*scriptState) any {
					return &api.JobDispatchRequest{JobID: id, Meta: okMeta, Payload: []byte("p")}
				},
				into: func() any { return &api.JobDispatchResponse{} }, key: end.kind, wait: end.wait},
			step{name: end.kind + " child", method: "GET", path: kid(diffNS), into: job},
			step{name: end.kind + " child summary", method: "GET", path: kid("/summary" + diffNS), into: summary},
			step{name: end.kind + " child allocations", method: "GET", path: kid("/allocations" + diffNS + "&all=true"),
				into: func() any { return &[]*api.AllocationListStub{} }},
			step{name: end.kind + " parent summary", method: "GET", path: fixed("/v1/job/" + id + "/summary" + diffNS), into: summary},
			step{name: end.kind + " purge", method: "DELETE", path: kid(diffNS + "&purge=true"),
				into: func() any { return &api.JobDeregisterResponse{} }},
		)
	}
	return steps
}

// observed is one step's normalised answer.
type observedStep struct {
	status  int
	ctype   string
	headers string
	body    any // normalised decoded JSON, or the error text
}

var (
	uuidRE     = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	dispatchRE = regexp.MustCompile(`dispatch-\d+-[0-9a-f]{8}`)
	// volatile are fields whose values differ run to run (indexes, times,
	// node identity); only their presence is compared.
	volatile = map[string]bool{
		"CreateIndex": true, "ModifyIndex": true, "JobModifyIndex": true, "JobCreateIndex": true, "EvalCreateIndex": true,
		"Index": true, "LastIndex": true, "SubmitTime": true, "CreateTime": true, "ModifyTime": true, "Time": true,
		"StartedAt": true, "FinishedAt": true, "LastRestart": true, "LastContact": true, "AllocModifyIndex": true,
		"SnapshotIndex": true, "NodeID": true, "NodeName": true, "AllocationTime": true, "ClassEligibility": true,
		"VolumeEvalIndex": true, "JobSummary.ModifyIndex": true, "RequestTime": true, "KnownLeader": true,
		"WaitIndex": true, "NextToken": true,
	}
)

// normalise replaces IDs in strings and drops the values of volatile
// fields.
func normalise(v any, key string) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, val := range x {
			out[k] = normalise(val, k)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = normalise(val, key)
		}
		return out
	case string:
		if volatile[key] {
			return "<" + key + ">"
		}
		return dispatchRE.ReplaceAllString(uuidRE.ReplaceAllString(x, "<uuid>"), "dispatch-<id>")
	case float64:
		if volatile[key] {
			return "<" + key + ">"
		}
		return x
	default:
		return x
	}
}

// observe runs one step on one target.
func (d diffTarget) observe(t *testing.T, st step, s *scriptState) observedStep {
	t.Helper()
	var body any
	if st.body != nil {
		body = st.body(s)
	}
	if st.token != "" {
		d.token = st.token
	}
	r := d.do(t, st.method, st.path(s), body, !st.noAuth)
	o := observedStep{status: r.status, ctype: r.ctype, headers: strings.Join(r.headers, ",")}
	if st.into == nil || r.status != http.StatusOK {
		o.body = dispatchRE.ReplaceAllString(uuidRE.ReplaceAllString(string(r.body), "<uuid>"), "dispatch-<id>")
		return o
	}
	dst := st.into()
	must.NoError(t, json.Unmarshal(r.body, dst), must.Sprintf("%s on %s: %s", st.name, d.name, r.body))
	if resp, ok := dst.(*api.JobDispatchResponse); ok && resp.DispatchedJobID != "" {
		switch {
		case st.key != "":
			s.children[st.key] = resp.DispatchedJobID
		case s.child == "":
			s.child = resp.DispatchedJobID
		}
	}
	again, err := json.Marshal(dst)
	must.NoError(t, err)
	var generic any
	must.NoError(t, json.Unmarshal(again, &generic))
	o.body = normalise(generic, "")
	return o
}

// diff lists the differences between a (the double) and b (the agent).
func diff(path string, a, b any, out *[]string) {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok {
			*out = append(*out, fmt.Sprintf("%s: double %s, agent %s", path, short(a), short(b)))
			return
		}
		keys := map[string]bool{}
		for k := range x {
			keys[k] = true
		}
		for k := range y {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			diff(path+"."+k, x[k], y[k], out)
		}
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			*out = append(*out, fmt.Sprintf("%s: double %s, agent %s", path, short(a), short(b)))
			return
		}
		for i := range x {
			diff(fmt.Sprintf("%s[%d]", path, i), x[i], y[i], out)
		}
	default:
		if !reflect.DeepEqual(a, b) {
			*out = append(*out, fmt.Sprintf("%s: double %s, agent %s", path, short(a), short(b)))
		}
	}
}

func short(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 4000 {
		return string(b[:4000]) + "…"
	}
	return string(b)
}

func TestNomadDouble_matchesAgent(t *testing.T) {
	agent := nomadagent.Start(t, nomadagent.Options{
		ACL: true, Plugins: []string{},
		ExtraHCL: "plugin \"raw_exec\" {\n  config {\n    enabled = true\n  }\n}\n",
		Ready:    func(n *api.Node) bool { d := n.Drivers["raw_exec"]; return d != nil && d.Healthy },
	})
	_, err := agent.API().Namespaces().Register(&api.Namespace{Name: "github-runners"}, nil)
	must.NoError(t, err)
	// the double runs the task's command and args, as the agent's raw_exec
	dir := t.TempDir()
	sim := New(WithACL(map[string]ACLToken{"management": {Management: true}}),
		WithTaskRunner(TaskRunnerFunc(func(ctx context.Context, task Task, started func()) (int, error) {
			cmd, _ := task.Task.Config["command"].(string)
			var args []string
			if raw, ok := task.Task.Config["args"].([]any); ok {
				for _, a := range raw {
					args = append(args, fmt.Sprint(a))
				}
			}
			return (&ProcessRunner{Dir: dir, Command: cmd, Args: args}).RunTask(ctx, task, started)
		})))
	simAddr := sim.Start()
	t.Cleanup(sim.Close)

	targets := []diffTarget{
		{name: "double", addr: simAddr, token: "management"},
		{name: "agent", addr: agent.HTTPAddr, token: agent.Token},
	}
	states := []*scriptState{{children: map[string]string{}}, {children: map[string]string{}}}
	var unexpected []string
	seen := map[*agentDifference]bool{}
	for _, st := range diffScript() {
		var obs [2]observedStep
		for i, d := range targets {
			obs[i] = d.observe(t, st, states[i])
			if st.wait != "" {
				id := states[i].child
				if st.key != "" {
					id = states[i].children[st.key]
				}
				d.waitAlloc(t, id, st.wait)
			}
		}
		var ds []string
		if obs[0].status != obs[1].status {
			ds = append(ds, fmt.Sprintf("status: double %d, agent %d", obs[0].status, obs[1].status))
		}
		if obs[0].ctype != obs[1].ctype {
			ds = append(ds, fmt.Sprintf("content-type: double %q, agent %q", obs[0].ctype, obs[1].ctype))
		}
		if obs[0].headers != obs[1].headers {
			ds = append(ds, fmt.Sprintf("headers: double %q, agent %q", obs[0].headers, obs[1].headers))
		}
		diff("body", obs[0].body, obs[1].body, &ds)
		for _, d := range ds {
			path := strings.SplitN(d, ":", 2)[0]
			matched := false
			for i := range agentDifferences {
				ad := &agentDifferences[i]
				if ad.step.MatchString(st.name) && ad.path.MatchString(path) {
					seen[ad], matched = true, true
				}
			}
			if !matched {
				unexpected = append(unexpected, st.name+" "+d)
			}
		}
	}
	for i := range agentDifferences {
		if ad := &agentDifferences[i]; !seen[ad] {
			t.Logf("listed difference not seen (fixed, or Nomad changed): %s", ad.reason)
		}
	}
	if len(unexpected) > 0 {
		t.Errorf("the double differs from Nomad %s in %d places (fix the double, or list a version difference in agentDifferences):\n%s",
			"1.6", len(unexpected), strings.Join(unexpected, "\n"))
	}
}

// waitAlloc waits until the child's allocation has client status want.
func (d diffTarget) waitAlloc(t *testing.T, child, want string) {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: d.addr, SecretID: d.token, Namespace: "github-runners"})
	must.NoError(t, err)
	deadline := time.Now().Add(time.Minute)
	for {
		allocs, _, err := c.Jobs().Allocations(child, true, nil)
		must.NoError(t, err)
		if len(allocs) == 1 && allocs[0].ClientStatus == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the allocation of %s never became %s", d.name, child, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
