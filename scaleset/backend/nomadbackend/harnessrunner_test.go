// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadbackend_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tartnomad/nomad-driver-tart/driver/harness"
	"github.com/tartnomad/nomad-driver-tart/sim/nomadsim"
)

// harnessRunner is a nomadsim.TaskRunner that runs each allocation's
// task through a task-driver plugin served by driver/harness (the Nomad
// client stand-in): StartTask with the dispatch payload written to
// local/<dispatch_payload.file>, WaitTask, and StopTask/DestroyTask when the
// allocation is stopped. With the tart driver on faketart it lets the Nomad
// API double run dispatched runner jobs the way a Mac client would.
//
// It lives in a _test.go file because driver/harness depends on the
// testing package.
type harnessRunner struct {
	H *harness.Harness
	// Config is the text of the task's config { } block (the double does
	// not carry the job file's driver config).
	Config string
	// KillTimeout is used when the task has none. Tasks of jobs stored
	// by the double always have one (Nomad's canonical default is 5s), so
	// this only matters for Tasks built by hand.
	KillTimeout time.Duration
}

var _ nomadsim.TaskRunner = (*harnessRunner)(nil)

// RunTask implements nomadsim.TaskRunner.
func (r *harnessRunner) RunTask(ctx context.Context, t nomadsim.Task, started func()) (int, error) {
	spec := harness.TaskSpec{
		Config: r.Config, Name: t.Task.Name, AllocID: t.AllocID, JobName: t.JobID, JobID: t.JobID,
		ParentJobID: t.ParentID, Group: t.TaskGroup, Namespace: t.Namespace, Meta: t.Meta,
	}
	if dp := t.Task.DispatchPayload; dp != nil && dp.File != "" {
		spec.PayloadFile, spec.Payload = dp.File, t.Payload
	}
	task, err := r.H.TryStartTask(spec)
	if err != nil {
		return 0, err
	}
	started()
	defer func() { _ = r.H.TryDestroyTask(task.ID, true) }()

	type result struct {
		res harness.ExitResult
		err error
	}
	waitCtx, cancelWait := context.WithCancel(context.Background())
	defer cancelWait()
	done := make(chan result, 1)
	go func() {
		res, err := r.H.TryWaitTask(waitCtx, task.ID)
		done <- result{res, err}
	}()
	var out result
	select {
	case out = <-done:
	case <-ctx.Done():
		kill := r.KillTimeout
		if t.Task.KillTimeout != nil && *t.Task.KillTimeout > 0 {
			kill = *t.Task.KillTimeout
		}
		if kill <= 0 {
			kill = 5 * time.Second
		}
		stopErr := r.H.TryStopTask(task.ID, kill, t.Task.KillSignal)
		select {
		case out = <-done:
		case <-time.After(kill + 30*time.Second):
			cancelWait()
			out = <-done
		}
		if stopErr != nil && out.err == nil {
			out.err = stopErr
		}
	}
	if out.err != nil {
		return 0, fmt.Errorf("waiting for task %s: %w", task.ID, out.err)
	}
	if out.res.Err != "" {
		return out.res.ExitCode, errors.New(out.res.Err)
	}
	return out.res.ExitCode, nil
}
