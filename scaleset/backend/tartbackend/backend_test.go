// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tartbackend

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/supervisor"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
	"github.com/tartnomad/nomad-driver-tart/sim/faketart"
	"github.com/tartnomad/nomad-driver-tart/tart"
)

func TestMain(m *testing.M) {
	// The tart backend re-executes this test binary as the runner
	// command's supervisor.
	supervisor.MainIfInvoked()
	code := m.Run()
	testutil.CleanupBuilds()
	os.Exit(code)
}

const testImage = "ghcr.io/test/runner-image:1"

// fakeRunScript is the image's ~/actions-runner/run.sh inside faketart's
// guest: it records the JIT config it got through the runner's input
// variable in $OUT/<jit>, then exits 3 if the JIT mentions "fail", waits
// if it mentions "hang", else exits 0.
const fakeRunScript = `#!/bin/sh
printf '%s' "$ACTIONS_RUNNER_INPUT_JITCONFIG" > "OUTDIR/$ACTIONS_RUNNER_INPUT_JITCONFIG"
case "$ACTIONS_RUNNER_INPUT_JITCONFIG" in
*fail*) exit 3 ;;
*hang*) exec sleep 60 ;;
esac
exit 0
`

type env struct {
	cfg     Config
	out     string // where run.sh writes the JIT configs it got
	tartLog string // FAKETART_LOG: every faketart argv
	logs    *testutil.SyncBuffer
	logger  *slog.Logger
	home    string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	bin := testutil.BuildBinary(t, "./sim/cmd/faketart")
	e := &env{out: t.TempDir(), home: t.TempDir(), logs: &testutil.SyncBuffer{}}
	registry := t.TempDir()
	e.tartLog = filepath.Join(t.TempDir(), "faketart.log")
	cfg := faketart.VMConfig{Version: 1, OS: "darwin", Arch: "arm64", CPUCountMin: 2, CPUCount: 4,
		MemorySizeMin: 4 << 30, MemorySize: 8 << 30, MACAddress: "7e:00:00:00:00:01",
		Display: faketart.Display{Width: 1024, Height: 768}, DiskFormat: "raw"}
	must.NoError(t, faketart.SeedImage(registry, testImage, cfg, faketart.ImageOptions{DiskSizeGB: 1, CompressedSize: 1_000_000}))
	r, _ := strings.CutSuffix(testImage, ":1")
	runner := filepath.Join(registry, filepath.FromSlash(r), "1", "guest", "actions-runner")
	must.NoError(t, os.MkdirAll(runner, 0o755))
	must.NoError(t, os.WriteFile(filepath.Join(runner, "run.sh"), []byte(strings.ReplaceAll(fakeRunScript, "OUTDIR", e.out)), 0o755))
	t.Setenv("FAKETART_REGISTRY", registry)
	t.Setenv("FAKETART_BOOT_DELAY", "20ms")
	t.Setenv("FAKETART_SHUTDOWN_DELAY", "10ms")
	t.Setenv("FAKETART_STOP_POLL_INTERVAL", "10ms")
	t.Setenv("FAKETART_LOG", e.tartLog)
	e.cfg = Config{TartPath: bin, TartHome: e.home, Image: testImage, StopTimeout: "5s", StartTimeout: "30s", MACSeed: "test"}
	e.logger = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		// Nothing may be left in TART_HOME.
		entries, _ := os.ReadDir(filepath.Join(e.home, "vms"))
		for _, en := range entries {
			t.Errorf("vm %s left behind", en.Name())
			_ = tart.NewClient(tart.WithBinary(bin), tart.WithHome(e.home)).Destroy(context.Background(), en.Name(), 0)
		}
	})
	return e
}

func (e *env) newBackend(t *testing.T, mod func(*Config)) *Backend {
	t.Helper()
	cfg := e.cfg
	if mod != nil {
		mod(&cfg)
	}
	b, err := New(cfg, "org/repo macos", e.logger, WithPoolOptions(func(o *tart.PoolOptions) {
		o.ReadyInterval = 20 * time.Millisecond
		o.BackoffMin = 50 * time.Millisecond
	}))
	must.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		b.Shutdown(ctx)
	})
	must.NoError(t, b.StartPool(t.Context()))
	return b
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func runnerState(t *testing.T, b *Backend, id string) backend.Runner {
	t.Helper()
	rs, err := b.ListRunners(t.Context())
	must.NoError(t, err)
	for _, r := range rs {
		if r.ResourceID == id {
			return r
		}
	}
	return backend.Runner{}
}

func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				t.Errorf("goroutines leaked: %d > %d\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func TestBackend_StartRunner_coldStartJITOnStdin(t *testing.T) {
	checkGoroutines(t)
	e := newEnv(t)
	b := e.newBackend(t, nil)
	must.Eq(t, "tart", b.Name())

	const jit = "jit-secret-r1"
	id, err := b.StartRunner(t.Context(), "runner-1", jit)
	must.NoError(t, err)
	must.Eq(t, "ntart-task-org-repo-macos-runner-1", id)
	must.Eq(t, backend.WarmPoolStats{ColdStarts: 1}, b.WarmPoolStats())

	waitFor(t, "runner to exit", func() bool { return runnerState(t, b, id).State == backend.StateExited })
	got, err := os.ReadFile(filepath.Join(e.out, jit))
	must.NoError(t, err)
	must.Eq(t, jit, string(got))
	r := runnerState(t, b, id)
	must.Eq(t, "runner-1", r.Name)
	must.False(t, r.CreatedAt.IsZero())

	must.NoError(t, b.RemoveRunner(t.Context(), id))
	rs, _ := b.ListRunners(t.Context())
	must.SliceEmpty(t, rs)
	_, err = os.Stat(filepath.Join(e.home, "vms", id))
	must.True(t, os.IsNotExist(err))
	must.NoError(t, b.RemoveRunner(t.Context(), id), must.Sprint("removing twice is fine"))

	// The JIT config went through stdin only: never in a tart argv, never
	// in our logs.
	argv, err := os.ReadFile(e.tartLog)
	must.NoError(t, err)
	must.StrContains(t, string(argv), `"exec","-i","`+id+`"`)
	must.StrNotContains(t, string(argv), jit)
	must.StrNotContains(t, e.logs.String(), jit)
	must.StrContains(t, e.logs.String(), "runner_name=runner-1")
}

func TestBackend_StartRunner_warmPoolAndFailure(t *testing.T) {
	checkGoroutines(t)
	e := newEnv(t)
	b := e.newBackend(t, func(c *Config) { c.PoolSize = 1; c.CPU = 4; c.Memory = 8192 })
	waitFor(t, "warm vm", func() bool { return b.pool.Stats()[0].Ready == 1 })
	must.Eq(t, backend.WarmPoolStats{Size: 1, Ready: 1}, b.WarmPoolStats())

	id, err := b.StartRunner(t.Context(), "runner-2", "jit-fail-r2")
	must.NoError(t, err)
	must.StrHasPrefix(t, "ntart-pool-org-repo-macos-", id, must.Sprint("claimed the warm vm"))
	st := b.WarmPoolStats()
	must.Eq(t, uint64(1), st.WarmStarts)
	must.Eq(t, uint64(0), st.ColdStarts)
	waitFor(t, "runner to fail", func() bool { return runnerState(t, b, id).State == backend.StateFailed })
	must.Eq(t, "runner command exited with code 3", runnerState(t, b, id).Reason)
	must.NoError(t, b.RemoveRunner(t.Context(), id))
}

func TestBackend_RemoveRunner_stopsRunningRunner(t *testing.T) {
	checkGoroutines(t)
	e := newEnv(t)
	b := e.newBackend(t, nil)
	id, err := b.StartRunner(t.Context(), "runner-3", "jit-hang-r3")
	must.NoError(t, err)
	waitFor(t, "runner to start", func() bool {
		_, err := os.Stat(filepath.Join(e.out, "jit-hang-r3"))
		return err == nil
	})
	must.Eq(t, backend.StateRunning, runnerState(t, b, id).State)
	must.NoError(t, b.RemoveRunner(t.Context(), id))
	must.Eq(t, 2, b.pool.Slots().Available())
}

func TestBackend_Shutdown_leavesRunningRunnersForTheNextProcess(t *testing.T) {
	checkGoroutines(t)
	e := newEnv(t)
	t.Setenv("FAKETART_VM_LIMIT", "3")
	b := e.newBackend(t, func(c *Config) { c.PoolSize = 1; c.MaxVMs = 3 })
	busy, err := b.StartIdentified(t.Context(), backend.Identity{Name: "runner-busy", RunnerID: 31}, "jit-hang-r4")
	must.NoError(t, err)
	done, err := b.StartRunner(t.Context(), "runner-done", "jit-r5")
	must.NoError(t, err)
	waitFor(t, "runner-done to exit", func() bool { return runnerState(t, b, done).State == backend.StateExited })
	waitFor(t, "warm vm", func() bool { return b.pool.Stats()[0].Ready == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b.Shutdown(ctx)
	_, err = b.StartRunner(t.Context(), "late", "jit")
	must.Error(t, err)

	// Only the busy runner's VM is left: the warm VM and the ended runner
	// are gone.
	entries, _ := os.ReadDir(filepath.Join(e.home, "vms"))
	must.Len(t, 1, entries)
	must.Eq(t, busy, entries[0].Name())

	// The next process recovers it, reports it running, and removes it.
	b2 := e.newBackend(t, nil)
	rs, err := b2.ListRunners(t.Context())
	must.NoError(t, err)
	must.Len(t, 1, rs)
	must.Eq(t, "runner-busy", rs[0].Name)
	must.Eq(t, 31, rs[0].RunnerID, must.Sprint("the runner ID from the VM's runner record"))
	must.Eq(t, busy, rs[0].ResourceID)
	must.Eq(t, backend.StateRunning, rs[0].State)
	must.NoError(t, b2.RemoveRunner(t.Context(), busy))
	rs, _ = b2.ListRunners(t.Context())
	must.SliceEmpty(t, rs)
}

func TestBackend_recoveredRunnerThatEnded(t *testing.T) {
	checkGoroutines(t)
	e := newEnv(t)
	b := e.newBackend(t, nil)
	id, err := b.StartRunner(t.Context(), "runner-6", "jit-fail-r6")
	must.NoError(t, err)
	waitFor(t, "runner to fail", func() bool { return runnerState(t, b, id).State == backend.StateFailed })
	// Simulate a crash of the service: forget the runner without removing it.
	b.mu.Lock()
	delete(b.runners, id)
	b.mu.Unlock()

	b2 := e.newBackend(t, nil)
	r := runnerState(t, b2, id)
	must.Eq(t, "runner-6", r.Name)
	must.Eq(t, backend.StateFailed, r.State)
	must.Eq(t, "runner command exited with code 3", r.Reason)
	must.NoError(t, b2.RemoveRunner(t.Context(), id))
	must.Eq(t, 2, b2.pool.Slots().Available())
}

func TestBackend_New_deletesLeftoverRunnerVMs(t *testing.T) {
	checkGoroutines(t)
	e := newEnv(t)
	cfg := faketart.VMConfig{Version: 1, OS: "darwin", Arch: "arm64", CPUCount: 4, MemorySize: 8 << 30,
		MACAddress: "2a:00:00:00:00:09", Display: faketart.Display{Width: 1024, Height: 768}, DiskFormat: "raw"}
	leftover := tart.TaskVMName("org-repo-macos-old-runner")
	foreign := "someone-elses-vm"
	otherSet := tart.TaskVMName("other-set-runner")
	for _, n := range []string{leftover, foreign, otherSet} {
		must.NoError(t, faketart.SeedVM(e.home, n, cfg, 1))
	}
	b := e.newBackend(t, nil)
	// its runner may hold a registration: reported failed until removed
	rs, err := b.ListRunners(t.Context())
	must.NoError(t, err)
	must.Len(t, 1, rs)
	must.Eq(t, "old-runner", rs[0].Name)
	must.Eq(t, leftover, rs[0].ResourceID)
	must.Eq(t, backend.StateFailed, rs[0].State)
	must.NoError(t, b.RemoveRunner(t.Context(), leftover))
	rs, _ = b.ListRunners(t.Context())
	must.SliceEmpty(t, rs)
	entries, _ := os.ReadDir(filepath.Join(e.home, "vms"))
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
	}
	must.Eq(t, []string{otherSet, foreign}, names)
	c := tart.NewClient(tart.WithBinary(e.cfg.TartPath), tart.WithHome(e.home))
	must.NoError(t, c.Delete(t.Context(), foreign, otherSet))
}

func TestBackend_StartRunner_tartMissingFailsFast(t *testing.T) {
	checkGoroutines(t)
	cfg := Config{TartPath: filepath.Join(t.TempDir(), "no-tart"), TartHome: t.TempDir(), Image: "img"}
	b, err := New(cfg, "s", nil)
	must.NoError(t, err)
	t.Cleanup(func() { b.Shutdown(context.Background()) })
	waitFor(t, "first start attempt to fail", func() bool { return b.StartPool(context.Background()) != nil })
	_, err = b.StartRunner(t.Context(), "r", "jit-x")
	must.ErrorContains(t, err, "tart backend not started yet")
	must.ErrorContains(t, err, "no-tart")
	must.StrNotContains(t, err.Error(), "jit-x")
}

// TestBackend_StartRunner_resumeMode: mode = "resume" keeps a suspended
// template per slot; a runner starts in a resumed clone and StartPath (the
// metrics label) says so. Shutdown deletes the templates.
func TestBackend_StartRunner_resumeMode(t *testing.T) {
	checkGoroutines(t)
	e := newEnv(t)
	b := e.newBackend(t, func(c *Config) { c.Mode = "resume"; c.MaxVMs = 1; c.ResumeCommand = []string{"true"} })
	waitFor(t, "template", func() bool { return b.pool.Stats()[0].TemplatesReady == 1 })

	id, err := b.StartRunner(t.Context(), "runner-3", "jit-ok-r3")
	must.NoError(t, err)
	must.Eq(t, "resumed", b.StartPath(id))
	st := b.WarmPoolStats()
	must.Eq(t, uint64(1), st.ResumedStarts)
	must.Eq(t, uint64(0), st.ColdStarts)
	must.Eq(t, 1, st.TemplatesReady)
	waitFor(t, "runner to finish", func() bool { return runnerState(t, b, id).State == backend.StateExited })
	b2, err := os.ReadFile(filepath.Join(e.out, "jit-ok-r3"))
	must.NoError(t, err)
	must.Eq(t, "jit-ok-r3", string(b2))
	must.NoError(t, b.RemoveRunner(t.Context(), id))
	must.Eq(t, "", b.StartPath(id))
}
