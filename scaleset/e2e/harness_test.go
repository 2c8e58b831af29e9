// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/dockerexec"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/dockerbackend"
	"github.com/tartnomad/nomad-driver-tart/sim/actionssim"
	"github.com/tartnomad/nomad-driver-tart/sim/demo"
)

const testPAT = "ghp_E2ESECRETPAT_0123456789abcdef"

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.CleanupBuilds()
	os.Exit(code)
}

func randomID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// backendEnv is one backend under test: its HCL block and how to count
// what it still holds.
type backendEnv struct {
	kind string
	// block renders the backend block; command overrides the runner
	// command (nil: the fake runner).
	block     func(command []string) string
	leftovers func(t *testing.T) int
}

func dockerEnv(t *testing.T) backendEnv {
	t.Helper()
	cli := testutil.DockerClient(t)
	fakerunner := testutil.BuildBinary(t, "./sim/cmd/fakerunner")
	ref := "nomad-gha-scaleset-e2e-runner:" + randomID()
	must.NoError(t, demo.ImportRunnerImage(t.Context(), cli, fakerunner, ref))
	t.Cleanup(func() { testutil.RemoveImage(t, cli, ref) })
	instance := "e2e-" + randomID()
	cfg := dockerbackend.Config{Image: ref, PullPolicy: "never", InstanceID: instance, NetworkMode: "host",
		JITConfigDelivery: "env", Command: []string{"/bin/fakerunner"}}
	removeDockerLeftovers(t, cfg)
	return backendEnv{
		kind: "docker",
		block: func(command []string) string {
			network := "host"
			if command == nil {
				command = []string{"/bin/fakerunner", "--connect-timeout", "30s"}
			} else {
				network = "none"
			}
			return fmt.Sprintf(`docker {
    image               = %q
    pull_policy         = "never"
    command             = %s
    network_mode        = %q
    jit_config_delivery = "env"
    instance_id         = %q
  }`, ref, hclList(command), network, instance)
		},
		leftovers: func(t *testing.T) int { return len(dockerRunners(t, cfg)) },
	}
}

// dockerRunners lists the containers of the env's instance, whatever
// scale set they belong to (a backend lists one scale set's only: the
// name it was built with, "e2e", matched none of the tests' scale sets, so
// these counts were always 0).
func dockerRunners(t *testing.T, cfg dockerbackend.Config) []string {
	t.Helper()
	var names []string
	for _, c := range testutil.ContainersWithLabels(t, testutil.DockerClient(t), map[string]string{dockerexec.LabelInstance: cfg.InstanceID}) {
		names = append(names, c.Labels[dockerexec.LabelRunner])
	}
	return names
}

func removeDockerLeftovers(t *testing.T, cfg dockerbackend.Config) {
	testutil.RemoveContainersOnCleanup(t, testutil.DockerClient(t), map[string]string{dockerexec.LabelInstance: cfg.InstanceID})
}

func tartEnv(t *testing.T) backendEnv {
	t.Helper()
	faketart := testutil.BuildBinary(t, "./sim/cmd/faketart")
	fakerunner := testutil.BuildBinary(t, "./sim/cmd/fakerunner")
	home := filepath.Join(t.TempDir(), "tart-home")
	must.NoError(t, os.MkdirAll(home, 0o755))
	cmd := exec.Command(faketart, "create", "--linux", "e2e-base")
	cmd.Env = append(os.Environ(), "TART_HOME="+home)
	out, err := cmd.CombinedOutput()
	must.NoError(t, err, must.Sprint(string(out)))
	t.Cleanup(func() { stopTartVMs(faketart, home) })
	return backendEnv{
		kind: "tart",
		block: func(command []string) string {
			if command == nil {
				command = []string{fakerunner, "--jitconfig", "-", "--connect-timeout", "30s"}
			}
			return fmt.Sprintf(`tart {
    tart_path      = %q
    tart_home      = %q
    image          = "e2e-base"
    max_vms        = 14
    runner_command = %s
    start_timeout  = "1m"
    stop_timeout   = "2s"
    mac_seed       = "e2e"
  }`, faketart, home, hclList(command))
		},
		leftovers: func(t *testing.T) int {
			entries, err := os.ReadDir(filepath.Join(home, "vms"))
			must.NoError(t, err)
			n := 0
			for _, e := range entries {
				if e.Name() != "e2e-base" {
					n++
				}
			}
			return n
		},
	}
}

// stopTartVMs stops every VM still running in home (a test that failed
// half-way), so no faketart process outlives the test.
func stopTartVMs(faketart, home string) {
	entries, _ := os.ReadDir(filepath.Join(home, "vms"))
	for _, e := range entries {
		cmd := exec.Command(faketart, "stop", "--timeout", "1", e.Name())
		cmd.Env = append(os.Environ(), "TART_HOME="+home)
		_ = cmd.Run()
	}
}

func hclList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprintf("%q", x)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func startSim(t *testing.T) *actionssim.Server {
	t.Helper()
	srv, err := actionssim.Start("", actionssim.Options{
		LongPollTimeout:    time.Second,
		SessionIdleTimeout: 3 * time.Second,
		RunnerPollTimeout:  2 * time.Second,
		RunnerLostTimeout:  15 * time.Second,
		AssignTimeout:      time.Minute,
	})
	must.NoError(t, err)
	t.Cleanup(srv.Close)
	return srv
}

type scaleSetHCL struct {
	name                 string
	backend              string
	min                  int
	max                  int
	onlineTimeout        string
	backendBlock         string
	removeIdleOnShutdown bool
	conflictTimeout      string // session_conflict_timeout; default 30s
}

func writeConfig(t *testing.T, url, addr string, s scaleSetHCL) string {
	t.Helper()
	if s.onlineTimeout == "" {
		s.onlineTimeout = "1m"
	}
	if s.conflictTimeout == "" {
		s.conflictTimeout = "30s"
	}
	src := fmt.Sprintf(`# Copyright (c) The nomad-driver-tart Authors
# SPDX-License-Identifier: MPL-2.0
github_config_url = %q
listen_address    = %q
shutdown_timeout  = "20s"
# one per test, shared by the test's service restarts
state_dir         = %q

# short client retries, so an outage of a few seconds ends the listener
github_http_retry_max      = 2
github_http_retry_wait_max = "500ms"

scale_set %q {
  labels                          = [%q]
  min_runners                     = %d
  max_runners                     = %d
  backend                         = %q
  reconcile_interval              = "500ms"
  runner_online_timeout           = %q
  start_backoff_min               = "200ms"
  start_backoff_max               = "2s"
  session_conflict_timeout        = %q
  remove_idle_runners_on_shutdown = %t
  %s
}
`, url, addr, filepath.Join(t.TempDir(), "state"), s.name, s.name, s.min, s.max, s.backend, s.onlineTimeout, s.conflictTimeout, s.removeIdleOnShutdown, s.backendBlock)
	p := filepath.Join(t.TempDir(), "config.hcl")
	must.NoError(t, os.WriteFile(p, []byte(src), 0o600))
	return p
}

// serviceProc is a nomad-gha-scaleset process.
type serviceProc struct {
	cmd  *exec.Cmd
	logs *testutil.SyncBuffer
	addr string
	done chan error
}

// startService starts nomad-gha-scaleset run; env adds "K=V" entries.
func startService(t *testing.T, cfgPath, addr string, env ...string) *serviceProc {
	t.Helper()
	bin := testutil.BuildBinary(t, "./cmd/nomad-gha-scaleset")
	logs := &testutil.SyncBuffer{}
	cmd := exec.Command(bin, "run", "--config", cfgPath, "--log-level", "debug")
	cmd.Env = append(append(os.Environ(), "NOMAD_GHA_SCALESET_GITHUB_TOKEN="+testPAT), env...)
	cmd.Stdout, cmd.Stderr = logs, logs
	must.NoError(t, cmd.Start())
	p := &serviceProc{cmd: cmd, logs: logs, addr: addr, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		p.signal(syscall.SIGTERM)
		var exit error
		select {
		case exit = <-p.done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			exit = <-p.done
		}
		if t.Failed() {
			t.Logf("service exit: %v; logs (%s):\n%s", exit, cfgPath, tail(logs.String(), 120))
			if dir := os.Getenv("E2E_LOG_DIR"); dir != "" {
				_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d.log", strings.ReplaceAll(t.Name(), "/", "_"), cmd.Process.Pid)), []byte(logs.String()), 0o644)
			}
		}
	})
	return p
}

func (p *serviceProc) signal(sig syscall.Signal) { _ = p.cmd.Process.Signal(sig) }

// stop sends SIGTERM and waits for a clean exit.
func (p *serviceProc) stop(t *testing.T) {
	t.Helper()
	p.signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		must.NoError(t, err, must.Sprint(tail(p.logs.String(), 40)))
	case <-time.After(40 * time.Second):
		t.Fatal("service did not stop on SIGTERM")
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *serviceProc) kill(t *testing.T) {
	t.Helper()
	p.signal(syscall.SIGKILL)
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(10 * time.Second):
		t.Fatal("service did not die on SIGKILL")
	}
}

// readyz returns the status code and body of /readyz (0 when unreachable).
func (p *serviceProc) readyz(t *testing.T) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+p.addr+"/readyz", nil)
	must.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (p *serviceProc) metrics(t *testing.T) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+p.addr+"/metrics", nil)
	must.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func waitFor(t *testing.T, sim *actionssim.Server, d time.Duration, what string, cond func(actionssim.Snapshot) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	if err := sim.WaitFor(ctx, cond); err != nil {
		snap := sim.Snapshot()
		t.Fatalf("waiting for %s: %v (jobs done %d/%d, live runners %d)", what, err,
			len(snap.JobsIn(actionssim.JobCompleted)), len(snap.Jobs), len(liveRunners(snap)))
	}
}

func liveRunners(s actionssim.Snapshot) []actionssim.Runner {
	return s.RunnersIn(actionssim.RunnerOffline, actionssim.RunnerIdle, actionssim.RunnerBusy)
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sampleHeld polls what the backend holds until the test ends and returns
// a function giving the peak seen so far.
func sampleHeld(t *testing.T, env backendEnv) func() int {
	t.Helper()
	var mu sync.Mutex
	peak := 0
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				n := env.leftovers(t)
				mu.Lock()
				peak = max(peak, n)
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}
