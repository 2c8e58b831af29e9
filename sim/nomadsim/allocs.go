// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadsim

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/nomad/api"
)

// event is a task event as the client writes it: DisplayMessage set,
// Message empty (most events carry their text in typed fields).
func event(typ, display string, t time.Time) *api.TaskEvent {
	return &api.TaskEvent{Type: typ, Time: t.UnixNano(), DisplayMessage: display, Details: map[string]string{}}
}

// setupEvent is the task directory hook's event, which sets Message.
func setupEvent(t time.Time) *api.TaskEvent {
	ev := event("Task Setup", "Building Task Directory", t)
	ev.Message = "Building Task Directory"
	ev.Details["message"] = ev.Message
	return ev
}

// killingEvent is TaskKilling with the task's kill timeout.
func killingEvent(timeout time.Duration, t time.Time) *api.TaskEvent {
	ev := event("Killing", fmt.Sprintf("Sent interrupt. Waiting %v before force killing", timeout), t)
	ev.KillTimeout = timeout
	ev.Details["kill_timeout"] = timeout.String()
	return ev
}

// terminatedEvent is TaskTerminated with the exit code (the TaskRunner
// reports no signal: signal 0).
func terminatedEvent(code int, t time.Time) *api.TaskEvent {
	ev := event("Terminated", fmt.Sprintf("Exit Code: %d", code), t)
	ev.ExitCode = code
	ev.Details["exit_code"] = fmt.Sprint(code)
	ev.Details["signal"] = "0"
	ev.Details["oom_killed"] = "false"
	return ev
}

// notRestartingEvent is TaskNotRestarting, which fails the task.
func notRestartingEvent(reason string, t time.Time) *api.TaskEvent {
	ev := event("Not Restarting", reason, t)
	ev.RestartReason, ev.FailsTask = reason, true
	ev.Details["restart_reason"] = reason
	ev.Details["fails_task"] = "true"
	return ev
}

// driverFailureEvent is TaskDriverFailure.
func driverFailureEvent(err error, t time.Time) *api.TaskEvent {
	ev := event("Driver Failure", err.Error(), t)
	ev.DriverError = err.Error()
	ev.Details["driver_error"] = err.Error()
	return ev
}

// runTask runs the task and moves the allocation through Nomad's client
// statuses: pending → running → complete | failed.
func (s *Server) runTask(ctx context.Context, allocID string, t Task) {
	var once sync.Once
	started := func() { once.Do(func() { s.taskStarted(allocID) }) }
	code, err := s.runner.RunTask(ctx, t, started)
	s.taskFinished(allocID, code, err)
}

func (s *Server) taskStarted(allocID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.allocs[allocID]
	if a == nil || a.deleted || a.stub.ClientStatus != allocClientPending {
		return
	}
	now := time.Now()
	ts := a.stub.TaskStates[a.task]
	ts.State, ts.StartedAt = "running", now
	ts.Events = append(ts.Events, event("Started", "Task started by client", now))
	s.setClientStatus(a, allocClientRunning, "Tasks are running")
}

func (s *Server) taskFinished(allocID string, code int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.allocs[allocID]
	if a == nil {
		return
	}
	a.running = false
	if a.deleted {
		// purged: nothing of it is visible any more, but WaitUntil
		// callers watch RunningTasks
		s.poke()
		return
	}
	now := time.Now()
	ts := a.stub.TaskStates[a.task]
	ts.State, ts.FinishedAt = "dead", now
	switch {
	case a.stub.DesiredStatus == allocDesiredStop:
		// Killing was recorded when the stop began (deregister)
		if err == nil {
			ts.Events = append(ts.Events, terminatedEvent(code, now))
		}
		ts.Events = append(ts.Events, event("Killed", "Task successfully killed", now))
		s.setClientStatus(a, allocClientComplete, "All tasks have completed")
	case err != nil:
		ts.Failed = true
		// the restart tracker: an unrecoverable start error is final; a
		// recoverable one meets restart { attempts = 0 }
		reason := "Error was unrecoverable"
		if IsRecoverable(err) {
			reason = "Policy allows no restarts"
		}
		ts.Events = append(ts.Events, driverFailureEvent(err, now), notRestartingEvent(reason, now))
		s.setClientStatus(a, allocClientFailed, "Failed tasks")
	default:
		ts.Events = append(ts.Events, terminatedEvent(code, now))
		if code == 0 {
			// a batch task that succeeded is not restarted and gets no
			// further event (TaskTerminated from the restart tracker)
			s.setClientStatus(a, allocClientComplete, "All tasks have completed")
		} else {
			ts.Failed = true
			ts.Events = append(ts.Events, notRestartingEvent("Policy allows no restarts", now))
			s.setClientStatus(a, allocClientFailed, "Failed tasks")
		}
	}
}

// setClientStatus changes an allocation's client status, its job's summary
// and status in one write. Caller holds mu.
func (s *Server) setClientStatus(a *allocRec, status, desc string) {
	idx := s.commit("allocs", "job_summary")
	old := a.stub.ClientStatus
	a.stub.ClientStatus, a.stub.ClientDescription = status, desc
	a.stub.ModifyIndex, a.stub.ModifyTime = idx, time.Now().UnixNano()
	rec := s.jobs[jobKey{a.stub.Namespace, a.stub.JobID}]
	if rec == nil {
		return // purged: the allocation outlives its job until GC
	}
	sum := rec.summary.Summary[a.stub.TaskGroup]
	for st, delta := range map[string]int{old: -1, status: 1} {
		switch st {
		case allocClientPending:
			sum.Starting += delta
		case allocClientRunning:
			sum.Running += delta
		case allocClientComplete:
			sum.Complete += delta
		case allocClientFailed:
			sum.Failed += delta
		}
	}
	rec.summary.Summary[a.stub.TaskGroup] = sum
	rec.summary.ModifyIndex = idx
	s.setStatus(rec, idx)
}
