// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package harness

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	driverpb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/drivers"
)

// ExitResult is how a task ended, from WaitTask.
type ExitResult struct {
	ExitCode  int
	Signal    int
	OOMKilled bool
	// Err is WaitTaskResponse.err: the driver's failure text, which makes
	// the exit count as failed.
	Err string
}

// Successful reports exit code 0, no signal and no error, as Nomad does.
func (r ExitResult) Successful() bool { return r.ExitCode == 0 && r.Signal == 0 && r.Err == "" }

// driverFor returns the running instance or an error.
func (h *Harness) driverFor() (*instance, error) {
	h.mu.Lock()
	inst := h.inst
	h.mu.Unlock()
	if inst == nil || inst.dead() {
		return nil, errors.New("the plugin is not running (call Relaunch)")
	}
	return inst, nil
}

// WaitTask waits (up to the harness timeout) for the task to exit and
// returns its result. It fails t if WaitTask errors or breaks the contract.
func (h *Harness) WaitTask(t testing.TB, taskID string) ExitResult {
	t.Helper()
	ctx, cancel := h.ctx()
	defer cancel()
	res, err := h.TryWaitTask(ctx, taskID)
	if err != nil {
		t.Fatalf("harness: WaitTask %s: %v", taskID, err)
	}
	return res
}

// TryWaitTask calls WaitTask until ctx ends. Use it in a goroutine for a
// wait that runs concurrently with StopTask, as the client's does.
func (h *Harness) TryWaitTask(ctx context.Context, taskID string) (ExitResult, error) {
	inst, err := h.driverFor()
	if err != nil {
		return ExitResult{}, err
	}
	resp, err := inst.driver.WaitTask(ctx, &driverpb.WaitTaskRequest{TaskId: taskID})
	if err != nil {
		return ExitResult{}, fmt.Errorf("WaitTask: %w", err)
	}
	r := resp.GetResult()
	if r == nil {
		return ExitResult{Err: resp.GetErr()}, errors.New("driver contract: WaitTaskResponse.result is unset (crashes Nomad clients before 1.11.3/2.0.0)")
	}
	return ExitResult{ExitCode: int(r.GetExitCode()), Signal: int(r.GetSignal()), OOMKilled: r.GetOomKilled(), Err: resp.GetErr()}, nil
}

// StopTask asks the driver to stop the task: signal ("" = the driver's
// default, as when the job sets no kill_signal), then force after timeout
// (the job's kill_timeout). It fails t on error.
func (h *Harness) StopTask(t testing.TB, taskID string, timeout time.Duration, signal string) {
	t.Helper()
	if err := h.TryStopTask(taskID, timeout, signal); err != nil {
		t.Fatalf("harness: StopTask %s (timeout %s, signal %q): %v", taskID, timeout, signal, err)
	}
}

// TryStopTask is StopTask returning the error.
func (h *Harness) TryStopTask(taskID string, timeout time.Duration, signal string) error {
	inst, err := h.driverFor()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.Timeout+timeout)
	defer cancel()
	_, err = inst.driver.StopTask(ctx, &driverpb.StopTaskRequest{TaskId: taskID, Timeout: durationpb.New(timeout), Signal: signal})
	if err != nil {
		return fmt.Errorf("StopTask: %w", err)
	}
	return nil
}

// DestroyTask asks the driver to forget the task (the client always sends
// force=true). It fails t on error. The harness stops collecting the task's
// logs afterwards but keeps what it collected.
func (h *Harness) DestroyTask(t testing.TB, taskID string, force bool) {
	t.Helper()
	if err := h.TryDestroyTask(taskID, force); err != nil {
		t.Fatalf("harness: DestroyTask %s (force=%v): %v", taskID, force, err)
	}
}

// TryDestroyTask is DestroyTask returning the error.
func (h *Harness) TryDestroyTask(taskID string, force bool) error {
	inst, err := h.driverFor()
	if err != nil {
		return err
	}
	ctx, cancel := h.ctx()
	defer cancel()
	return h.destroy(ctx, inst, taskID, force)
}

func (h *Harness) destroy(ctx context.Context, inst *instance, taskID string, force bool) error {
	if _, err := inst.driver.DestroyTask(ctx, &driverpb.DestroyTaskRequest{TaskId: taskID, Force: force}); err != nil {
		return fmt.Errorf("DestroyTask: %w", err)
	}
	h.mu.Lock()
	task := h.tasks[taskID]
	if task != nil {
		task.destroyed = true
	}
	h.mu.Unlock()
	return nil
}

// InspectTask returns the driver's status of the task. Nomad's client never
// calls it; Nomad's own harness requires both timestamps once exited.
func (h *Harness) InspectTask(t testing.TB, taskID string) *driverpb.InspectTaskResponse {
	t.Helper()
	inst := h.current(t)
	ctx, cancel := h.ctx()
	defer cancel()
	resp, err := inst.driver.InspectTask(ctx, &driverpb.InspectTaskRequest{TaskId: taskID})
	if err != nil {
		t.Fatalf("harness: InspectTask %s: %v", taskID, err)
	}
	switch st := resp.GetTask(); {
	case st == nil:
		t.Fatalf("harness: driver contract: InspectTask %s returned no task status", taskID)
	case st.GetStartedAt() == nil || st.GetCompletedAt() == nil:
		t.Fatalf("harness: driver contract: InspectTask %s status lacks started_at or completed_at (Nomad's converter rejects it)", taskID)
	}
	return resp
}

// SignalTask delivers a signal such as "SIGHUP" (nomad alloc signal).
func (h *Harness) SignalTask(t testing.TB, taskID, signal string) {
	t.Helper()
	if err := h.TrySignalTask(taskID, signal); err != nil {
		t.Fatalf("harness: SignalTask %s %s: %v", taskID, signal, err)
	}
}

// TrySignalTask is SignalTask returning the error.
func (h *Harness) TrySignalTask(taskID, signal string) error {
	inst, err := h.driverFor()
	if err != nil {
		return err
	}
	ctx, cancel := h.ctx()
	defer cancel()
	if _, err := inst.driver.SignalTask(ctx, &driverpb.SignalTaskRequest{TaskId: taskID, Signal: signal}); err != nil {
		return fmt.Errorf("SignalTask: %w", err)
	}
	return nil
}

// ExecResult is the answer to ExecTask.
type ExecResult struct {
	Stdout, Stderr []byte
	ExitCode       int
}

// ExecTask runs cmd in the task's context as a script check would, with the
// given timeout, and returns its output and exit code.
func (h *Harness) ExecTask(t testing.TB, taskID string, cmd []string, timeout time.Duration) ExecResult {
	t.Helper()
	inst := h.current(t)
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.Timeout+timeout)
	defer cancel()
	resp, err := inst.driver.ExecTask(ctx, &driverpb.ExecTaskRequest{TaskId: taskID, Command: cmd, Timeout: durationpb.New(timeout)})
	if err != nil {
		t.Fatalf("harness: ExecTask %s %q: %v", taskID, cmd, err)
	}
	if resp.GetResult() == nil {
		t.Fatalf("harness: driver contract: ExecTaskResponse.result is unset for %s %q (crashes the client)", taskID, cmd)
	}
	return ExecResult{Stdout: resp.GetStdout(), Stderr: resp.GetStderr(), ExitCode: int(resp.GetResult().GetExitCode())}
}

// TaskStats opens the TaskStats stream with the given collection interval,
// collects n samples, checks each against the client's requirements
// (stats, timestamp and agg_resource_usage set) and closes the stream.
func (h *Harness) TaskStats(t testing.TB, taskID string, interval time.Duration, n int) []*driverpb.TaskStats {
	t.Helper()
	inst := h.current(t)
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.Timeout+time.Duration(n)*interval)
	defer cancel()
	stream, err := inst.driver.TaskStats(ctx, &driverpb.TaskStatsRequest{TaskId: taskID, CollectionInterval: durationpb.New(interval)})
	if err != nil {
		t.Fatalf("harness: TaskStats %s: %v", taskID, err)
	}
	var out []*driverpb.TaskStats
	for len(out) < n {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("harness: TaskStats %s: stream ended after %d of %d samples: %v", taskID, len(out), n, err)
		}
		s := resp.GetStats()
		switch {
		case s == nil:
			t.Fatalf("harness: driver contract: TaskStats %s sample %d has no stats (crashes the client)", taskID, len(out)+1)
		case s.GetAggResourceUsage() == nil:
			t.Fatalf("harness: driver contract: TaskStats %s sample %d has no agg_resource_usage (crashes the client)", taskID, len(out)+1)
		case s.GetTimestamp() == nil:
			t.Fatalf("harness: driver contract: TaskStats %s sample %d has no timestamp (the client drops it)", taskID, len(out)+1)
		}
		out = append(out, s)
	}
	return out
}
