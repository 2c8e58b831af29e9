// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
	"github.com/tartnomad/nomad-driver-tart/internal/supervisor"
	"github.com/tartnomad/nomad-driver-tart/tart"
)

// taskHandle is one task this process manages. mu guards every field below
// it; id, state and cfg never change after creation.
type taskHandle struct {
	id     string
	state  *taskState
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

func newTaskHandle(state *taskState, cfg *sdk.TaskConfig, vm *tart.VM, logger hclog.Logger) *taskHandle {
	return &taskHandle{id: state.TaskID, state: state, cfg: cfg, vm: vm, logger: logger, exited: make(chan struct{})}
}

// watch waits for the task's supervisor (started by this process or by an
// earlier one) to end, then records its exit status. The goroutine ends
// when the task exits (however it is finished) or stop is closed (driver
// shutdown).
func (h *taskHandle) watch(sup *supervisor.Handle, stop <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // ends with watch
		select {
		case <-stop:
		case <-h.exited:
		case <-ctx.Done():
		}
		cancel()
	}()
	st, err := sup.Wait(ctx)
	if ctx.Err() != nil {
		return
	}
	h.finishFrom(st, err)
}

// finishFrom records the exit status the supervisor wrote, or an error if
// it died without writing one.
func (h *taskHandle) finishFrom(st supervisor.Status, err error) {
	switch {
	case err != nil:
		h.finish(&sdk.ExitResult{ExitCode: -1, Err: err})
	case st.Exit == nil:
		h.finish(&sdk.ExitResult{ExitCode: -1, Err: errors.New("task supervisor died without recording an exit status")})
	default:
		r := &sdk.ExitResult{ExitCode: st.Exit.ExitCode, Signal: st.Exit.Signal}
		if st.Exit.Err != "" {
			r.Err = errors.New(st.Exit.Err)
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
// guest command). The request goes through the supervisor's control FIFO,
// so it reaches that supervisor or nothing, never a reused PID.
func (h *taskHandle) killSupervisor() {
	if err := supervisor.Kill(h.state.StateDir); err != nil && !errors.Is(err, supervisor.ErrNotRunning) {
		h.logger.Warn("failed to tell the task supervisor to kill", "error", err)
	}
}

func (h *taskHandle) status() *sdk.TaskStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := &sdk.TaskStatus{
		ID: h.id, Name: h.state.TaskName, State: sdk.TaskStateRunning, StartedAt: h.state.StartedAt,
		DriverAttributes: map[string]string{"vm_name": h.state.VMName, "slot": strconv.Itoa(h.state.Slot), "warm": strconv.FormatBool(h.state.Warm), "start_path": h.state.StartPath},
	}
	if h.result != nil {
		r := *h.result
		st.State, st.CompletedAt, st.ExitResult = sdk.TaskStateExited, h.completed, &r
	}
	return st
}
