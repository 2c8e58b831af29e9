// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadbackend

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
	"github.com/tartnomad/nomad-driver-tart/sim/nomadsim"
)

const (
	testJob      = "github-runner-macos"
	testScaleSet = "macos-arm64"
	testJIT      = "eyJqaXQiOiJzZWNyZXQtcnVubmVyLWNvbmZpZyJ9" // looks like a real one
)

func ptr[T any](v T) *T { return &v }

// runnerJob is the parameterized job of examples/scaleset-dispatch.
func runnerJob() *api.Job {
	return &api.Job{
		ID: ptr(testJob), Type: ptr("batch"),
		ParameterizedJob: &api.ParameterizedJobConfig{
			Payload:      "required",
			MetaRequired: []string{DefaultRunnerNameMetaKey, DefaultScaleSetMetaKey},
		},
		TaskGroups: []*api.TaskGroup{{
			Name: ptr("runner"),
			Tasks: []*api.Task{{
				Name: "runner", Driver: "tart",
				DispatchPayload: &api.DispatchPayloadConfig{File: "jitconfig"},
			}},
		}},
	}
}

// controlled is a task runner whose tasks a test starts and ends by runner
// name.
type controlled struct {
	mu      sync.Mutex
	exit    map[string]chan int
	fail    map[string]error
	payload map[string]string
}

func newControlled() *controlled {
	return &controlled{exit: map[string]chan int{}, fail: map[string]error{}, payload: map[string]string{}}
}

func (c *controlled) ch(name string) chan int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exit[name] == nil {
		c.exit[name] = make(chan int, 1)
	}
	return c.exit[name]
}

func (c *controlled) RunTask(ctx context.Context, t nomadsim.Task, started func()) (int, error) {
	name := t.Meta[DefaultRunnerNameMetaKey]
	c.mu.Lock()
	c.payload[name] = string(t.Payload)
	err := c.fail[name]
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	started()
	select {
	case code := <-c.ch(name):
		return code, nil
	case <-ctx.Done():
		return 143, nil
	}
}

type fixture struct {
	sim  *nomadsim.Server
	addr string
	api  *api.Client
	logs *testutil.SyncBuffer
}

func newFixture(t *testing.T, opts ...nomadsim.Option) *fixture {
	t.Helper()
	sim := nomadsim.New(opts...)
	addr := sim.Start()
	t.Cleanup(sim.Close)
	must.NoError(t, sim.RegisterJob(runnerJob()))
	c, err := api.NewClient(&api.Config{Address: addr, SecretID: "management"})
	must.NoError(t, err)
	return &fixture{sim: sim, addr: addr, api: c, logs: &testutil.SyncBuffer{}}
}

func noEnv(string) string { return "" }

func fastBackoff(int) time.Duration { return 10 * time.Millisecond }

func (f *fixture) config() Config {
	return Config{Address: f.addr, JobID: testJob, PurgeGracePeriod: "1h", StartupTimeout: "5s"}
}

func (f *fixture) backend(t *testing.T, cfg Config) *Backend {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := New(t.Context(), cfg, testScaleSet, logger, WithGetenv(noEnv), WithBackoff(fastBackoff))
	must.NoError(t, err)
	t.Cleanup(func() { b.Shutdown(context.Background()) })
	return b
}

// waitRunner polls ListRunners until the runner is in state (or the
// deadline passes) and returns it.
func waitRunner(t *testing.T, b *Backend, name string, state backend.State) backend.Runner {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last []backend.Runner
	for time.Now().Before(deadline) {
		list, err := b.ListRunners(t.Context())
		if err == nil {
			last = list
			for _, r := range list {
				if r.Name == name && r.State == state {
					return r
				}
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("runner %q never reached %s; last list %+v", name, state, last)
	return backend.Runner{}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBackend_StartRunner_lifecycle(t *testing.T) {
	tasks := newControlled()
	f := newFixture(t, nomadsim.WithTaskRunner(tasks))
	b := f.backend(t, f.config())
	must.Eq(t, "nomad", b.Name())

	id, err := b.StartRunner(t.Context(), "macos-arm64-1", testJIT)
	must.NoError(t, err)
	must.StrHasPrefix(t, testJob+"/dispatch-macos-arm64-1-", id)

	job := f.sim.Job("default", id)
	must.NotNil(t, job)
	must.Eq(t, testJIT, string(job.Payload))
	must.Eq(t, map[string]string{"runner_name": "macos-arm64-1", "runner_scale_set_name": testScaleSet}, job.Meta)

	r := waitRunner(t, b, "macos-arm64-1", backend.StateRunning)
	must.Eq(t, id, r.ResourceID)
	must.False(t, r.CreatedAt.IsZero())
	tasks.ch("macos-arm64-1") <- 0
	waitRunner(t, b, "macos-arm64-1", backend.StateExited)

	must.NoError(t, b.RemoveRunner(t.Context(), id))
	must.Eq(t, []string{testJob}, f.sim.JobIDs("default"))
	must.NoError(t, b.RemoveRunner(t.Context(), id)) // gone is not an error
	list, err := b.ListRunners(t.Context())
	must.NoError(t, err)
	must.SliceEmpty(t, list)

	err = b.RemoveRunner(t.Context(), "some-other-job")
	must.ErrorIs(t, err, ErrNotOurs)

	// watching is blocking queries, not polling: a handful of list calls
	// for a whole lifecycle
	must.Less(t, 15, f.sim.Requests("GET /v1/jobs"))
	must.StrNotContains(t, f.logs.String(), testJIT)
}

func TestBackend_ListRunners_failedWithReason(t *testing.T) {
	tasks := newControlled()
	tasks.fail["bad-1"] = errors.New("image \"ghcr.io/x/macos:15\" not found")
	f := newFixture(t, nomadsim.WithTaskRunner(tasks))
	b := f.backend(t, f.config())

	_, err := b.StartRunner(t.Context(), "bad-1", testJIT)
	must.NoError(t, err)
	r := waitRunner(t, b, "bad-1", backend.StateFailed)
	must.StrContains(t, r.Reason, "Driver Failure")
	must.StrContains(t, r.Reason, "not found")

	_, err = b.StartRunner(t.Context(), "exit-1", testJIT)
	must.NoError(t, err)
	waitRunner(t, b, "exit-1", backend.StateRunning)
	tasks.ch("exit-1") <- 2
	r = waitRunner(t, b, "exit-1", backend.StateFailed)
	must.StrContains(t, r.Reason, "Exit Code: 2")
}

func TestBackend_ListRunners_placementFailure(t *testing.T) {
	f := newFixture(t, nomadsim.WithPlacement(nomadsim.NoNodeWithDriver()))
	b := f.backend(t, f.config())
	_, err := b.StartRunner(t.Context(), "r-1", testJIT)
	must.NoError(t, err)
	deadline := time.Now().Add(10 * time.Second)
	var r backend.Runner
	for time.Now().Before(deadline) && !strings.Contains(r.Reason, "missing drivers") {
		list, err := b.ListRunners(t.Context())
		must.NoError(t, err)
		if len(list) == 1 {
			r = list[0]
		}
		time.Sleep(5 * time.Millisecond)
	}
	must.Eq(t, backend.StatePending, r.State)
	must.StrContains(t, r.Reason, `constraint "missing drivers" filtered 1 nodes`)
	must.StrContains(t, r.Reason, "no eligible node with driver tart")
	must.StrContains(t, f.logs.String(), "nomad cannot place runner")

	// capacity arrives: the blocked evaluation is placed
	f.sim.SetPlacement(nil)
	waitFor(t, "allocation placed", func() bool {
		list, err := b.ListRunners(t.Context())
		return err == nil && len(list) == 1 && list[0].Reason == ""
	})
}

// A runner Nomad queues because every node's VM slot devices are taken is
// reported as waiting for capacity (logged as such, not as a failure), and
// leaves the queue when a slot frees.
func TestBackend_ListRunners_waitingForCapacity(t *testing.T) {
	f := newFixture(t, nomadsim.WithPlacement(nomadsim.NoCapacity("devices: no devices match request")))
	b := f.backend(t, f.config())
	_, err := b.StartRunner(t.Context(), "r-1", testJIT)
	must.NoError(t, err)
	var r backend.Runner
	waitFor(t, "runner queued for capacity", func() bool {
		list, err := b.ListRunners(t.Context())
		if err != nil || len(list) != 1 {
			return false
		}
		r = list[0]
		return r.WaitingForCapacity
	})
	must.Eq(t, backend.StatePending, r.State)
	must.StrContains(t, r.Reason, "queued for capacity")
	must.StrContains(t, r.Reason, `dimension "devices: no devices match request" exhausted on 1 nodes`)
	must.StrContains(t, f.logs.String(), "runner queued for capacity")
	must.StrNotContains(t, f.logs.String(), "nomad cannot place runner")

	f.sim.SetPlacement(nil)
	waitFor(t, "runner placed", func() bool {
		list, err := b.ListRunners(t.Context())
		return err == nil && len(list) == 1 && !list[0].WaitingForCapacity && list[0].Reason == ""
	})
	waitFor(t, "leaving the queue logged", func() bool { return strings.Contains(f.logs.String(), "runner left the capacity queue") })
}

func TestBackend_New_adoptsAliveAndPurgesDead(t *testing.T) {
	tasks := newControlled()
	f := newFixture(t, nomadsim.WithTaskRunner(tasks))
	dispatch := func(name string) string {
		resp, _, err := f.api.Jobs().Dispatch(testJob, map[string]string{"runner_name": name, "runner_scale_set_name": testScaleSet},
			[]byte(testJIT), name, nil)
		must.NoError(t, err)
		return resp.DispatchedJobID
	}
	// left by an earlier run of the service
	alive := dispatch(testScaleSet + "-1")
	dead := dispatch(testScaleSet + "-2")
	other, _, err := f.api.Jobs().Dispatch(testJob, map[string]string{"runner_name": "x-1", "runner_scale_set_name": "other"}, []byte(testJIT), "x-1", nil)
	must.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	must.NoError(t, f.sim.WaitUntil(ctx, func() bool { return f.sim.RunningTasks() == 3 }))
	tasks.ch(testScaleSet + "-2") <- 0
	must.NoError(t, f.sim.WaitUntil(ctx, func() bool { return *f.sim.Job("default", dead).Status == "dead" }))

	cfg := f.config()
	cfg.PurgeGracePeriod = "200ms"
	b := f.backend(t, cfg)
	list, err := b.ListRunners(t.Context())
	must.NoError(t, err)
	states := map[string]backend.State{}
	for _, r := range list {
		states[r.ResourceID] = r.State
	}
	must.Eq(t, map[string]backend.State{alive: backend.StateRunning, dead: backend.StateExited}, states)
	must.StrContains(t, f.logs.String(), "adopted dispatched runner job")

	// the dead child is purged after the grace period; the live one and
	// the other scale set's stay
	must.NoError(t, f.sim.WaitUntil(ctx, func() bool { return f.sim.Job("default", dead) == nil }))
	must.NotNil(t, f.sim.Job("default", alive))
	must.NotNil(t, f.sim.Job("default", other.DispatchedJobID))
	waitFor(t, "dead runner gone from the list", func() bool {
		list, err := b.ListRunners(t.Context())
		return err == nil && len(list) == 1 && list[0].ResourceID == alive
	})
}

func TestBackend_StartRunner_payloadLimit(t *testing.T) {
	f := newFixture(t)
	b := f.backend(t, f.config())
	big := strings.Repeat("s", DispatchPayloadLimit+1)
	_, err := b.StartRunner(t.Context(), "r-1", big)
	must.ErrorIs(t, err, ErrPayloadTooLarge)
	must.StrContains(t, err.Error(), "16385 bytes")
	must.StrNotContains(t, err.Error(), "sss")
	must.Zero(t, f.sim.Requests("PUT /v1/job/:id/dispatch"))

	// exactly 16 KiB is accepted by Nomad
	_, err = b.StartRunner(t.Context(), "r-2", strings.Repeat("s", DispatchPayloadLimit))
	must.NoError(t, err)
}

func TestBackend_StartRunner_errorHidesSecret(t *testing.T) {
	f := newFixture(t)
	b := f.backend(t, f.config())
	stopped := runnerJob()
	stopped.Stop = ptr(true)
	must.NoError(t, f.sim.RegisterJob(stopped))
	_, err := b.StartRunner(t.Context(), "r-1", testJIT)
	must.ErrorContains(t, err, `Specified job "github-runner-macos" is stopped`)
	must.StrNotContains(t, err.Error(), testJIT)
	must.StrNotContains(t, f.logs.String(), testJIT)
}

func TestBackend_StartRunner_echoedSecretRedacted(t *testing.T) {
	sim := nomadsim.New()
	t.Cleanup(sim.Close)
	must.NoError(t, sim.RegisterJob(runnerJob()))
	// A proxy that refuses the dispatch and echoes the request body, whose
	// Payload is the JIT config in base64.
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/dispatch") {
			sim.Handler().ServeHTTP(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusForbidden)
		_, _ = fmt.Fprintf(w, "Permission denied for %s", body)
	}))
	t.Cleanup(proxy.Close)
	f := &fixture{sim: sim, addr: proxy.URL, logs: &testutil.SyncBuffer{}}
	b := f.backend(t, f.config())

	_, err := b.StartRunner(t.Context(), "r-1", testJIT)
	must.ErrorIs(t, err, ErrPermissionDenied)
	must.StrContains(t, err.Error(), "[redacted]")
	must.StrNotContains(t, err.Error(), testJIT)
	must.StrNotContains(t, err.Error(), base64.StdEncoding.EncodeToString([]byte(testJIT)))
	var ue api.UnexpectedResponseError
	must.False(t, errors.As(err, &ue), must.Sprint("the Nomad response, which holds the secret, must not be reachable"))
}

func TestBackend_New_jobValidation(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(j *api.Job)
		cfg    func(c *Config)
		want   []string
	}{
		{"missing", func(j *api.Job) { j.ID = ptr("other") }, nil, []string{`job "github-runner-macos" does not exist in namespace "default"`}},
		{"not parameterized", func(j *api.Job) { j.ParameterizedJob = nil }, nil, []string{"is not parameterized"}},
		{"payload optional", func(j *api.Job) { j.ParameterizedJob.Payload = "optional" }, nil, []string{`parameterized.payload is "optional"`}},
		{"meta key not required", func(j *api.Job) { j.ParameterizedJob.MetaRequired = []string{"runner_name"} }, nil,
			[]string{`meta_required must contain "runner_scale_set_name"`}},
		{"extra required key", func(j *api.Job) {
			j.ParameterizedJob.MetaRequired = append(j.ParameterizedJob.MetaRequired, "team")
		}, nil, []string{`meta_required has "team", which the service does not send`}},
		{"extra meta not allowed", nil, func(c *Config) { c.Meta = map[string]string{"team": "ios"} },
			[]string{`meta key "team" from the nomad block is in neither`}},
		{"no dispatch_payload", func(j *api.Job) { j.TaskGroups[0].Tasks[0].DispatchPayload = nil }, nil,
			[]string{"no task has dispatch_payload"}},
		{"stopped", func(j *api.Job) { j.Stop = ptr(true) }, nil, []string{"is stopped"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sim := nomadsim.New()
			addr := sim.Start()
			t.Cleanup(sim.Close)
			j := runnerJob()
			if tc.mutate != nil {
				tc.mutate(j)
			}
			must.NoError(t, sim.RegisterJob(j))
			cfg := Config{Address: addr, JobID: testJob}
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			_, err := New(t.Context(), cfg, testScaleSet, nil, WithGetenv(noEnv))
			must.ErrorIs(t, err, ErrJobInvalid)
			for _, w := range tc.want {
				must.StrContains(t, err.Error(), w)
			}
		})
	}
	t.Run("optional extra meta ok", func(t *testing.T) {
		sim := nomadsim.New()
		addr := sim.Start()
		t.Cleanup(sim.Close)
		j := runnerJob()
		j.ParameterizedJob.MetaOptional = []string{"team"}
		must.NoError(t, sim.RegisterJob(j))
		b, err := New(t.Context(), Config{Address: addr, JobID: testJob, Meta: map[string]string{"team": "ios"}}, testScaleSet, nil, WithGetenv(noEnv))
		must.NoError(t, err)
		t.Cleanup(func() { b.Shutdown(context.Background()) })
		id, err := b.StartRunner(t.Context(), "r-1", testJIT)
		must.NoError(t, err)
		must.Eq(t, "ios", sim.Job("default", id).Meta["team"])
	})
}

func TestBackend_ACL_denied(t *testing.T) {
	f := newFixture(t, nomadsim.WithACL(map[string]nomadsim.ACLToken{
		"management": {Management: true},
		"reader":     {Namespaces: map[string][]string{"default": {"list-jobs", "read-job"}}},
		"runners":    {Namespaces: map[string][]string{"default": {"list-jobs", "read-job", "dispatch-job", "purge-job"}}},
	}))
	dir := t.TempDir()
	tokenFile := func(secret string) string {
		p := filepath.Join(dir, secret)
		must.NoError(t, os.WriteFile(p, []byte(secret+"\n"), 0o600))
		return p
	}

	cfg := f.config()
	_, err := New(t.Context(), cfg, testScaleSet, nil, WithGetenv(noEnv))
	must.ErrorIs(t, err, ErrPermissionDenied)
	must.StrContains(t, err.Error(), "Permission denied")
	must.StrContains(t, err.Error(), "scaleset-acl-policy.hcl")

	cfg.TokenFile = tokenFile("reader")
	b := f.backend(t, cfg)
	_, err = b.StartRunner(t.Context(), "r-1", testJIT)
	must.ErrorIs(t, err, ErrPermissionDenied)
	must.StrContains(t, err.Error(), "dispatch-job")
	must.StrNotContains(t, err.Error(), testJIT)

	cfg.TokenFile = tokenFile("runners")
	b = f.backend(t, cfg)
	id, err := b.StartRunner(t.Context(), "r-1", testJIT)
	must.NoError(t, err)
	must.NoError(t, b.RemoveRunner(t.Context(), id))
	must.Eq(t, []string{testJob}, f.sim.JobIDs("default"))
}

func TestBackend_unreachable(t *testing.T) {
	t.Run("startup gives up", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		must.NoError(t, err)
		addr := "http://" + ln.Addr().String()
		must.NoError(t, ln.Close())
		_, err = New(t.Context(), Config{Address: addr, JobID: testJob, StartupTimeout: "200ms"}, testScaleSet, nil,
			WithGetenv(noEnv), WithBackoff(fastBackoff))
		must.ErrorIs(t, err, ErrUnreachable)
		must.StrContains(t, err.Error(), "gave up after 200ms (startup_timeout)")
		must.StrContains(t, err.Error(), addr)
	})
	t.Run("watch recovers", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		must.NoError(t, err)
		hostport := ln.Addr().String()
		sim := nomadsim.New()
		addr := sim.StartListener(ln)
		must.NoError(t, sim.RegisterJob(runnerJob()))
		f := &fixture{sim: sim, addr: addr, logs: &testutil.SyncBuffer{}}
		b := f.backend(t, f.config())
		_, err = b.StartRunner(t.Context(), "r-1", testJIT)
		must.NoError(t, err)

		sim.Close()
		waitFor(t, "stale view error", func() bool {
			_, err := b.ListRunners(t.Context())
			return errors.Is(err, ErrUnreachable)
		})
		_, err = b.ListRunners(t.Context())
		must.StrContains(t, err.Error(), "stale since")

		// Nomad comes back (with the child still there)
		ln2, err := net.Listen("tcp", hostport)
		must.NoError(t, err)
		sim2 := nomadsim.New()
		sim2.StartListener(ln2)
		t.Cleanup(sim2.Close)
		must.NoError(t, sim2.RegisterJob(runnerJob()))
		c, err := api.NewClient(&api.Config{Address: addr})
		must.NoError(t, err)
		_, _, err = c.Jobs().Dispatch(testJob, map[string]string{"runner_name": "r-2", "runner_scale_set_name": testScaleSet}, []byte(testJIT), "r-2", nil)
		must.NoError(t, err)
		waitFor(t, "view recovered", func() bool {
			list, err := b.ListRunners(t.Context())
			return err == nil && len(list) == 1 && list[0].Name == "r-2"
		})
		must.StrContains(t, f.logs.String(), "nomad is reachable again")
	})
}

func TestBackend_ListRunners_newestDispatchPerName(t *testing.T) {
	tasks := newControlled()
	f := newFixture(t, nomadsim.WithTaskRunner(tasks))
	meta := map[string]string{"runner_name": "r-1", "runner_scale_set_name": testScaleSet}
	old, _, err := f.api.Jobs().Dispatch(testJob, meta, []byte(testJIT), "r-1", nil)
	must.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	must.NoError(t, f.sim.WaitUntil(ctx, func() bool { return f.sim.RunningTasks() == 1 }))
	tasks.ch("r-1") <- 1 // the old one failed
	must.NoError(t, f.sim.WaitUntil(ctx, func() bool { return *f.sim.Job("default", old.DispatchedJobID).Status == "dead" }))

	b := f.backend(t, f.config()) // grace 1h: only supersession purges
	id, err := b.StartRunner(t.Context(), "r-1", testJIT)
	must.NoError(t, err)
	r := waitRunner(t, b, "r-1", backend.StateRunning)
	must.Eq(t, id, r.ResourceID)
	list, err := b.ListRunners(t.Context())
	must.NoError(t, err)
	must.Len(t, 1, list)
	// the superseded dead child is purged at once
	must.NoError(t, f.sim.WaitUntil(ctx, func() bool { return f.sim.Job("default", old.DispatchedJobID) == nil }))
	must.NotNil(t, f.sim.Job("default", id))
}

// The GitHub runner ID goes into the dispatch meta when the job declares
// runner_id (meta_optional), and a restarted backend reports it back for
// adoption by ID; a job that does not declare it still works (compatible
// with jobs written before) and dispatches without it.
func TestBackend_StartIdentified_runnerIDMeta(t *testing.T) {
	for _, declared := range []bool{true, false} {
		t.Run(fmt.Sprintf("declared=%t", declared), func(t *testing.T) {
			tasks := newControlled()
			f := newFixture(t, nomadsim.WithTaskRunner(tasks))
			if declared {
				j := runnerJob()
				j.ParameterizedJob.MetaOptional = []string{DefaultRunnerIDMetaKey}
				must.NoError(t, f.sim.RegisterJob(j))
			}
			b := f.backend(t, f.config())
			id, err := b.StartIdentified(t.Context(), backend.Identity{Name: "macos-arm64-7", RunnerID: 4242}, testJIT)
			must.NoError(t, err)
			want := map[string]string{"runner_name": "macos-arm64-7", "runner_scale_set_name": testScaleSet}
			if declared {
				want["runner_id"] = "4242"
			}
			must.Eq(t, want, f.sim.Job("default", id).Meta)
			waitRunner(t, b, "macos-arm64-7", backend.StateRunning)

			// a new process adopts the dispatched job by what its meta says
			again := f.backend(t, f.config())
			r := waitRunner(t, again, "macos-arm64-7", backend.StateRunning)
			must.Eq(t, id, r.ResourceID)
			if declared {
				must.Eq(t, 4242, r.RunnerID)
			} else {
				must.Eq(t, 0, r.RunnerID)
				must.StrContains(t, f.logs.String(), "does not declare the runner ID meta key")
			}
			tasks.ch("macos-arm64-7") <- 0
		})
	}
}
