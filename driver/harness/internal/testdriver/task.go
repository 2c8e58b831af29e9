// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package testdriver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
)

// task is one task this process manages. done closes once the result is in.
type task struct {
	cfg   *sdk.TaskConfig
	state driverState
	done  chan struct{}
	once  sync.Once

	mu       sync.Mutex
	result   *sdk.ExitResult
	finished time.Time
}

func newTask(cfg *sdk.TaskConfig, st driverState) *task {
	return &task{cfg: cfg, state: st, done: make(chan struct{})}
}

func (t *task) finish(res *sdk.ExitResult) {
	t.once.Do(func() {
		t.mu.Lock()
		t.result, t.finished = res, time.Now()
		t.mu.Unlock()
		close(t.done)
	})
}

func (t *task) exited() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

func (t *task) exitResult() *sdk.ExitResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.result
}

func (t *task) completedAt() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.finished
}

// childPID is the command's PID as the wrapper recorded it (0 if unknown).
func (t *task) childPID() int {
	data, err := os.ReadFile(filepath.Join(t.state.StateDir, childPIDFile))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

// signal delivers sig to the command: through the wrapper, which queues
// signals that arrive before the command has started, except for SIGKILL
// and SIGSTOP, which cannot be caught and go to the command's PID (or, when
// that is not known yet, to the task's whole session).
func (t *task) signal(sig syscall.Signal) error {
	if t.exited() {
		return nil
	}
	pid := t.state.WrapperPID
	if sig == syscall.SIGKILL || sig == syscall.SIGSTOP {
		if pid = t.childPID(); pid == 0 {
			pid = -t.state.WrapperPID
		}
	}
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("failed to send %s to pid %d: %w", sig, pid, err)
	}
	return nil
}

func (t *task) execCommand(ctx context.Context, command []string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, command[0], command[1:]...)
	cmd.Dir = t.cfg.TaskDir()
	for k, v := range t.cfg.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return cmd
}

// parseSignal maps names like "SIGTERM" (or "TERM") to signals.
func parseSignal(name string) (syscall.Signal, error) {
	signals := map[string]syscall.Signal{
		"SIGHUP": syscall.SIGHUP, "SIGINT": syscall.SIGINT, "SIGQUIT": syscall.SIGQUIT,
		"SIGKILL": syscall.SIGKILL, "SIGUSR1": syscall.SIGUSR1, "SIGUSR2": syscall.SIGUSR2,
		"SIGTERM": syscall.SIGTERM, "SIGCONT": syscall.SIGCONT, "SIGSTOP": syscall.SIGSTOP,
	}
	n := strings.ToUpper(name)
	if !strings.HasPrefix(n, "SIG") {
		n = "SIG" + n
	}
	sig, ok := signals[n]
	if !ok {
		return 0, fmt.Errorf("unknown signal %q", name)
	}
	return sig, nil
}

// rssBytes reads the resident set size of pid from procfs.
func rssBytes(pid int) (uint64, bool) {
	if pid == 0 {
		return 0, false
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(data))
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * uint64(os.Getpagesize()), true
}

// limitedBuffer keeps the last 4 KiB written, like Nomad's own drivers do
// for ExecTask output.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	n, _ := b.Buffer.Write(p)
	if over := b.Len() - 4096; over > 0 {
		b.Next(over)
	}
	return n, nil
}
