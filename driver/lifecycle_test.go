// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/driver/harness"
	"github.com/tartnomad/nomad-driver-tart/tart"
)

func TestDriver_StartTask_coldStart(t *testing.T) {
	t.Parallel()
	e, h := newTartEnv(t, envOptions{})
	task := h.StartTask(t, harness.TaskSpec{
		Config: sh(`echo "out $MY_VAR $NOMAD_TASK_NAME"; echo err-line >&2; exit 3`),
		Env:    map[string]string{"MY_VAR": "multi\nline"},
	})
	res := h.WaitTask(t, task.ID)
	must.Eq(t, 3, res.ExitCode)
	must.Eq(t, "", res.Err)
	stdout, stderr := h.Logs(t, task.ID)
	must.Eq(t, "out multi\nline task\n", stdout)
	must.Eq(t, "err-line\n", stderr)
	vm := taskVM(t, task)
	must.StrHasPrefix(t, "ntart-task-", vm)
	h.WaitEvent(t, task.ID, "Booting VM "+vm)
	h.WaitEvent(t, task.ID, "Pulling image: 100% (2.8 GiB of 2.8 GiB)") // the image was not cached
	h.WaitEvent(t, task.ID, "Pulled image "+testImage)
	seen := map[string]bool{}
	for _, ev := range h.TaskEvents(task.ID) {
		if strings.HasPrefix(ev.Message, "Pulling image: ") {
			must.False(t, seen[ev.Message], must.Sprint("progress event repeated: "+ev.Message))
			seen[ev.Message] = true
		}
	}
	must.MapContainsKey(t, seen, "Pulling image: 0% (0 B of 2.8 GiB)")
	must.SliceContains(t, e.vmNames(t), vm) // kept until DestroyTask
	h.DestroyTask(t, task.ID, true)
	must.SliceNotContains(t, e.vmNames(t), vm)
}

func TestDriver_StartTask_poolHit(t *testing.T) {
	t.Parallel()
	e, h := newTartEnv(t, envOptions{FullAgentStart: true, PluginConfig: `
pool {
  name  = "macos"
  image = "` + testImage + `"
  size  = 1
}`})
	h.WaitFingerprint(t, func(fp *harness.Fingerprint) bool { return fp.Attributes["driver.tart.pool.macos.ready"] == "1" })
	fp := h.LastFingerprint(t)
	must.Eq(t, "2", fp.Attributes["driver.tart.slots.total"])
	must.Eq(t, "1", fp.Attributes["driver.tart.slots.available"])
	must.Eq(t, "2.32.1", fp.Attributes["driver.tart.version"])
	// Only the long-lived process fills the pool: one warm VM, not three.
	must.Len(t, 1, e.vmNames(t))

	task := h.StartTask(t, harness.TaskSpec{Config: sh(`echo warm`)})
	vm := taskVM(t, task)
	must.StrHasPrefix(t, "ntart-pool-macos-", vm)
	ev := h.WaitEvent(t, task.ID, "Claimed warm VM "+vm)
	must.Eq(t, vm, ev.Annotations["vm_name"])
	must.Eq(t, 0, h.WaitTask(t, task.ID).ExitCode)
	stdout, _ := h.Logs(t, task.ID)
	must.Eq(t, "warm\n", stdout)
	for _, ev := range h.TaskEvents(task.ID) {
		must.StrNotContains(t, ev.Message, "Booting", must.Sprint("a pool hit must not boot"))
	}
	h.DestroyTask(t, task.ID, true)
	must.SliceNotContains(t, e.vmNames(t), vm)
	// The pool refills its slot with a fresh VM.
	h.WaitFingerprint(t, func(fp *harness.Fingerprint) bool {
		return fp.Attributes["driver.tart.pool.macos.ready"] == "1" && fp.Attributes["driver.tart.slots.available"] == "1"
	})
}

func TestDriver_StopTask(t *testing.T) {
	t.Parallel()
	_, h := newTartEnv(t, envOptions{})
	for _, tc := range []struct {
		name, script, signal string
		code, sig            int
		out                  string
	}{
		{name: "default signal", script: `trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done`,
			code: 7, out: "ready\ngot-term\n"},
		{name: "kill_signal", signal: "SIGINT", script: `trap 'echo got-int; exit 8' INT; echo ready; while :; do sleep 0.05; done`,
			code: 8, out: "ready\ngot-int\n"},
		// tart exec reports a guest command killed by a signal as -1, so
		// Nomad sees 255 and no signal (README, "How a task runs").
		{name: "untrapped kill_signal", script: `echo ready; while :; do sleep 0.05; done`,
			code: 255, sig: 0, out: "ready\n"},
		{name: "kill after timeout", script: `trap '' TERM; echo ready; while :; do sleep 0.05; done`,
			code: 137, sig: 9, out: "ready\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			task := h.StartTask(t, harness.TaskSpec{Config: sh(tc.script)})
			h.WaitStdout(t, task.ID, "ready")
			h.StopTask(t, task.ID, 500*time.Millisecond, tc.signal)
			res := h.WaitTask(t, task.ID)
			must.Eq(t, tc.code, res.ExitCode)
			must.Eq(t, tc.sig, res.Signal)
			stdout, _ := h.Logs(t, task.ID)
			must.Eq(t, tc.out, stdout)
			h.StopTask(t, task.ID, time.Second, "") // idempotent
			h.DestroyTask(t, task.ID, true)
			h.DestroyTask(t, task.ID, true) // idempotent
		})
	}
}

func TestDriver_SignalTask(t *testing.T) {
	t.Parallel()
	_, h := newTartEnv(t, envOptions{})
	task := h.StartTask(t, harness.TaskSpec{Config: sh(`trap 'echo got-usr1' USR1; trap 'exit 4' TERM; echo ready; while :; do sleep 0.05; done`)})
	h.SignalTask(t, task.ID, "SIGUSR1") // may arrive before the trap is set: the wrapper waits for the PID only
	h.WaitStdout(t, task.ID, "ready")
	h.SignalTask(t, task.ID, "SIGUSR1")
	h.WaitStdout(t, task.ID, "got-usr1")
	must.Error(t, h.TrySignalTask(task.ID, "SIG;rm"))
	h.SignalTask(t, task.ID, "SIGTERM")
	must.Eq(t, 4, h.WaitTask(t, task.ID).ExitCode)
	h.DestroyTask(t, task.ID, true)
}

func TestDriver_ExecTask(t *testing.T) {
	t.Parallel()
	_, h := newTartEnv(t, envOptions{})
	task := h.StartTask(t, harness.TaskSpec{Config: sh(`echo ready; while :; do sleep 0.05; done`)})
	h.WaitStdout(t, task.ID, "ready")

	r := h.ExecTask(t, task.ID, []string{"/bin/sh", "-c", "echo hi; echo oops >&2; exit 2"}, 10*time.Second)
	must.Eq(t, 2, r.ExitCode)
	must.Eq(t, "hi\n", string(r.Stdout))
	must.Eq(t, "oops\n", string(r.Stderr))

	s := h.ExecTaskStreaming(t, task.ID, harness.ExecOptions{Command: []string{"/bin/sh", "-c", "cat; echo done >&2; exit 5"},
		Stdin: strings.NewReader("from stdin\n")})
	must.Eq(t, 5, s.ExitCode)
	must.Eq(t, "from stdin\n", string(s.Stdout))
	must.Eq(t, "done\n", string(s.Stderr))

	tty := h.ExecTaskStreaming(t, task.ID, harness.ExecOptions{Command: []string{"/bin/sh", "-c", "test -t 1 && echo on-a-tty; exit 6"},
		Tty: true, TerminalSize: &harness.TerminalSize{Height: 40, Width: 100}, Stdin: strings.NewReader("")})
	must.Eq(t, 6, tty.ExitCode)
	must.StrContains(t, string(tty.Stdout), "on-a-tty")

	stats := h.TaskStats(t, task.ID, 100*time.Millisecond, 2)
	must.Len(t, 2, stats)
	must.Positive(t, stats[1].GetAggResourceUsage().GetMemory().GetRss())
	h.StopTask(t, task.ID, time.Second, "")
	h.WaitTask(t, task.ID)
	h.DestroyTask(t, task.ID, true)
}

func TestDriver_StartTask_sharedDir(t *testing.T) {
	t.Parallel()
	_, h := newTartEnv(t, envOptions{})
	task := h.StartTask(t, harness.TaskSpec{
		Config: sh(`cat "Volumes/My Shared Files/hello.txt"`, `shared_dir {
  host_path = "local/share"
  read_only = true
}`),
		Files: map[string][]byte{"local/share/hello.txt": []byte("from the host\n")},
	})
	must.Eq(t, 0, h.WaitTask(t, task.ID).ExitCode)
	stdout, _ := h.Logs(t, task.ID)
	must.Eq(t, "from the host\n", stdout)
	h.DestroyTask(t, task.ID, true)
}

// TestDriver_StartTask_poolOnlyForFittingTasks names a warm pool from
// tasks it cannot serve (a shared dir, more cpu): they cold-start with an
// event saying why, and the warm VM stays for a task that fits.
func TestDriver_StartTask_poolOnlyForFittingTasks(t *testing.T) {
	t.Parallel()
	e, h := newTartEnv(t, envOptions{PluginConfig: `
pool {
  name  = "macos"
  image = "` + testImage + `"
  size  = 1
  cpu   = 4
}`})
	h.WaitFingerprint(t, func(fp *harness.Fingerprint) bool { return fp.Attributes["driver.tart.pool.macos.ready"] == "1" })
	warm := e.vmNames(t)
	must.Len(t, 1, warm)

	for _, tc := range []struct {
		name, extra, reason string
		files               map[string][]byte
	}{
		{name: "shared-dir", extra: "pool = \"macos\"\nshared_dir {\n  host_path = \"local/share\"\n}",
			reason: "shared directories", files: map[string][]byte{"local/share/x": []byte("x")}},
		{name: "cpu", extra: "pool = \"macos\"\ncpu = 8", reason: "cpu 8 is not the pool's 4"},
		{name: "network", extra: "pool = \"macos\"\nnetwork_mode = \"softnet\"", reason: "network"},
		// A pool this client does not have (a typo, or another client's
		// pool): a cold start too, never a silent one.
		{name: "unknown", extra: `pool = "macos-runner"`, reason: `pool "macos-runner" is not configured on this client (pools: macos)`},
	} {
		task := h.StartTask(t, harness.TaskSpec{Name: tc.name, Config: sh(`exit 0`, tc.extra), Files: tc.files})
		must.Eq(t, tart.TaskVMName(task.ID), taskVM(t, task), must.Sprint(tc.name+": cold start"))
		ev := h.WaitEvent(t, task.ID, "Not using warm pool macos")
		must.StrContains(t, ev.Message, tc.reason)
		must.StrHasSuffix(t, "): cold start", ev.Message)
		h.WaitPluginLogLine(t, "[WARN]", "task cannot use the warm pool it names; cold starting", "task_id="+task.ID)
		must.Eq(t, 0, h.WaitTask(t, task.ID).ExitCode)
		h.DestroyTask(t, task.ID, true)
	}

	task := h.StartTask(t, harness.TaskSpec{Config: sh(`exit 0`, `pool = "macos"`)})
	must.Eq(t, warm[0], taskVM(t, task), must.Sprint("a fitting task claims the warm vm"))
	must.Eq(t, 0, h.WaitTask(t, task.ID).ExitCode)
	h.DestroyTask(t, task.ID, true)
}

// TestDriver_StartTask_missingCommand: a command that does not exist in the
// guest fails the way the shell reports it for a command of its own, with
// the shell's exit code (127 not found, 126 not executable), and the task's
// stderr names the command, not the guest wrapper (its $0 and line number).
func TestDriver_StartTask_missingCommand(t *testing.T) {
	t.Parallel()
	_, h := newTartEnv(t, envOptions{})
	for _, tc := range []struct {
		name, command string
		code          int
		stderr        string
	}{
		{name: "path", command: "/no/such/command", code: 127, stderr: "/no/such/command: not found\n"},
		{name: "name", command: "no-such-command", code: 127, stderr: "no-such-command: not found\n"},
		{name: "directory", command: "/", code: 126, stderr: "/: Permission denied\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			task := h.StartTask(t, harness.TaskSpec{Config: fmt.Sprintf("image = %q\ncommand = %q\n", testImage, tc.command)})
			res := h.WaitTask(t, task.ID)
			must.Eq(t, tc.code, res.ExitCode)
			_, stderr := h.Logs(t, task.ID)
			must.Eq(t, tc.stderr, stderr)
			must.Eq(t, "", res.Err)
			h.DestroyTask(t, task.ID, true)
		})
	}
}
