// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/driver/harness"
)

// TestDriver_reconcile deletes only VMs that are ours, old enough and
// referenced by nothing: not a running task's VM, not another tool's VM,
// not a young VM (a StartTask of another process may own it), not a VM
// named by the state of a task not yet recovered.
func TestDriver_reconcile(t *testing.T) {
	t.Parallel()
	e, h := newTartEnv(t, envOptions{PluginConfig: "gc_interval = \"100ms\"\ngc_grace_period = \"1h\""})
	task := h.StartTask(t, harness.TaskSpec{Config: sh(`echo ready; while :; do sleep 0.05; done`)})
	h.WaitStdout(t, task.ID, "ready")
	// State of tasks an earlier process ran: one whose allocation is gone
	// (stale), one Nomad may still recover (pinned). Written before the VMs
	// exist, as a StartTask does, so no reconcile pass sees them unnamed.
	tasks := filepath.Join(e.home, "nomad-driver-tart", "tasks")
	writeSpec := func(dir, vm, taskDir string) {
		must.NoError(t, os.MkdirAll(filepath.Join(tasks, dir), 0o700))
		b, _ := json.Marshal(map[string]string{"vm": vm, "task_dir": taskDir})
		must.NoError(t, os.WriteFile(filepath.Join(tasks, dir, "spec.json"), b, 0o600))
	}
	writeSpec("stale", "ntart-task-stale", filepath.Join(t.TempDir(), "gone"))
	writeSpec("pinned", "ntart-task-pinned", t.TempDir())

	old := time.Now().Add(-2 * time.Hour)
	clone := func(name string, age time.Time) {
		e.faketart(t, "clone", testImage, name)
		must.NoError(t, os.Chtimes(filepath.Join(e.home, "vms", name), age, age))
	}
	clone("ntart-task-orphan", old)
	clone("someone-elses-vm", old)
	clone("ntart-task-young", time.Now())
	clone("ntart-task-stale", old)
	clone("ntart-task-pinned", old)
	waitFor(t, "the reconcile to delete orphans", 20*time.Second, func() bool {
		names := e.vmNames(t)
		_, err := os.Stat(filepath.Join(tasks, "stale"))
		return !slices.Contains(names, "ntart-task-orphan") && !slices.Contains(names, "ntart-task-stale") && os.IsNotExist(err)
	})
	must.Eq(t, sortedCopy([]string{taskVM(t, task), "someone-elses-vm", "ntart-task-young", "ntart-task-pinned"}), sortedCopy(e.vmNames(t)))

	h.StopTask(t, task.ID, time.Second, "")
	h.WaitTask(t, task.ID)
	h.DestroyTask(t, task.ID, true)
	for _, vm := range []string{"someone-elses-vm", "ntart-task-young", "ntart-task-pinned"} {
		e.faketart(t, "delete", vm)
	}
	must.NoError(t, os.RemoveAll(filepath.Join(tasks, "pinned")))
}
