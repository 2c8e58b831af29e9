// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadagent

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
)

// WaitTimeout bounds the Wait helpers. It only bounds failure.
const WaitTimeout = 2 * time.Minute

// RunJobHCL parses a job file through the agent (/v1/jobs/parse, so the
// agent's own job-file semantics apply), registers it and returns its ID.
// When the test ends the job is deregistered and purged if the agent still
// runs.
func (a *Agent) RunJobHCL(t testing.TB, hcl string) string {
	t.Helper()
	c := a.API()
	job, err := c.Jobs().ParseHCL(hcl, true)
	if err != nil {
		t.Fatalf("nomadagent: parse job: %v", err)
	}
	return a.RunJob(t, job)
}

// RunJob registers job and returns its ID; see RunJobHCL.
func (a *Agent) RunJob(t testing.TB, job *api.Job) string {
	t.Helper()
	c := a.API()
	ns := "default"
	if job.Namespace != nil && *job.Namespace != "" {
		ns = *job.Namespace
	}
	resp, _, err := c.Jobs().Register(job, &api.WriteOptions{Namespace: ns})
	if err != nil {
		t.Fatalf("nomadagent: register job %s: %v", deref(job.ID), err)
	}
	if resp.Warnings != "" {
		t.Logf("nomadagent: job %s registered with warnings: %s", *job.ID, resp.Warnings)
	}
	id := *job.ID
	a.mu.Lock()
	a.jobNS[id] = ns
	a.mu.Unlock()
	t.Cleanup(func() {
		if !a.exited() {
			_, _, _ = c.Jobs().Deregister(id, true, &api.WriteOptions{Namespace: ns})
		}
	})
	return id
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// q is the query options for a job registered through RunJob (its
// namespace), else the default namespace.
func (a *Agent) q(jobID string) *api.QueryOptions {
	a.mu.Lock()
	defer a.mu.Unlock()
	return &api.QueryOptions{Namespace: a.jobNS[jobID]}
}

// StopJob deregisters a job (not purged, so its allocations stay readable).
func (a *Agent) StopJob(t testing.TB, jobID string) {
	t.Helper()
	q := a.q(jobID)
	if _, _, err := a.API().Jobs().Deregister(jobID, false, &api.WriteOptions{Namespace: q.Namespace}); err != nil {
		t.Fatalf("nomadagent: stop job %s: %v", jobID, err)
	}
}

// WaitAlloc waits until the job has an allocation (in any state) and
// returns the newest one.
func (a *Agent) WaitAlloc(t testing.TB, jobID string) *api.Allocation {
	t.Helper()
	var found *api.Allocation
	a.poll(t, fmt.Sprintf("an allocation of job %s", jobID), func() (bool, string) {
		stubs, _, err := a.API().Jobs().Allocations(jobID, true, a.q(jobID))
		if err != nil {
			return false, err.Error()
		}
		if len(stubs) == 0 {
			return false, "no allocation" + a.placementFailures(jobID)
		}
		newest := slices.MaxFunc(stubs, func(x, y *api.AllocationListStub) int { return int(x.CreateIndex) - int(y.CreateIndex) })
		found = a.Alloc(t, newest.ID)
		return true, ""
	})
	return found
}

// WaitAllocRunning waits until an allocation of the job runs (client status
// running) and returns it. It fails at once when one failed, was lost or
// completed, with its task events.
func (a *Agent) WaitAllocRunning(t testing.TB, jobID string) *api.Allocation {
	t.Helper()
	var found *api.Allocation
	a.poll(t, fmt.Sprintf("an allocation of job %s running", jobID), func() (bool, string) {
		stubs, _, err := a.API().Jobs().Allocations(jobID, true, a.q(jobID))
		if err != nil {
			return false, err.Error()
		}
		for _, s := range stubs {
			switch s.ClientStatus {
			case api.AllocClientStatusRunning:
				found = a.Alloc(t, s.ID)
				return true, ""
			case api.AllocClientStatusFailed, api.AllocClientStatusLost, api.AllocClientStatusComplete:
				t.Fatalf("nomadagent: allocation %s of job %s is %s:\n%s", s.ID, jobID, s.ClientStatus,
					TaskEvents(a.Alloc(t, s.ID)))
			}
		}
		return false, fmt.Sprintf("%d allocations, none running%s", len(stubs), a.placementFailures(jobID))
	})
	return found
}

// placementFailures describes the job's latest evaluation's failed
// placements, for a wait that times out.
func (a *Agent) placementFailures(jobID string) string {
	evals, _, err := a.API().Jobs().Evaluations(jobID, a.q(jobID))
	if err != nil || len(evals) == 0 {
		return ""
	}
	var b strings.Builder
	for tg, m := range evals[0].FailedTGAllocs {
		fmt.Fprintf(&b, "; group %s not placed: %v %v %v", tg, m.ConstraintFiltered, m.DimensionExhausted, m.ClassFiltered)
	}
	return b.String()
}

// Alloc reads an allocation.
func (a *Agent) Alloc(t testing.TB, allocID string) *api.Allocation {
	t.Helper()
	alloc, _, err := a.API().Allocations().Info(allocID, &api.QueryOptions{Namespace: "*"})
	if err != nil {
		t.Fatalf("nomadagent: read allocation %s: %v", allocID, err)
	}
	return alloc
}

// WaitAllocDone waits until the allocation is terminal on the client
// (complete, failed or lost) and returns it.
func (a *Agent) WaitAllocDone(t testing.TB, allocID string) *api.Allocation {
	t.Helper()
	var alloc *api.Allocation
	a.poll(t, "allocation "+allocID+" done", func() (bool, string) {
		alloc = a.Alloc(t, allocID)
		switch alloc.ClientStatus {
		case api.AllocClientStatusComplete, api.AllocClientStatusFailed, api.AllocClientStatusLost:
			return true, ""
		}
		return false, "client status " + alloc.ClientStatus
	})
	return alloc
}

// WaitTaskEvent waits until the task has an event for which match holds
// and returns that event.
func (a *Agent) WaitTaskEvent(t testing.TB, allocID, task string, match func(*api.TaskEvent) bool) *api.TaskEvent {
	t.Helper()
	var ev *api.TaskEvent
	a.poll(t, fmt.Sprintf("a matching event of task %s in %s", task, allocID), func() (bool, string) {
		alloc := a.Alloc(t, allocID)
		if st := alloc.TaskStates[task]; st != nil {
			if i := slices.IndexFunc(st.Events, match); i >= 0 {
				ev = st.Events[i]
				return true, ""
			}
		}
		return false, "events so far:\n" + TaskEvents(alloc)
	})
	return ev
}

// WaitTaskState waits until the task's state satisfies match and returns it.
func (a *Agent) WaitTaskState(t testing.TB, allocID, task string, match func(*api.TaskState) bool) *api.TaskState {
	t.Helper()
	var st *api.TaskState
	a.poll(t, fmt.Sprintf("task %s of %s in the expected state", task, allocID), func() (bool, string) {
		alloc := a.Alloc(t, allocID)
		st = alloc.TaskStates[task]
		if st != nil && match(st) {
			return true, ""
		}
		return false, "events so far:\n" + TaskEvents(alloc)
	})
	return st
}

// poll calls check every pollInterval until it holds, failing the test
// with check's last reason after WaitTimeout.
func (a *Agent) poll(t testing.TB, what string, check func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for {
		ok, why := check()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nomadagent: timed out after %s waiting for %s: %s", WaitTimeout, what, why)
		}
		time.Sleep(pollInterval)
	}
}

// TaskEvents formats an allocation's task events, one per line, for
// failure messages.
func TaskEvents(alloc *api.Allocation) string {
	var b strings.Builder
	for _, name := range sortedTaskNames(alloc) {
		st := alloc.TaskStates[name]
		fmt.Fprintf(&b, "task %s (%s, failed=%t):\n", name, st.State, st.Failed)
		for _, e := range st.Events {
			msg := e.DisplayMessage
			if msg == "" {
				msg = strings.TrimSpace(e.Message + " " + e.DriverError + " " + e.DriverMessage)
			}
			fmt.Fprintf(&b, "  %s: %s\n", e.Type, msg)
		}
	}
	return b.String()
}

func sortedTaskNames(alloc *api.Allocation) []string {
	names := make([]string, 0, len(alloc.TaskStates))
	for n := range alloc.TaskStates {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// AllocLogs returns a task's whole stdout or stderr ("stdout"/"stderr")
// through the logs API (not following).
func (a *Agent) AllocLogs(t testing.TB, alloc *api.Allocation, task, logType string) string {
	t.Helper()
	cancel := make(chan struct{})
	defer close(cancel)
	frames, errs := a.API().AllocFS().Logs(alloc, false, task, logType, api.OriginStart, 0, cancel, nil)
	var b strings.Builder
	timeout := time.After(WaitTimeout)
	for {
		select {
		case f, ok := <-frames:
			if !ok {
				return b.String()
			}
			b.Write(f.Data)
		case err, ok := <-errs:
			if !ok {
				errs = nil // closed: wait for the frames to end
				continue
			}
			if err != nil {
				t.Fatalf("nomadagent: %s of task %s in %s: %v", logType, task, alloc.ID, err)
			}
		case <-timeout:
			t.Fatalf("nomadagent: timed out reading %s of task %s in %s", logType, task, alloc.ID)
		}
	}
}

// VMs returns the names of the VMs in the agent's TART_HOME.
func (a *Agent) VMs(t testing.TB) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(a.TartHome, "vms"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("nomadagent: list VMs: %v", err)
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names
}

// WaitNodeAttr waits until the node's attribute key has value.
func (a *Agent) WaitNodeAttr(t testing.TB, key, value string) {
	t.Helper()
	a.poll(t, fmt.Sprintf("node attribute %s = %q", key, value), func() (bool, string) {
		n, err := a.node()
		if err != nil {
			return false, err.Error()
		}
		got, ok := n.Attributes[key]
		return ok && got == value, fmt.Sprintf("%s = %q (set: %t)", key, got, ok)
	})
}

// WaitPlugin waits until a plugin process of the binary name runs that is
// not oldPID (Nomad relaunched it after it died) and, for the tart plugin,
// the node's tart driver is healthy again.
func (a *Agent) WaitPlugin(t testing.TB, name string, oldPID int) int {
	t.Helper()
	var pid int
	a.poll(t, "a new "+name+" plugin process", func() (bool, string) {
		pids := slices.DeleteFunc(a.PluginPIDs(name), func(p int) bool { return p == oldPID })
		if len(pids) != 1 {
			return false, fmt.Sprintf("plugin processes other than %d: %v", oldPID, pids)
		}
		pid = pids[0]
		if name != filepath.Base(TartPlugin) {
			return true, ""
		}
		n, err := a.node()
		if err != nil {
			return false, err.Error()
		}
		if d := n.Drivers["tart"]; d == nil || !d.Healthy {
			return false, "tart driver not healthy"
		}
		return true, ""
	})
	return pid
}

// Tart runs the agent's tart (faketart) with the agent's environment
// (TART_HOME, knobs) and returns its stdout; a failure fails the test.
func (a *Agent) Tart(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(a.root, "bin", "tart"), args...)
	cmd.Env = a.env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nomadagent: tart %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}
