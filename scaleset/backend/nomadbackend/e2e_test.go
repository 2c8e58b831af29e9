// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadbackend_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/actions/scaleset"
	"github.com/hashicorp/nomad/api"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/driver/harness"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/nomadbackend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/config"
	"github.com/tartnomad/nomad-driver-tart/scaleset/service"
	"github.com/tartnomad/nomad-driver-tart/sim/actionssim"
	"github.com/tartnomad/nomad-driver-tart/sim/faketart"
	"github.com/tartnomad/nomad-driver-tart/sim/nomadsim"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.CleanupBuilds()
	os.Exit(code)
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
	fakerunner := testutil.BuildBinary(t, "./sim/cmd/fakerunner")
	runnerLogs := &testutil.SyncBuffer{}
	allocDir := t.TempDir()
	runner := &nomadsim.ProcessRunner{
		Dir: allocDir, Command: fakerunner,
		Args:   []string{"--jitconfig-file", "${NOMAD_TASK_DIR}/jitconfig", "--connect-timeout", "10s"},
		Stdout: runnerLogs, Stderr: runnerLogs, KillTimeout: 2 * time.Second,
	}
	res := runBurst(t, burst{runner: runner, driver: "docker", jobs: 10, max: 4, runnerLogs: runnerLogs})

	// every JIT config reached its runner through local/jitconfig, and
	// none reached the service's logs
	payloads, err := filepath.Glob(filepath.Join(allocDir, "*", "runner", "local", "jitconfig"))
	must.NoError(t, err)
	must.Eq(t, res.dispatches, len(payloads))
	for _, p := range payloads {
		b, err := os.ReadFile(p)
		must.NoError(t, err)
		must.Greater(t, 100, len(b))
		must.StrNotContains(t, res.logs, string(b))
	}

	// the service scopes the backend's logger with scale_set and backend;
	// the backend (its lines carry job_id) must not add them a second time
	ready := 0
	for _, line := range strings.Split(res.logs, "\n") {
		if !strings.Contains(line, " job_id=github-runner") {
			continue
		}
		must.LessEq(t, 1, strings.Count(line, " backend=nomad"), must.Sprint(line))
		must.LessEq(t, 1, strings.Count(line, " scale_set=linux"), must.Sprint(line))
		if strings.Contains(line, `msg="nomad backend ready"`) {
			ready++
			must.StrContains(t, line, " backend=nomad")
			must.StrContains(t, line, " scale_set=linux")
			must.StrContains(t, line, " job_id=github-runner")
		}
	}
	must.Eq(t, 1, ready)
}

type burst struct {
	runner     nomadsim.TaskRunner
	driver     string
	jobs, max  int
	runnerLogs *testutil.SyncBuffer
}

type burstResult struct {
	dispatches int
	logs       string
}

// runBurst runs actionssim → service (nomad backend) → nomadsim → runner
// for b.jobs jobs and checks that all succeed and nothing is left behind.
func runBurst(t *testing.T, b burst) burstResult {
	t.Helper()
	gh, err := actionssim.Start("", actionssim.Options{
		LongPollTimeout: 300 * time.Millisecond, SessionIdleTimeout: 2 * time.Second, RunnerPollTimeout: time.Second,
	})
	must.NoError(t, err)
	t.Cleanup(gh.Close)

	nomad := nomadsim.New(nomadsim.WithTaskRunner(b.runner))
	nomadAddr := nomad.Start()
	t.Cleanup(nomad.Close)
	must.NoError(t, nomad.RegisterJob(&api.Job{
		ID: ptr("github-runner"), Type: ptr("batch"), Namespace: ptr("github-runners"),
		ParameterizedJob: &api.ParameterizedJobConfig{
			Payload: "required", MetaRequired: []string{"runner_name", "runner_scale_set_name"},
		},
		TaskGroups: []*api.TaskGroup{{
			Name: ptr("runner"),
			Tasks: []*api.Task{{
				Name: "runner", Driver: b.driver, KillTimeout: ptr(2 * time.Second),
				DispatchPayload: &api.DispatchPayloadConfig{File: "jitconfig"},
			}},
		}},
	}))

	maxRunners := b.max
	cfg := &config.Config{GitHubConfigURL: gh.OrgConfigURL("acme"), ListenAddress: "127.0.0.1:0", ShutdownTimeout: "10s", StateDir: t.TempDir()}
	cfg.ScaleSets = []*config.ScaleSet{{
		Name: "linux", Backend: config.BackendNomad, MaxRunners: &maxRunners, Labels: []string{"linux"},
		ReconcileInterval: "200ms", StartBackoffMin: "100ms", StartBackoffMax: "1s", RunnerOnlineTimeout: "30s",
		Nomad: &config.BackendBlock{Value: &nomadbackend.Config{Address: nomadAddr, Namespace: "github-runners", JobID: "github-runner",
			PurgeGracePeriod: "2s", StartupTimeout: "10s"}},
	}}
	const pat = "ghp_E2ESECRETPAT0123456789"
	must.NoError(t, cfg.ResolveSecrets(func(k string) string {
		if k == config.EnvPrefix+"GITHUB_TOKEN" {
			return pat
		}
		return ""
	}))
	must.NoError(t, cfg.Validate())
	must.NoError(t, service.ValidateBackends(cfg))

	logs := &testutil.SyncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc, err := service.New(service.Options{
		Config: cfg, Logger: logger, Owner: "e2e",
		// the service's own factory, as the binary uses it
		NewBackend:   service.DefaultBackends,
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
		case err := <-done:
			if err != nil {
				t.Logf("service ended: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("service did not stop")
		}
	})

	wait := func(d time.Duration, what string, cond func(actionssim.Snapshot) bool) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(t.Context(), d)
		defer wcancel()
		if err := gh.WaitFor(wctx, cond); err != nil {
			t.Fatalf("waiting for %s: %v\nservice logs:\n%s\nrunner logs:\n%s", what, err, logs.String(), b.runnerLogs.String())
		}
	}
	wait(20*time.Second, "session", func(s actionssim.Snapshot) bool {
		ss, ok := s.ScaleSetByName("linux")
		return ok && ss.SessionID != ""
	})

	gh.QueueJobs(b.jobs, 50*time.Millisecond, "linux")
	wait(120*time.Second, "all jobs done", func(s actionssim.Snapshot) bool { return len(s.JobsIn(actionssim.JobCompleted)) == b.jobs })
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
		ids := nomad.JobIDs("github-runners")
		return len(ids) == 1 && ids[0] == "github-runner" && nomad.RunningTasks() == 0
	})
	must.NoError(t, err, must.Sprintf("jobs left: %v\nservice logs:\n%s", nomad.JobIDs("github-runners"), logs.String()))
	dispatches := nomad.Requests("PUT /v1/job/:id/dispatch")
	must.GreaterEq(t, b.jobs, dispatches)

	cancel()
	select {
	case err := <-done:
		must.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("service did not stop")
	}
	done <- nil // for the cleanup
	must.StrNotContains(t, logs.String(), pat)
	return burstResult{dispatches: dispatches, logs: logs.String()}
}

// TestE2E_tartDriver is TestE2E_burst with each dispatched job run the way
// a Mac client runs it: through the plugin harness on the built tart
// driver with faketart. The payload lands in local/jitconfig, the driver
// hands it to the guest command (fakerunner) on stdin, and every VM is
// gone at the end.
func TestE2E_tartDriver(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the driver, faketart and fakerunner and runs processes")
	}
	fakerunner := testutil.BuildBinary(t, "./sim/cmd/fakerunner")
	tartBin := testutil.BuildBinary(t, "./sim/cmd/faketart")
	home, registry := t.TempDir(), t.TempDir()
	const image = "ghcr.io/cirruslabs/macos-sequoia-base:latest"
	must.NoError(t, faketart.SeedImage(registry, image, faketart.DefaultConfig("darwin"), faketart.ImageOptions{}))
	env := []string{"TART_HOME=" + home, "FAKETART_REGISTRY=" + registry, "FAKETART_BOOT_DELAY=100ms",
		"FAKETART_IP_POLL_INTERVAL=100ms", "FAKETART_STOP_POLL_INTERVAL=20ms", "FAKETART_SHUTDOWN_DELAY=10ms"}
	h := harness.Launch(t, testutil.BuildBinary(t, "./cmd/nomad-driver-tart"), harness.Options{
		PluginConfig: fmt.Sprintf("tart_path = %q\ntart_home = %q\nmac_seed = %q\nmax_vms = 2\nagent_poll_interval = \"50ms\"\nvm_stop_timeout = \"2s\"\n",
			tartBin, home, t.Name()),
		Env:     env,
		Timeout: 60 * time.Second,
	})
	runner := &harnessRunner{H: h, KillTimeout: 2 * time.Second, Config: fmt.Sprintf(
		"image = %q\ncommand = %q\nargs = [\"--jitconfig\", \"-\", \"--connect-timeout\", \"10s\"]\nstdin_file = \"local/jitconfig\"\n",
		image, fakerunner)}
	var mu sync.Mutex
	var payloads []string
	recording := nomadsim.TaskRunnerFunc(func(ctx context.Context, task nomadsim.Task, started func()) (int, error) {
		mu.Lock()
		payloads = append(payloads, string(task.Payload))
		mu.Unlock()
		return runner.RunTask(ctx, task, started)
	})
	res := runBurst(t, burst{runner: recording, driver: "tart", jobs: 4, max: 2, runnerLogs: &testutil.SyncBuffer{}})
	must.Eq(t, 4, res.dispatches)

	// the JIT configs went to the guest over stdin: in no plugin or
	// service log
	mu.Lock()
	defer mu.Unlock()
	must.Len(t, 4, payloads)
	for _, p := range payloads {
		must.Greater(t, 100, len(p))
		must.StrNotContains(t, h.PluginLogs(), p)
		must.StrNotContains(t, res.logs, p)
	}
	// no VM left behind
	cmd := exec.Command(tartBin, "list", "--format", "json")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	must.NoError(t, err)
	var vms []struct{ Name, Source string }
	must.NoError(t, json.Unmarshal(out, &vms))
	for _, vm := range vms {
		must.NotEq(t, "local", strings.ToLower(vm.Source), must.Sprintf("VM %s left behind", vm.Name))
	}
}

// TestE2E_binarySigkillRestart runs the built nomad-gha-scaleset with a
// config file (backend = "nomad") against the Nomad API double with
// fakerunner processes, kills it with SIGKILL while runners are busy, and
// starts it again: the second process adopts the dispatched jobs still
// running in Nomad, the burst completes, and nothing is left behind.
func TestE2E_binarySigkillRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the service and fakerunner and runs processes")
	}
	fakerunner := testutil.BuildBinary(t, "./sim/cmd/fakerunner")
	gh, err := actionssim.Start("", actionssim.Options{
		LongPollTimeout: time.Second, SessionIdleTimeout: 3 * time.Second, RunnerPollTimeout: 2 * time.Second,
		RunnerLostTimeout: 5 * time.Second, AssignTimeout: time.Minute,
	})
	must.NoError(t, err)
	t.Cleanup(gh.Close)
	runnerLogs := &testutil.SyncBuffer{}
	nomad := nomadsim.New(nomadsim.WithTaskRunner(&nomadsim.ProcessRunner{
		Dir: t.TempDir(), Command: fakerunner,
		Args:   []string{"--jitconfig-file", "${NOMAD_TASK_DIR}/jitconfig", "--connect-timeout", "10s"},
		Stdout: runnerLogs, Stderr: runnerLogs, KillTimeout: 2 * time.Second,
	}))
	nomadAddr := nomad.Start()
	t.Cleanup(nomad.Close)
	must.NoError(t, nomad.RegisterJob(&api.Job{
		ID: ptr("github-runner-linux"), Type: ptr("batch"), Namespace: ptr("github-runners"),
		ParameterizedJob: &api.ParameterizedJobConfig{
			Payload: "required", MetaRequired: []string{"runner_name", "runner_scale_set_name"},
		},
		TaskGroups: []*api.TaskGroup{{Name: ptr("runner"), Tasks: []*api.Task{{
			Name: "runner", Driver: "docker", DispatchPayload: &api.DispatchPayloadConfig{File: "jitconfig"},
		}}}},
	}))

	listen := testutil.FreeLoopbackAddr(t)
	cfgPath := filepath.Join(t.TempDir(), "scaleset.hcl")
	must.NoError(t, os.WriteFile(cfgPath, []byte(fmt.Sprintf(`github_config_url = %q
listen_address    = %q
shutdown_timeout  = "20s"

scale_set "crash" {
  labels                   = ["crash"]
  max_runners              = 3
  backend                  = "nomad"
  reconcile_interval       = "500ms"
  runner_online_timeout    = "1m"
  start_backoff_min        = "200ms"
  start_backoff_max        = "2s"
  session_conflict_timeout = "30s"

  nomad {
    address            = %q
    namespace          = "github-runners"
    job_id             = "github-runner-linux"
    purge_grace_period = "3s"
  }
}
`, gh.OrgConfigURL("acme"), listen, nomadAddr)), 0o600))

	const pat = "ghp_BINARYE2ESECRETPAT0123456789"
	wait := func(logs *testutil.SyncBuffer, d time.Duration, what string, cond func(actionssim.Snapshot) bool) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), d)
		defer cancel()
		if err := gh.WaitFor(ctx, cond); err != nil {
			t.Fatalf("waiting for %s: %v\nservice logs:\n%s", what, err, logs.String())
		}
	}

	first := startService(t, cfgPath, pat)
	wait(first.logs, 30*time.Second, "session", func(s actionssim.Snapshot) bool {
		ss, ok := s.ScaleSetByName("crash")
		return ok && ss.SessionID != ""
	})
	const jobs = 9
	gh.QueueJobs(jobs, 1500*time.Millisecond, "crash")
	wait(first.logs, time.Minute, "runners busy", func(s actionssim.Snapshot) bool { return len(s.JobsIn(actionssim.JobRunning)) >= 2 })
	must.NoError(t, first.cmd.Process.Signal(syscall.SIGKILL))
	t.Logf("killed service ended: %v", <-first.done)
	first.done <- nil

	second := startService(t, cfgPath, pat)
	wait(second.logs, 3*time.Minute, "all jobs done after the restart", func(s actionssim.Snapshot) bool {
		return len(s.JobsIn(actionssim.JobCompleted)) == jobs
	})
	wait(second.logs, 30*time.Second, "no runners left in GitHub", func(s actionssim.Snapshot) bool {
		return len(s.RunnersIn(actionssim.RunnerOffline, actionssim.RunnerIdle, actionssim.RunnerBusy)) == 0
	})
	for _, j := range gh.Jobs() {
		must.Eq(t, actionssim.ResultSucceeded, j.Result, must.Sprintf("job %s", j.ID))
	}
	must.StrContains(t, second.logs.String(), "adopted dispatched runner job")

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err = nomad.WaitUntil(ctx, func() bool {
		ids := nomad.JobIDs("github-runners")
		return len(ids) == 1 && nomad.RunningTasks() == 0
	})
	must.NoError(t, err, must.Sprintf("left in Nomad: %v\n%s", nomad.JobIDs("github-runners"), second.logs.String()))

	// a clean stop on SIGTERM
	must.NoError(t, second.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-second.done:
		second.done <- err
		must.NoError(t, err, must.Sprint(second.logs.String()))
	case <-time.After(40 * time.Second):
		t.Fatal("service did not stop on SIGTERM")
	}
	must.StrNotContains(t, first.logs.String()+second.logs.String(), pat)
}

// TestE2E_noSurplusBeforeDemand is issue 11's real-agent report on the
// Nomad API double: after a SIGKILL mid-burst, the restarted service
// adopted the dispatched runner jobs still waiting for placement and, in
// the same 10 ms, removed every one as surplus, long before its session's
// first statistics said that jobs were waiting; then it dispatched
// replacements. Nothing may be removed as surplus before the demand is
// known: the restarted process keeps the three waiting runners, which take
// the three jobs once Nomad can place them.
func TestE2E_noSurplusBeforeDemand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the service and fakerunner and runs processes")
	}
	fakerunner := testutil.BuildBinary(t, "./sim/cmd/fakerunner")
	gh, err := actionssim.Start("", actionssim.Options{
		LongPollTimeout: time.Second, SessionIdleTimeout: 3 * time.Second, RunnerPollTimeout: 2 * time.Second,
		RunnerLostTimeout: 10 * time.Second, AssignTimeout: time.Minute,
	})
	must.NoError(t, err)
	t.Cleanup(gh.Close)
	runnerLogs := &testutil.SyncBuffer{}
	nomad := nomadsim.New(nomadsim.WithTaskRunner(&nomadsim.ProcessRunner{
		Dir: t.TempDir(), Command: fakerunner,
		Args:   []string{"--jitconfig-file", "${NOMAD_TASK_DIR}/jitconfig", "--connect-timeout", "10s"},
		Stdout: runnerLogs, Stderr: runnerLogs, KillTimeout: 2 * time.Second,
	}))
	nomadAddr := nomad.Start()
	t.Cleanup(nomad.Close)
	nomad.SetPlacement(nomadsim.NoNodeWithDriver()) // every runner waits for placement
	must.NoError(t, nomad.RegisterJob(&api.Job{
		ID: ptr("github-runner-linux"), Type: ptr("batch"), Namespace: ptr("github-runners"),
		ParameterizedJob: &api.ParameterizedJobConfig{
			Payload: "required", MetaRequired: []string{"runner_name", "runner_scale_set_name"},
			MetaOptional: []string{"runner_id"},
		},
		TaskGroups: []*api.TaskGroup{{Name: ptr("runner"), Tasks: []*api.Task{{
			Name: "runner", Driver: "docker", DispatchPayload: &api.DispatchPayloadConfig{File: "jitconfig"},
		}}}},
	}))
	listen := testutil.FreeLoopbackAddr(t)
	cfgPath := filepath.Join(t.TempDir(), "scaleset.hcl")
	must.NoError(t, os.WriteFile(cfgPath, []byte(fmt.Sprintf(`github_config_url = %q
listen_address    = %q

scale_set "waiting" {
  labels                   = ["waiting"]
  max_runners              = 3
  backend                  = "nomad"
  reconcile_interval       = "300ms"
  runner_online_timeout    = "5m"
  session_conflict_timeout = "30s"

  nomad {
    address            = %q
    namespace          = "github-runners"
    job_id             = "github-runner-linux"
    purge_grace_period = "3s"
  }
}
`, gh.OrgConfigURL("acme"), listen, nomadAddr)), 0o600))

	const pat = "ghp_NOSURPLUS0123456789"
	children := func() int { return len(nomad.JobIDs("github-runners")) - 1 } // minus the parent
	until := func(d time.Duration, what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	first := startService(t, cfgPath, pat)
	until(30*time.Second, "first session", func() bool { ss, ok := gh.Snapshot().ScaleSetByName("waiting"); return ok && ss.SessionID != "" })
	gh.QueueJobs(3, 300*time.Millisecond, "waiting")
	until(30*time.Second, "three dispatched runners waiting for placement", func() bool { return children() == 3 })
	must.NoError(t, first.cmd.Process.Signal(syscall.SIGKILL))
	t.Logf("killed service ended: %v", <-first.done)
	first.done <- nil
	dispatched := nomad.JobIDs("github-runners")

	secondLogs := startService(t, cfgPath, pat).logs
	// The killed process's session blocks the new one (409) until the
	// service expires it; then the listener hands over the statistics.
	until(60*time.Second, "second session", func() bool { return strings.Contains(secondLogs.String(), "Handling initial session statistics") })
	until(10*time.Second, "a few reconcile passes after the statistics", func() bool {
		return strings.Count(secondLogs.String(), "Getting next message") >= 3
	})
	must.Eq(t, dispatched, nomad.JobIDs("github-runners"), must.Sprint("the waiting runners were kept"))
	must.StrNotContains(t, secondLogs.String(), "reason=surplus")

	nomad.SetPlacement(nil) // capacity arrives
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	must.NoError(t, gh.WaitFor(ctx, actionssim.JobsCompleted(3)))
	for _, j := range gh.Jobs() {
		must.Eq(t, actionssim.ResultSucceeded, j.Result)
	}
	must.StrNotContains(t, secondLogs.String(), `msg="dispatched runner job"`, must.Sprint("no replacements: the adopted runners took the jobs"))
}
