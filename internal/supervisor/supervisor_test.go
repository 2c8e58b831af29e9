// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package supervisor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
)

func TestMain(m *testing.M) {
	MainIfInvoked()
	if os.Getenv("SUPERVISOR_TEST_HELPER") == "start-and-hang" {
		helperStartAndHang()
	}
	code := m.Run()
	testutil.CleanupBuilds()
	os.Exit(code)
}

// fakeTart is a `tart` that runs `exec -i <vm> argv...` on the host.
const fakeTart = `#!/bin/sh
[ "$1" = exec ] || exit 64
shift; [ "$1" = -i ] && shift
shift # vm
exec "$@"
`

func newSpec(t *testing.T, argv ...string) (string, Spec) {
	t.Helper()
	dir := t.TempDir()
	tartPath := filepath.Join(dir, "tart")
	must.NoError(t, os.WriteFile(tartPath, []byte(fakeTart), 0o755))
	out := filepath.Join(dir, "out.log")
	return filepath.Join(dir, "state"), Spec{TartPath: tartPath, VM: "vm1", Argv: argv,
		StdoutPath: out, StderrPath: out, CreateOutput: true}
}

func start(t *testing.T, dir string, spec Spec, stdin string) *Handle {
	t.Helper()
	h, err := Start(t.Context(), StartOptions{Dir: dir, Spec: spec, Stdin: []byte(stdin)})
	must.NoError(t, err)
	t.Cleanup(func() {
		_ = Kill(dir)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = h.Wait(ctx)
	})
	return h
}

func TestStart_recordsExitAndForwardsStdin(t *testing.T) {
	dir, spec := newSpec(t, "/bin/sh", "-c", "cat; echo bye >&2; exit 7")
	h := start(t, dir, spec, "secret-input\n")
	st, err := h.Wait(t.Context())
	must.NoError(t, err)
	must.NotNil(t, st.Exit)
	must.Eq(t, 7, st.Exit.ExitCode)
	must.False(t, st.Exit.Killed)
	out, err := os.ReadFile(spec.StdoutPath)
	must.NoError(t, err)
	must.Eq(t, "secret-input\nbye\n", string(out))
	// The input never touches the state dir.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue // the control FIFO
		}
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		must.StrNotContains(t, string(b), "secret-input")
	}
	must.ErrorIs(t, Kill(dir), ErrNotRunning)
}

func TestKill_adoptedSupervisor(t *testing.T) {
	dir, spec := newSpec(t, "/bin/sh", "-c", "echo started; exec sleep 60")
	start(t, dir, spec, "")
	// Another process (here: a fresh Handle) adopts it by directory only.
	a := Adopt(dir)
	st, err := Check(dir)
	must.NoError(t, err)
	must.True(t, st.Running)
	must.NoError(t, Kill(dir))
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	st, err = a.Wait(ctx)
	must.NoError(t, err)
	must.NotNil(t, st.Exit)
	must.True(t, st.Exit.Killed)
	must.Eq(t, int(syscall.SIGKILL), st.Exit.Signal)
	must.False(t, Alive(dir))
}

func TestSignal_reachesTheCommand(t *testing.T) {
	dir, spec := newSpec(t, "/bin/sh", "-c", "trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.05; done")
	h := start(t, dir, spec, "")
	deadline := time.Now().Add(20 * time.Second)
	for b, _ := os.ReadFile(spec.StdoutPath); !strings.Contains(string(b), "ready"); b, _ = os.ReadFile(spec.StdoutPath) {
		must.True(t, time.Now().Before(deadline), must.Sprint("command never started"))
		time.Sleep(10 * time.Millisecond)
	}
	must.NoError(t, Signal(dir, syscall.SIGTERM))
	st, err := h.Wait(t.Context())
	must.NoError(t, err)
	must.Eq(t, 3, st.Exit.ExitCode)
}

// TestAlive_probeNeverDisturbsAStart fails with a probe that takes the lock
// (the driver's earlier flock probe): a start that coincides with it finds
// the lock held and gives up.
func TestAlive_probeNeverDisturbsAStart(t *testing.T) {
	const n = 8
	dirs := make([]string, n)
	specs := make([]Spec, n)
	for i := range n {
		dirs[i], specs[i] = newSpec(t, "true")
		// The lock file exists already, as in a directory reused after a
		// failed start, so every probe reaches the lock.
		must.NoError(t, os.MkdirAll(dirs[i], 0o700))
		must.NoError(t, os.WriteFile(filepath.Join(dirs[i], lockFile), nil, 0o600))
	}
	stop := make(chan struct{})
	var probes sync.WaitGroup
	for i := range 4 * n {
		i := i % n
		probes.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					Alive(dirs[i])
				}
			}
		})
	}
	var starts sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		starts.Go(func() {
			h, err := Start(t.Context(), StartOptions{Dir: dirs[i], Spec: specs[i]})
			if err == nil {
				_, err = h.Wait(t.Context())
			}
			errs[i] = err
		})
	}
	starts.Wait()
	close(stop)
	probes.Wait()
	for i, err := range errs {
		must.NoError(t, err, must.Sprintf("start %d", i))
		st, err := Check(dirs[i])
		must.NoError(t, err)
		must.Eq(t, 0, st.Exit.ExitCode)
	}
}

func TestCheck_lostSupervisor(t *testing.T) {
	dir, spec := newSpec(t, "/bin/sh", "-c", "exec sleep 60")
	h := start(t, dir, spec, "")
	// SIGKILL the supervisor itself (our child, not reusable): the command
	// is ended separately, the directory reads as lost.
	must.NoError(t, syscall.Kill(h.PID, syscall.SIGKILL))
	<-h.Done()
	_ = syscall.Kill(-h.ExecPID, syscall.SIGKILL)
	st, err := Check(dir)
	must.NoError(t, err)
	must.True(t, st.Lost())
	must.ErrorIs(t, Kill(dir), ErrNotRunning)
}

func TestStart_secondSupervisorOnADirFails(t *testing.T) {
	dir, spec := newSpec(t, "/bin/sh", "-c", "exec sleep 60")
	start(t, dir, spec, "")
	_, err := Start(t.Context(), StartOptions{Dir: dir, Spec: spec})
	must.ErrorContains(t, err, "another supervisor holds")
	st, err := Check(dir)
	must.NoError(t, err)
	must.True(t, st.Running, must.Sprint("the first supervisor's directory is untouched"))
}
