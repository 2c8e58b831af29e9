// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/actions/scaleset"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/config"
	"github.com/tartnomad/nomad-driver-tart/sim/actionssim"
)

const testPAT = "ghp_TESTSECRETPAT0123456789"

func startSim(t *testing.T, opts actionssim.Options) *actionssim.Server {
	t.Helper()
	if opts.LongPollTimeout == 0 {
		opts.LongPollTimeout = 300 * time.Millisecond
	}
	if opts.SessionIdleTimeout == 0 {
		opts.SessionIdleTimeout = 2 * time.Second
	}
	if opts.RunnerPollTimeout == 0 {
		opts.RunnerPollTimeout = time.Second
	}
	srv, err := actionssim.Start("", opts)
	must.NoError(t, err)
	t.Cleanup(srv.Close)
	return srv
}

type scaleSetSpec struct {
	name          string
	min, max      int
	onlineTimeout string
	removeIdle    bool
	conflictWait  string
}

func testConfig(t *testing.T, url string, sets ...scaleSetSpec) *config.Config {
	t.Helper()
	c := &config.Config{GitHubConfigURL: url, ListenAddress: "127.0.0.1:0", ShutdownTimeout: "10s", StateDir: t.TempDir()}
	for _, s := range sets {
		m := s.max
		c.ScaleSets = append(c.ScaleSets, &config.ScaleSet{
			Name: s.name, Backend: config.BackendDocker, MinRunners: s.min, MaxRunners: &m,
			Labels: []string{s.name}, RunnerOnlineTimeout: s.onlineTimeout, ReconcileInterval: "200ms",
			StartBackoffMin: "100ms", StartBackoffMax: "1s", RemoveIdleRunnersOnShutdown: s.removeIdle,
			SessionConflictTimeout: s.conflictWait,
		})
	}
	must.NoError(t, c.ResolveSecrets(func(k string) string {
		if k == config.EnvPrefix+"GITHUB_TOKEN" {
			return testPAT
		}
		return ""
	}))
	must.NoError(t, c.Validate())
	return c
}

type running struct {
	svc  *Service
	stop context.CancelFunc
	done chan error
	logs *testutil.SyncBuffer
}

func startService(t *testing.T, cfg *config.Config, backends map[string]*goBackend) *running {
	t.Helper()
	return startServiceWith(t, cfg, backends, nil)
}

// startServiceWith is startService with Options changed by edit (nil:
// none).
func startServiceWith(t *testing.T, cfg *config.Config, backends map[string]*goBackend, edit func(*Options)) *running {
	t.Helper()
	logs := &testutil.SyncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts := Options{
		Config: cfg, Logger: logger, Owner: "test-owner",
		NewBackend: func(_ context.Context, ss *config.ScaleSet, _ *slog.Logger) (backend.Backend, error) {
			return backends[ss.Name], nil
		},
		HTTPOptions:  []scaleset.HTTPOption{scaleset.WithRetryMax(2), scaleset.WithRetryWaitMax(100 * time.Millisecond)},
		RetryBackoff: Backoff{Min: 100 * time.Millisecond, Max: 500 * time.Millisecond},
	}
	if edit != nil {
		edit(&opts)
	}
	svc, err := New(opts)
	must.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{svc: svc, stop: cancel, done: make(chan error, 1), logs: logs}
	go func() { r.done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Logf("service ended: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("service did not stop")
		}
	})
	return r
}

func (r *running) shutdown(t *testing.T) error {
	t.Helper()
	r.stop()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("service did not stop")
		return nil
	}
}

func waitFor(t *testing.T, sim *actionssim.Server, d time.Duration, what string, cond func(actionssim.Snapshot) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	if err := sim.WaitFor(ctx, cond); err != nil {
		snap := sim.Snapshot()
		t.Fatalf("waiting for %s: %v\nlive runners: %+v\njobs not done: %+v", what, err,
			snap.RunnersIn(actionssim.RunnerOffline, actionssim.RunnerIdle, actionssim.RunnerBusy),
			len(snap.Jobs)-len(snap.JobsIn(actionssim.JobCompleted)))
	}
}

func waitListening(t *testing.T, sim *actionssim.Server, names ...string) {
	t.Helper()
	waitFor(t, sim, 10*time.Second, "sessions", func(s actionssim.Snapshot) bool {
		for _, n := range names {
			ss, ok := s.ScaleSetByName(n)
			if !ok || ss.SessionID == "" {
				return false
			}
		}
		return true
	})
}

// waitHeld waits until the backend holds n runners.
func waitHeld(t *testing.T, be *goBackend, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for {
		held, _, _ := be.stats()
		if held == n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("backend holds %d runners, want %d", held, n)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func allDone(n int) func(actionssim.Snapshot) bool {
	return func(s actionssim.Snapshot) bool { return len(s.JobsIn(actionssim.JobCompleted)) == n }
}

func noLiveRunners(s actionssim.Snapshot) bool {
	return len(s.RunnersIn(actionssim.RunnerOffline, actionssim.RunnerIdle, actionssim.RunnerBusy)) == 0
}

func TestService_Run_burstRespectsMax(t *testing.T) {
	sim := startSim(t, actionssim.Options{})
	be := newGoBackend()
	t.Cleanup(be.close)
	r := startService(t, testConfig(t, sim.OrgConfigURL("acme"), scaleSetSpec{name: "linux", max: 5}), map[string]*goBackend{"linux": be})
	waitListening(t, sim, "linux")

	sim.QueueJobs(30, 100*time.Millisecond, "linux")
	waitFor(t, sim, 60*time.Second, "30 jobs done", allDone(30))
	waitFor(t, sim, 10*time.Second, "no runners left", noLiveRunners)

	waitHeld(t, be, 0)
	_, maxHeld, _ := be.stats()
	must.LessEq(t, 5, maxHeld)
	for _, j := range sim.Jobs() {
		must.Eq(t, actionssim.ResultSucceeded, j.Result)
	}
	must.NoError(t, r.shutdown(t))
	held, _, _ := be.stats()
	must.Eq(t, 0, held)
	ss, _ := sim.Snapshot().ScaleSetByName("linux")
	must.Eq(t, "", ss.SessionID, must.Sprint("session deleted on shutdown"))
	logs := r.logs.String()
	must.StrNotContains(t, logs, testPAT)
	be.mu.Lock()
	jits := slices.Clone(be.jits)
	be.mu.Unlock()
	must.SliceNotEmpty(t, jits)
	for _, jit := range jits {
		must.StrNotContains(t, logs, jit[len(jit)/2:len(jit)/2+32], must.Sprint("JIT config in the logs"))
	}
}

func TestService_Run_multipleScaleSets(t *testing.T) {
	sim := startSim(t, actionssim.Options{})
	mac, lin := newGoBackend(), newGoBackend()
	t.Cleanup(mac.close)
	t.Cleanup(lin.close)
	startService(t, testConfig(t, sim.OrgConfigURL("acme"),
		scaleSetSpec{name: "macos", max: 2}, scaleSetSpec{name: "linux", max: 3}),
		map[string]*goBackend{"macos": mac, "linux": lin})
	waitListening(t, sim, "macos", "linux")
	sim.QueueJobs(4, 50*time.Millisecond, "macos")
	sim.QueueJobs(6, 50*time.Millisecond, "linux")
	waitFor(t, sim, 30*time.Second, "10 jobs done", allDone(10))
	_, macMax, macStarts := mac.stats()
	_, linMax, linStarts := lin.stats()
	must.LessEq(t, 2, macMax)
	must.LessEq(t, 3, linMax)
	must.GreaterEq(t, 4, macStarts)
	must.GreaterEq(t, 6, linStarts)
}

func TestService_Run_recoversFromGitHub5xx(t *testing.T) {
	sim := startSim(t, actionssim.Options{})
	be := newGoBackend()
	t.Cleanup(be.close)
	r := startService(t, testConfig(t, sim.OrgConfigURL("acme"), scaleSetSpec{name: "linux", max: 3}), map[string]*goBackend{"linux": be})
	waitListening(t, sim, "linux")

	// a 2 s outage of the message queue and JIT generation, longer than
	// the client's own retries: the listener fails and is restarted
	sim.FailFor(2*time.Second, http.StatusBadGateway, actionssim.EndpointGetMessage, actionssim.EndpointJITConfig, actionssim.EndpointDeleteMessage)
	sim.QueueJobs(6, 50*time.Millisecond, "linux")
	waitFor(t, sim, 60*time.Second, "6 jobs done after the outage", allDone(6))
	waitFor(t, sim, 10*time.Second, "no runners left", noLiveRunners)
	must.StrContains(t, r.logs.String(), "listener stopped, restarting")
	must.False(t, strings.Contains(r.logs.String(), testPAT))
}

func TestService_Run_tokenExpiry(t *testing.T) {
	sim := startSim(t, actionssim.Options{AdminTokenLifetime: 30 * time.Second})
	be := newGoBackend()
	t.Cleanup(be.close)
	startService(t, testConfig(t, sim.OrgConfigURL("acme"), scaleSetSpec{name: "linux", max: 2}), map[string]*goBackend{"linux": be})
	waitListening(t, sim, "linux")
	sim.ExpireMessageQueueTokens()
	sim.ExpireAdminTokens()
	sim.QueueJobs(3, 50*time.Millisecond, "linux")
	waitFor(t, sim, 30*time.Second, "jobs done after token expiry", allDone(3))
}

func TestService_Run_sessionConflict(t *testing.T) {
	sim := startSim(t, actionssim.Options{SessionIdleTimeout: time.Minute})
	// another listener holds the session
	other, err := scaleset.NewClientWithPersonalAccessToken(scaleset.NewClientWithPersonalAccessTokenConfig{
		GitHubConfigURL: sim.OrgConfigURL("acme"), PersonalAccessToken: "x",
	})
	must.NoError(t, err)
	rs, err := other.CreateRunnerScaleSet(t.Context(), &scaleset.RunnerScaleSet{Name: "linux", RunnerGroupID: 1, Labels: []scaleset.Label{{Name: "linux"}}})
	must.NoError(t, err)
	sess, err := other.MessageSessionClient(t.Context(), rs.ID, "someone-else")
	must.NoError(t, err)
	t.Cleanup(func() { _ = sess.Close(context.Background()) })

	be := newGoBackend()
	t.Cleanup(be.close)
	r := startService(t, testConfig(t, sim.OrgConfigURL("acme"), scaleSetSpec{name: "linux", max: 2, conflictWait: "1500ms"}), map[string]*goBackend{"linux": be})
	select {
	case err := <-r.done:
		r.done <- err
		must.True(t, errors.Is(err, ErrSessionConflict), must.Sprint(err))
		must.ErrorContains(t, err, `scale set "linux"`)
	case <-time.After(20 * time.Second):
		t.Fatal("service did not give up on the session conflict")
	}
	must.StrContains(t, r.logs.String(), "another listener holds the message session")
}

func TestService_Run_sessionConflictResolves(t *testing.T) {
	sim := startSim(t, actionssim.Options{SessionIdleTimeout: time.Minute})
	other, err := scaleset.NewClientWithPersonalAccessToken(scaleset.NewClientWithPersonalAccessTokenConfig{
		GitHubConfigURL: sim.OrgConfigURL("acme"), PersonalAccessToken: "x",
	})
	must.NoError(t, err)
	// the other listener's scale set has other labels than ours
	rs, err := other.CreateRunnerScaleSet(t.Context(), &scaleset.RunnerScaleSet{Name: "linux", RunnerGroupID: 1, Labels: []scaleset.Label{{Name: "theirs"}}})
	must.NoError(t, err)
	sess, err := other.MessageSessionClient(t.Context(), rs.ID, "someone-else")
	must.NoError(t, err)

	be := newGoBackend()
	t.Cleanup(be.close)
	r := startService(t, testConfig(t, sim.OrgConfigURL("acme"), scaleSetSpec{name: "linux", max: 2, conflictWait: "30s"}), map[string]*goBackend{"linux": be})
	labels := func() []string {
		ss, _ := sim.Snapshot().ScaleSetByName("linux")
		return ss.Labels
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(r.logs.String(), "standing by, read-only") {
		if time.Now().After(deadline) {
			t.Fatal("never stood by")
		}
		time.Sleep(20 * time.Millisecond)
	}
	must.Eq(t, []string{"theirs"}, labels(), must.Sprint("a standby instance does not change the scale set"))
	_ = sess.Close(context.Background())
	waitFor(t, sim, 20*time.Second, "our session", func(s actionssim.Snapshot) bool {
		ss, ok := s.ScaleSetByName("linux")
		return ok && ss.SessionOwner == "test-owner"
	})
	waitFor(t, sim, 20*time.Second, "our labels once we own it", func(actionssim.Snapshot) bool {
		l := labels()
		return len(l) == 1 && l[0] == "linux"
	})
}

func TestService_Run_backendFailureRetried(t *testing.T) {
	sim := startSim(t, actionssim.Options{})
	be := newGoBackend()
	be.failStarts = 3
	t.Cleanup(be.close)
	r := startService(t, testConfig(t, sim.OrgConfigURL("acme"), scaleSetSpec{name: "linux", max: 1}), map[string]*goBackend{"linux": be})
	waitListening(t, sim, "linux")
	sim.QueueJobs(2, 50*time.Millisecond, "linux")
	waitFor(t, sim, 30*time.Second, "jobs done despite failing starts", allDone(2))
	_, _, starts := be.stats()
	must.Eq(t, 5, starts, must.Sprint("3 failures, then one start per job; backoff, no hot loop"))
	must.StrContains(t, r.logs.String(), "failed to start runner")
	// no registration left over from the failed starts
	waitFor(t, sim, 10*time.Second, "no runners left", noLiveRunners)
	body := scrape(t, r)
	must.StrContains(t, body, `nomad_gha_scaleset_backend_errors_total{backend="docker",name="linux",operation="start"} 3`)
}

func TestService_Run_runnerNeverOnline(t *testing.T) {
	sim := startSim(t, actionssim.Options{})
	be := newGoBackend()
	be.neverOnline = true
	t.Cleanup(be.close)
	r := startService(t, testConfig(t, sim.OrgConfigURL("acme"), scaleSetSpec{name: "linux", max: 1, onlineTimeout: "1s"}), map[string]*goBackend{"linux": be})
	waitListening(t, sim, "linux")
	sim.QueueJobs(1, 50*time.Millisecond, "linux")
	// the stuck runner is removed on GitHub and the backend, then replaced
	waitFor(t, sim, 20*time.Second, "a stuck registration removed", func(s actionssim.Snapshot) bool {
		return len(s.RunnersIn(actionssim.RunnerDeleted)) >= 1
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for {
		if _, _, starts := be.stats(); starts >= 2 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("stuck runner not replaced")
		case <-time.After(50 * time.Millisecond):
		}
	}
	// let the replacement run for real
	be.mu.Lock()
	be.neverOnline = false
	be.mu.Unlock()
	waitFor(t, sim, 30*time.Second, "job done", allDone(1))
	must.StrContains(t, scrape(t, r), `reason="never_online"`)
}

func TestService_Run_restartAdoptsRunners(t *testing.T) {
	sim := startSim(t, actionssim.Options{})
	be := newGoBackend()
	t.Cleanup(be.close)
	cfg := testConfig(t, sim.OrgConfigURL("acme"), scaleSetSpec{name: "linux", max: 3})
	first := startService(t, cfg, map[string]*goBackend{"linux": be})
	waitListening(t, sim, "linux")
	sim.QueueJobs(3, 2*time.Second, "linux")
	waitFor(t, sim, 20*time.Second, "3 jobs running", func(s actionssim.Snapshot) bool {
		return len(s.JobsIn(actionssim.JobRunning)) == 3
	})
	must.NoError(t, first.shutdown(t))

	// the backend still holds the 3 busy runners; a new process adopts them
	_, _, startsBefore := be.stats()
	second := startService(t, cfg, map[string]*goBackend{"linux": be})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("first:\n%s\nsecond:\n%s", first.logs.String(), second.logs.String())
		}
	})
	waitFor(t, sim, 30*time.Second, "jobs done", allDone(3))
	waitFor(t, sim, 10*time.Second, "no runners left", noLiveRunners)
	_, maxHeld, starts := be.stats()
	must.Eq(t, startsBefore, starts, must.Sprint("no duplicate runners after restart"))
	must.LessEq(t, 3, maxHeld)
}

func TestService_Shutdown_removesIdleRunners(t *testing.T) {
	sim := startSim(t, actionssim.Options{})
	be := newGoBackend()
	t.Cleanup(be.close)
	r := startService(t, testConfig(t, sim.OrgConfigURL("acme"), scaleSetSpec{name: "linux", min: 2, max: 3, removeIdle: true}), map[string]*goBackend{"linux": be})
	waitFor(t, sim, 20*time.Second, "2 idle runners", func(s actionssim.Snapshot) bool {
		return len(s.RunnersIn(actionssim.RunnerIdle)) == 2
	})
	must.NoError(t, r.shutdown(t))
	must.True(t, noLiveRunners(sim.Snapshot()))
	held, _, _ := be.stats()
	must.Eq(t, 0, held)
}

func scrape(t *testing.T, r *running) string {
	t.Helper()
	addr, err := r.svc.Addr(t.Context())
	must.NoError(t, err)
	return get(t, "http://"+addr+"/metrics", http.StatusOK)
}

func get(t *testing.T, url string, wantStatus int) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	must.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	must.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	must.Eq(t, wantStatus, resp.StatusCode, must.Sprint(string(b)))
	return string(b)
}

func TestService_Handler_healthAndMetrics(t *testing.T) {
	sim := startSim(t, actionssim.Options{})
	be := newGoBackend()
	t.Cleanup(be.close)
	r := startService(t, testConfig(t, sim.OrgConfigURL("acme"), scaleSetSpec{name: "linux", max: 2}), map[string]*goBackend{"linux": be})
	addr, err := r.svc.Addr(t.Context())
	must.NoError(t, err)
	get(t, "http://"+addr+"/healthz", http.StatusOK)
	waitListening(t, sim, "linux")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for !r.svc.Status()[0].Listening {
		select {
		case <-ctx.Done():
			t.Fatal("not ready")
		case <-time.After(20 * time.Millisecond):
		}
	}
	get(t, "http://"+addr+"/readyz", http.StatusOK)
	sim.QueueJobs(2, 50*time.Millisecond, "linux")
	waitFor(t, sim, 20*time.Second, "jobs done", allDone(2))
	ctx2, cancel2 := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel2()
	for {
		body := scrape(t, r)
		if strings.Contains(body, `gha_completed_jobs_total{`) && strings.Contains(body, `job_result="succeeded"`) {
			for _, want := range []string{"gha_assigned_jobs{", "gha_desired_runners{", "gha_started_jobs_total{", "nomad_gha_scaleset_runner_start_duration_seconds_count", "nomad_gha_scaleset_runners{"} {
				must.StrContains(t, body, want)
			}
			must.False(t, strings.Contains(body, testPAT))
			break
		}
		select {
		case <-ctx2.Done():
			t.Fatalf("metrics never showed completed jobs:\n%s", body)
		case <-time.After(50 * time.Millisecond):
		}
	}
	_ = r.shutdown(t)
}

func TestCanceledAsDebug(t *testing.T) {
	var buf testutil.SyncBuffer
	l := slog.New(canceledAsDebug{slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})}).With("component", "http")
	l.Error("request failed", "error", errors.New("Get x: context canceled"))
	l.Error("request failed", "error", errors.New(`Get "x": interrupt signal received`))
	l.Error("request failed", "error", errors.New(`Get "x": terminated signal received`))
	l.Error("request failed", "error", errors.New("502 bad gateway"))
	out := buf.String()
	must.StrNotContains(t, out, "context canceled")
	must.StrNotContains(t, out, "signal received")
	must.StrContains(t, out, "502 bad gateway")
}

func TestBackoff_Delay(t *testing.T) {
	b := Backoff{Min: time.Second, Max: 5 * time.Second}
	var got []time.Duration
	for i := 1; i <= 5; i++ {
		got = append(got, b.Delay(i))
	}
	must.Eq(t, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}, got)
}

func TestErrorClassification(t *testing.T) {
	cases := []struct {
		name           string
		err            error
		conflict, gone bool
	}{
		{"409 conflict", errors.New(`request POST x failed(status="409 Conflict"): GitHub.Actions.Runtime.WebApi.RunnerScaleSetSessionConflictException: busy`), true, false},
		{"refresh failed", errors.New("failed to get message: failed to refresh message session: 404"), false, true},
		{"token expired twice", fmt.Errorf("x: %w", scaleset.MessageQueueTokenExpiredError), false, true},
		{"5xx exhausted", errors.New("failed to get message: giving up after 5 attempt(s)"), false, false},
		{"nil", nil, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			must.Eq(t, tc.conflict, isSessionConflict(tc.err))
			must.Eq(t, tc.gone, sessionLost(tc.err))
		})
	}
}
