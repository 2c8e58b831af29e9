// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/driver/harness"
	"github.com/tartnomad/nomad-driver-tart/internal/supervisor"
)

// TestDriver_RecoverTask_afterPluginKill kills the plugin (SIGKILL) while
// two tasks run: one finishes while no plugin runs, the other after the
// new process recovered it. Neither is cloned or booted again, their exit
// codes are not lost, and output written meanwhile reaches the logs.
func TestDriver_RecoverTask_afterPluginKill(t *testing.T) {
	t.Parallel()
	e, h := newTartEnv(t, envOptions{})
	script := `echo before; while [ ! -f go ]; do sleep 0.05; done; echo after; exit `
	early := h.StartTask(t, harness.TaskSpec{Name: "early", Config: sh(script + "5")})
	late := h.StartTask(t, harness.TaskSpec{Name: "late", Config: sh(script + "6")})
	h.WaitStdout(t, early.ID, "before")
	h.WaitStdout(t, late.ID, "before")
	earlyVM, lateVM := taskVM(t, early), taskVM(t, late)
	oldPID := h.PID(t)
	seen := len(h.Events())

	h.KillPlugin(t)
	// The early task ends while no plugin process exists.
	must.NoError(t, os.WriteFile(filepath.Join(e.guestDir(earlyVM), "go"), nil, 0o644))
	h.WaitStdout(t, early.ID, "after")

	h.Relaunch(t)
	must.NotEq(t, oldPID, h.PID(t))
	h.RecoverTaskInMemory(t, early) // plugin crash: the client still has the config
	h.RecoverTask(t, late)          // as after an agent restart: no msgpack config
	h.RecoverTask(t, late)          // idempotent
	res := h.WaitTask(t, early.ID)
	must.Eq(t, 5, res.ExitCode)
	must.Eq(t, "", res.Err)

	must.NoError(t, os.WriteFile(filepath.Join(e.guestDir(lateVM), "go"), nil, 0o644))
	must.Eq(t, 6, h.WaitTask(t, late.ID).ExitCode)
	stdout, _ := h.Logs(t, late.ID)
	must.Eq(t, "before\nafter\n", stdout)
	must.Eq(t, sortedCopy([]string{earlyVM, lateVM}), sortedCopy(e.vmNames(t)))
	for _, ev := range h.Events()[seen:] {
		must.StrNotContains(t, ev.Message, "Booting", must.Sprint("recovery must not boot: ", ev.Message))
	}
	h.DestroyTask(t, early.ID, true)
	h.DestroyTask(t, late.ID, true)
	must.SliceEmpty(t, e.vmNames(t))
}

// TestDriver_RecoverTask_afterAgentRestart stops the plugin gracefully
// (Shutdown, then kill) and recovers with a handle whose config was lost,
// as after an agent restart; stop and signals work on the recovered task.
func TestDriver_RecoverTask_afterAgentRestart(t *testing.T) {
	t.Parallel()
	_, h := newTartEnv(t, envOptions{})
	task := h.StartTask(t, harness.TaskSpec{Config: sh(`trap 'echo got-hup' HUP; trap 'exit 9' TERM; echo ready; while :; do sleep 0.05; done`)})
	h.WaitStdout(t, task.ID, "ready")
	h.RestartAgent(t)
	h.SignalTask(t, task.ID, "SIGHUP")
	h.WaitStdout(t, task.ID, "got-hup")
	stats := h.TaskStats(t, task.ID, 50*time.Millisecond, 1)
	must.Positive(t, stats[0].GetAggResourceUsage().GetMemory().GetRss())
	h.StopTask(t, task.ID, 5*time.Second, "")
	must.Eq(t, 9, h.WaitTask(t, task.ID).ExitCode)
	h.DestroyTask(t, task.ID, true)
}

// TestDriver_RecoverTask_goneTask fails recovery of a task whose supervisor
// died without an exit status (e.g. the host rebooted) and deletes its VM.
func TestDriver_RecoverTask_goneTask(t *testing.T) {
	t.Parallel()
	e, h := newTartEnv(t, envOptions{})
	task := h.StartTask(t, harness.TaskSpec{Config: sh(`echo ready; while :; do sleep 0.05; done`)})
	h.WaitStdout(t, task.ID, "ready")
	vm := taskVM(t, task)
	h.KillPlugin(t)
	// Kill the supervisor the hard way, and the VM with it.
	var st struct {
		SupervisorPID int    `json:"supervisor_pid"`
		StateDir      string `json:"state_dir"`
	}
	must.NoError(t, jsonUnmarshal(task.Handle.GetDriverState(), &st))
	p, err := os.FindProcess(st.SupervisorPID)
	must.NoError(t, err)
	must.NoError(t, p.Kill())
	// SIGKILL is asynchronous: wait until the kernel dropped its lock.
	waitFor(t, "the supervisor to die", 10*time.Second, func() bool { return !supervisor.Alive(st.StateDir) })
	h.Relaunch(t)
	err = h.TryRecoverTask(task)
	must.ErrorContains(t, err, "no longer exists")
	must.SliceNotContains(t, e.vmNames(t), vm)
	h.DestroyTask(t, task.ID, true) // what the client does next: a no-op
}

// TestDriver_RecoverTask_destroyedTask recovers a task that finished and
// was destroyed, as a real Nomad client does for every finished task of
// its state DB when it restarts: the driver answers "task not found"
// without running tart against the deleted VM's name (it used to log
// "task cannot be recovered; deleting its vm" with error=<nil> and run
// tart stop and delete for each).
func TestDriver_RecoverTask_destroyedTask(t *testing.T) {
	t.Parallel()
	tartLog := filepath.Join(t.TempDir(), "tart.log")
	_, h := newTartEnv(t, envOptions{Env: []string{"FAKETART_LOG=" + tartLog}})
	task := h.StartTask(t, harness.TaskSpec{Config: sh(`exit 0`)})
	must.Eq(t, 0, h.WaitTask(t, task.ID).ExitCode)
	vm := taskVM(t, task)
	h.DestroyTask(t, task.ID, true)
	before := tartCallsNaming(t, tartLog, vm)

	err := h.TryRecoverTask(task)
	must.ErrorContains(t, err, "task not found: it was destroyed earlier")
	must.Eq(t, before, tartCallsNaming(t, tartLog, vm), must.Sprint("no tart command names the destroyed task's VM"))
}

// tartCallsNaming counts the faketart invocations in a FAKETART_LOG file
// that have vm among their arguments.
func tartCallsNaming(t *testing.T, logFile, vm string) int {
	t.Helper()
	b, err := os.ReadFile(logFile)
	must.NoError(t, err)
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var call struct{ Args []string }
		must.NoError(t, json.Unmarshal([]byte(line), &call))
		if slices.Contains(call.Args, vm) {
			n++
		}
	}
	return n
}

// TestDriver_RecoverTask_whilePoolRefills kills the plugin while a warm VM
// boots; the new process rebuilds the pool from what exists (adopting or
// deleting the half-booted VM) and serves a pool hit.
func TestDriver_RecoverTask_whilePoolRefills(t *testing.T) {
	t.Parallel()
	e, h := newTartEnv(t, envOptions{Env: []string{"FAKETART_BOOT_DELAY=1s"}, PluginConfig: `
pool {
  name  = "macos"
  image = "` + testImage + `"
  size  = 1
}`})
	waitFor(t, "a warm vm to boot", 30*time.Second, func() bool {
		for _, n := range e.vmNames(t) {
			if strings.HasPrefix(n, "ntart-pool-macos-") {
				return true
			}
		}
		return false
	})
	h.KillPlugin(t)
	h.Relaunch(t)
	h.WaitFingerprint(t, func(fp *harness.Fingerprint) bool { return fp.Attributes["driver.tart.pool.macos.ready"] == "1" })
	must.Len(t, 1, e.vmNames(t), must.Sprint("one warm vm, no leftover of the interrupted boot"))
	task := h.StartTask(t, harness.TaskSpec{Config: sh(`exit 0`)})
	h.WaitEvent(t, task.ID, "Claimed warm VM")
	must.Eq(t, 0, h.WaitTask(t, task.ID).ExitCode)
	h.DestroyTask(t, task.ID, true)
}

// TestDriver_Shutdown_leavesWarmVMsForTheNextProcess stops the plugin
// gracefully (Shutdown detaches the pool): the ready warm VM keeps running
// and the next process adopts it instead of booting another.
func TestDriver_Shutdown_leavesWarmVMsForTheNextProcess(t *testing.T) {
	t.Parallel()
	e, h := newTartEnv(t, envOptions{PluginConfig: `
pool {
  name  = "macos"
  image = "` + testImage + `"
  size  = 1
}`})
	h.WaitFingerprint(t, func(fp *harness.Fingerprint) bool { return fp.Attributes["driver.tart.pool.macos.ready"] == "1" })
	warm := e.vms(t)
	must.Len(t, 1, warm)
	must.Eq(t, "running", warm[0].State)

	h.StopPlugin(t)
	must.StrContains(t, h.PluginLogs(), "detached from warm vms")
	must.Eq(t, warm, e.vms(t), must.Sprint("the warm vm survives the plugin's shutdown"))

	h.Relaunch(t)
	h.WaitFingerprint(t, func(fp *harness.Fingerprint) bool { return fp.Attributes["driver.tart.pool.macos.ready"] == "1" })
	must.Eq(t, warm, e.vms(t), must.Sprint("adopted, not replaced"))
	task := h.StartTask(t, harness.TaskSpec{Config: sh(`exit 0`)})
	must.Eq(t, warm[0].Name, taskVM(t, task))
	must.Eq(t, 0, h.WaitTask(t, task.ID).ExitCode)
	h.DestroyTask(t, task.ID, true)
}
