// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package harness

import (
	"strings"
	"testing"
	"time"
)

// stream returns the collector of one stream of a task, or nil.
func (h *Harness) stream(taskID string, stderr bool) *logStream {
	h.mu.Lock()
	task := h.tasks[taskID]
	h.mu.Unlock()
	if task == nil || task.logs == nil {
		return nil
	}
	if stderr {
		return task.logs.stderr
	}
	return task.logs.stdout
}

func (h *Harness) logText(taskID string, stderr bool) string {
	s := h.stream(taskID, stderr)
	if s == nil {
		return ""
	}
	text, _, _, _ := s.snapshot()
	return text
}

// Stdout returns what the task wrote to its stdout FIFO so far.
func (h *Harness) Stdout(taskID string) string { return h.logText(taskID, false) }

// Stderr returns what the task wrote to its stderr FIFO so far.
func (h *Harness) Stderr(taskID string) string { return h.logText(taskID, true) }

// WaitStdout waits until the task's stdout contains substr and returns the
// whole output so far.
func (h *Harness) WaitStdout(t testing.TB, taskID, substr string) string {
	t.Helper()
	return h.waitLog(t, taskID, false, substr)
}

// WaitStderr waits until the task's stderr contains substr and returns the
// whole output so far.
func (h *Harness) WaitStderr(t testing.TB, taskID, substr string) string {
	t.Helper()
	return h.waitLog(t, taskID, true, substr)
}

func (h *Harness) waitLog(t testing.TB, taskID string, stderr bool, substr string) string {
	t.Helper()
	name := map[bool]string{false: "stdout", true: "stderr"}[stderr]
	s := h.stream(taskID, stderr)
	if s == nil {
		t.Fatalf("harness: task %s has no %s collector (unknown task, logs disabled, or disable_log_collection)", taskID, name)
	}
	text, ok := s.waitFor(time.Now().Add(h.opts.Timeout), func(text string, _ bool) bool {
		return strings.Contains(text, substr)
	})
	if !ok {
		_, _, _, err := s.snapshot()
		t.Fatalf("harness: task %s: %s does not contain %q after %s (read error: %v); %s so far:\n%s", taskID, name, substr, h.opts.Timeout, err, name, text)
	}
	return text
}

// Logs waits until the driver has closed the write side of both FIFOs (all
// of the task's processes and the driver's own copies are gone) and returns
// the complete stdout and stderr. Call it after WaitTask. It fails t if a
// stream was never opened: use Stdout/Stderr for tasks that write nothing.
func (h *Harness) Logs(t testing.TB, taskID string) (stdout, stderr string) {
	t.Helper()
	var out [2]string
	for i, isErr := range []bool{false, true} {
		s := h.stream(taskID, isErr)
		if s == nil {
			t.Fatalf("harness: task %s has no log collector (unknown task, logs disabled, or disable_log_collection)", taskID)
		}
		text, ok := s.waitFor(time.Now().Add(h.opts.Timeout), func(_ string, finished bool) bool { return finished })
		if !ok {
			t.Fatalf("harness: task %s: %s FIFO still has a writer (or never had one) after %s; a driver must keep no copy of it open once the task is gone. Output so far:\n%s",
				taskID, map[bool]string{false: "stdout", true: "stderr"}[isErr], h.opts.Timeout, text)
		}
		out[i] = text
	}
	return out[0], out[1]
}
