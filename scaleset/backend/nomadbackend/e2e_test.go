// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadbackend_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/actions/scaleset"
	"github.com/hashicorp/nomad/api"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/scaleset/actionssim"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/nomadbackend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/config"
	"github.com/tartnomad/nomad-driver-tart/scaleset/nomadsim"
	"github.com/tartnomad/nomad-driver-tart/scaleset/service"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.CleanupBuilds()
	os.Exit(code)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func ptr[T any](v T) *T { return &v }

// TestE2E_burst runs the whole path with real runner processes: the
// Actions simulator queues a burst of jobs, the scale-set service (nomad
// backend) dispatches one job per runner to the Nomad API double, the
// double writes each dispatch payload to local/jitconfig and starts a
// fakerunner process reading it, the runners take the jobs and exit, and
// the service purges their dispatched jobs.
func TestE2E_burst(t *testing.T) {
	if testing.Short() {
		t.Skip("builds fakerunner and runs processes")
	}
	fakerunner := testutil.BuildBinary(t, "./cmd/fakerunner")

	gh, err := actionssim.Start("", actionssim.Options{
		LongPollTimeout: 300 * time.Millisecond, SessionIdleTimeout: 2 * time.Second, RunnerPollTimeout: time.Second,
	})
	must.NoError(t, err)
	t.Cleanup(gh.Close)

	runnerLogs := &lockedBuffer{}
	allocDir := t.TempDir()
	nomad := nomadsim.New(nomadsim.WithTaskRunner(&nomadsim.ProcessRunner{
		Dir: allocDir, Command: fakerunner,
		Args:   []string{"--jitconfig-file", "${NOMAD_TASK_DIR}/jitconfig", "--connect-timeout", "10s"},
		Stdout: runnerLogs, Stderr: runnerLogs, KillTimeout: 2 * time.Second,
	}))
	nomadAddr := nomad.Start()
	t.Cleanup(nomad.Close)
	must.NoError(t, nomad.RegisterJob(&api.Job{
		ID: ptr("github-runner-linux"), Type: ptr("batch"), Namespace: ptr("default"),
		ParameterizedJob: &api.ParameterizedJobConfig{
			Payload: "required", MetaRequired: []string{"runner_name", "runner_scale_set_name"},
		},
		TaskGroups: []*api.TaskGroup{{
			Name: ptr("runner"),
			Tasks: []*api.Task{{
				Name: "runner", Driver: "docker",
				DispatchPayload: &api.DispatchPayloadConfig{File: "jitconfig"},
			}},
		}},
	}))

	maxRunners := 4
	cfg := &config.Config{GitHubConfigURL: gh.OrgConfigURL("acme"), ListenAddress: "127.0.0.1:0", ShutdownTimeout: "10s"}
	cfg.ScaleSets = []*config.ScaleSet{{
		Name: "linux", Backend: config.BackendNomad, MaxRunners: &maxRunners, Labels: []string{"linux"},
		ReconcileInterval: "200ms", StartBackoffMin: "100ms", StartBackoffMax: "1s", RunnerOnlineTimeout: "30s",
		Nomad: &nomadbackend.Config{Address: nomadAddr, JobID: "github-runner-linux", PurgeGracePeriod: "2s", StartupTimeout: "10s"},
	}}
	const pat = "ghp_E2ESECRETPAT0123456789"
	must.NoError(t, cfg.ResolveSecrets(func(k string) string {
		if k == config.EnvPrefix+"GITHUB_TOKEN" {
			return pat
		}
		return ""
	}))
	must.NoError(t, cfg.Validate())

	logs := &lockedBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc, err := service.New(service.Options{
		Config: cfg, Logger: logger, Owner: "e2e",
		NewBackend: func(ctx context.Context, ss *config.ScaleSet, l *slog.Logger) (backend.Backend, error) {
			return nomadbackend.New(ctx, *ss.Nomad, ss.RunnerScaleSetName, l, nomadbackend.WithGetenv(func(string) string { return "" }))
		},
		HTTPOptions:  []scaleset.HTTPOption{scaleset.WithRetryMax(2), scaleset.WithRetryWaitMax(100 * time.Millisecond)},
		RetryBackoff: service.Backoff{Min: 100 * time.Millisecond, Max: 500 * time.Millisecond},
	})
	must.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("service did not stop")
		}
	})

	wait := func(d time.Duration, what string, cond func(actionssim.Snapshot) bool) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(t.Context(), d)
		defer wcancel()
		if err := gh.WaitFor(wctx, cond); err != nil {
			t.Fatalf("waiting for %s: %v\nservice logs:\n%s\nrunner logs:\n%s", what, err, logs.String(), runnerLogs.String())
		}
	}
	wait(20*time.Second, "session", func(s actionssim.Snapshot) bool {
		ss, ok := s.ScaleSetByName("linux")
		return ok && ss.SessionID != ""
	})

	const jobs = 10
	gh.QueueJobs(jobs, 50*time.Millisecond, "linux")
	wait(90*time.Second, "all jobs done", func(s actionssim.Snapshot) bool { return len(s.JobsIn(actionssim.JobCompleted)) == jobs })
	wait(30*time.Second, "no runners left in GitHub", func(s actionssim.Snapshot) bool {
		return len(s.RunnersIn(actionssim.RunnerOffline, actionssim.RunnerIdle, actionssim.RunnerBusy)) == 0
	})
	for _, j := range gh.Jobs() {
		must.Eq(t, actionssim.ResultSucceeded, j.Result)
	}

	// nothing left in Nomad: every dispatched job purged, no task running
	nctx, ncancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer ncancel()
	err = nomad.WaitUntil(nctx, func() bool {
		ids := nomad.JobIDs("default")
		return len(ids) == 1 && ids[0] == "github-runner-linux" && nomad.RunningTasks() == 0
	})
	must.NoError(t, err, must.Sprintf("jobs left: %v\nservice logs:\n%s", nomad.JobIDs("default"), logs.String()))
	must.Positive(t, nomad.Requests("PUT /v1/job/:id/dispatch"))
	must.GreaterEq(t, jobs, nomad.Requests("PUT /v1/job/:id/dispatch"))

	cancel()
	select {
	case err := <-done:
		must.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("service did not stop")
	}
	done <- nil // for the cleanup
	must.StrNotContains(t, logs.String(), pat)
	// every JIT config reached its runner through local/jitconfig, and
	// none reached the service's logs
	payloads, err := filepath.Glob(filepath.Join(allocDir, "*", "runner", "local", "jitconfig"))
	must.NoError(t, err)
	must.Eq(t, nomad.Requests("PUT /v1/job/:id/dispatch"), len(payloads))
	for _, p := range payloads {
		b, err := os.ReadFile(p)
		must.NoError(t, err)
		must.Greater(t, 100, len(b))
		must.StrNotContains(t, logs.String(), string(b))
	}
}
