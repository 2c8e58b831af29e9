// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

import (
	"context"
	"errors"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
	"github.com/tartnomad/nomad-driver-tart/tart"
)

// exitPollInterval is how often a recovered task (whose supervisor is not
// our child) is checked for an exit status.
const exitPollInterval = 100 * time.Millisecond

// taskHandle is one task this process manages. mu guards every field below
// it; id, state and cfg never change after creation.
type taskHandle struct {
	id     string
	state  *TaskState
	cfg    *sdk.TaskConfig
	logger hclog.Logger

	// exited is closed once result is set.
	exited chan struct{}

	mu        sync.Mutex
	vm        *tart.VM // nil when the VM's slot is not ours to release
	result    *sdk.ExitResult
	completed time.Time
	destroyed bool
}

func newTaskHandle(state *TaskState, cfg *sdk.TaskConfig, vm *tart.VM, logger hclog.Logger) *taskHandle {
	return &taskHandle{id: state.TaskID, state: state, cfg: cfg, vm: vm, logger: logger, exited: make(chan struct{})}
}

// watchChild waits for a supervisor this process started (its parent), then
// reads the exit status. The goroutine is owned by the child process.
func (h *taskHandle) watchChild(proc *os.Process) {
	_, _ = proc.Wait()
	h.finishFromDir()
}

// watchRecovered polls the state dir of a supervisor started by an earlier
// plugin process until it records an exit or dies. The goroutine ends when
// the task exits (however it is finished) or stop is closed (driver
// shutdown).
func (h *taskHandle) watchRecovered(stop <-chan struct{}) {
	t := time.NewTicker(exitPollInterval)
	defer t.Stop()
	for {
		if _, ok, _ := readExitStatus(h.state.StateDir); ok || !supervisorAlive(h.state.StateDir) {
			h.finishFromDir()
			return
		}
		select {
		case <-stop:
			return
		case <-h.exited:
			return
		case <-t.C:
		}
	}
}

// finishFromDir records the exit status the supervisor wrote, or an error
// if it died without writing one.
func (h *taskHandle) finishFromDir() {
	st, ok, err := readExitStatus(h.state.StateDir)
	switch {
	case err != nil:
		h.finish(&sdk.ExitResult{ExitCode: -1, Err: err})
	case !ok:
		h.finish(&sdk.ExitResult{ExitCode: -1, Err: errors.New("task supervisor died without recording an exit status")})
	default:
		r := &sdk.ExitResult{ExitCode: st.ExitCode, Signal: st.Signal}
		if st.Err != "" {
			r.Err = errors.New(st.Err)
		}
		h.finish(r)
	}
}

// finish sets the result once.
func (h *taskHandle) finish(r *sdk.ExitResult) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.result != nil {
		return
	}
	h.result = r
	h.completed = time.Now()
	close(h.exited)
	h.logger.Info("task exited", "exit_code", r.ExitCode, "signal", r.Signal, "error", r.Err)
}

func (h *taskHandle) isRunning() bool {
	select {
	case <-h.exited:
		return false
	default:
		return true
	}
}

func (h *taskHandle) exitResult() *sdk.ExitResult {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.result == nil {
		return nil
	}
	r := *h.result
	return &r
}

// wait blocks until the task exits or ctx ends.
func (h *taskHandle) wait(ctx context.Context) error {
	select {
	case <-h.exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// killSupervisor makes the supervisor kill tart exec (which cancels the
// guest command); it is only sent while the supervisor holds its lock, so
// a reused PID is never signalled.
func (h *taskHandle) killSupervisor() {
	if h.state.SupervisorPID <= 0 || !supervisorAlive(h.state.StateDir) {
		return
	}
	if err := syscall.Kill(h.state.SupervisorPID, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		h.logger.Warn("failed to signal task supervisor", "pid", h.state.SupervisorPID, "error", err)
	}
}

func (h *taskHandle) status() *sdk.TaskStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := &sdk.TaskStatus{
		ID: h.id, Name: h.state.TaskName, State: sdk.TaskStateRunning, StartedAt: h.state.StartedAt,
		DriverAttributes: map[string]string{"vm_name": h.state.VMName, "slot": strconv.Itoa(h.state.Slot), "warm": strconv.FormatBool(h.state.Warm)},
	}
	if h.result != nil {
		r := *h.result
		st.State, st.CompletedAt, st.ExitResult = sdk.TaskStateExited, h.completed, &r
	}
	return st
}
