// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/driver/harness"
)

func TestDriver_StartTask_badInput(t *testing.T) {
	t.Parallel()
	e, h := newTartEnv(t, envOptions{PluginConfig: `boot_timeout = "2s"
gc_grace_period = "2s"`})
	for _, tc := range []struct {
		name, config string
		files        map[string][]byte
		recoverable  bool
		want         string
	}{
		{name: "unknown image", config: `image = "ghcr.io/nobody/nothing:1"
command = "true"`, want: `image "ghcr.io/nobody/nothing:1" was not found in its registry`},
		{name: "unknown local image", config: `image = "no-such-vm"
command = "true"`, want: `image "no-such-vm": no local VM of that name exists`},
		{name: "pull never, not cached", config: sh("true", `pull_policy = "never"`), want: "is not cached and pull_policy is never"},
		{name: "bad pull policy", config: sh("true", `pull_policy = "sometimes"`), want: `invalid task config: pull_policy = "sometimes" is not one of "if_not_present", "always", "never"`},
		{name: "stdin file missing", config: sh("true", `stdin_file = "local/nope.json"`), want: `invalid task config: stdin_file = "local/nope.json" does not exist in the task directory`},
		{name: "host dir not allowed", config: sh("true", `shared_dir {
  host_path = "/etc"
}`), want: `invalid task config: shared_dir[0].host_path = "/etc" is absolute, which needs allow_host_dirs = true in the plugin config`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.TryStartTask(harness.TaskSpec{Config: tc.config, Files: tc.files})
			must.ErrorContains(t, err, tc.want)
			must.StrNotContains(t, err.Error(), "\n", must.Sprint("one line: Nomad shows it as a task event"))
			must.Eq(t, tc.recoverable, harness.IsRecoverable(err))
			must.SliceEmpty(t, e.vmNames(t))
		})
	}
	must.SliceEmpty(t, e.vmNames(t))
}

func TestDriver_StartTask_malformedConfig(t *testing.T) {
	t.Parallel()
	_, h := newTartEnv(t, envOptions{})
	_, err := h.TryStartTask(harness.TaskSpec{Config: `image = "x"
command = "true"
nonsense = 1`})
	var ve *harness.ValidationError
	must.True(t, errors.As(err, &ve), must.Sprint(err))
	_, err = h.TryStartTask(harness.TaskSpec{Config: `image = "x"`})
	must.True(t, errors.As(err, &ve), must.Sprint(err)) // command is required
}

func TestDriver_StartTask_agentNeverReady(t *testing.T) {
	t.Parallel()
	e, h := newTartEnv(t, envOptions{Env: []string{"FAKETART_NO_AGENT=1", "FAKETART_EXEC_CONNECT_TIMEOUT=100ms"},
		PluginConfig: "boot_timeout = \"1s\"\ngc_grace_period = \"1s\""})
	_, err := h.TryStartTask(harness.TaskSpec{Config: sh("true")})
	must.ErrorContains(t, err, "failed to start VM")
	must.SliceEmpty(t, e.vmNames(t))
}

func TestDriver_StartTask_noSlotIsRecoverable(t *testing.T) {
	t.Parallel()
	e, h := newTartEnv(t, envOptions{PluginConfig: "max_vms = 1\nslot_wait_timeout = \"300ms\""})
	first := h.StartTask(t, harness.TaskSpec{Config: sh(`echo ready; while :; do sleep 0.05; done`)})
	h.WaitStdout(t, first.ID, "ready")
	_, err := h.TryStartTask(harness.TaskSpec{Config: sh("true")})
	must.ErrorContains(t, err, "no VM slot free: all 1 slots are in use")
	must.True(t, harness.IsRecoverable(err))
	must.Eq(t, []string{taskVM(t, first)}, e.vmNames(t))
	h.StopTask(t, first.ID, time.Second, "")
	h.WaitTask(t, first.ID)
	h.DestroyTask(t, first.ID, true)
}

func TestDriver_StartTask_vmLimitIsRecoverable(t *testing.T) {
	t.Parallel()
	e, h := newTartEnv(t, envOptions{Env: []string{"FAKETART_PHANTOM_VMS=2"}})
	_, err := h.TryStartTask(harness.TaskSpec{Config: sh("true")})
	must.ErrorContains(t, err, "the host refused another VM")
	must.True(t, harness.IsRecoverable(err))
	must.SliceEmpty(t, e.vmNames(t))
}

func TestDriver_tartMissing(t *testing.T) {
	t.Parallel()
	e, _ := newTartEnv(t, envOptions{NoLaunch: true})
	h := harness.Launch(t, buildPlugin(t), harness.Options{
		PluginConfig: `tart_path = "` + filepath.Join(t.TempDir(), "tart") + `"
tart_home = "` + e.home + `"`,
	})
	fp := h.LastFingerprint(t)
	must.False(t, fp.Detected)
	must.StrContains(t, fp.HealthDescription, "not found")
	_, err := h.TryStartTask(harness.TaskSpec{Config: sh("true")})
	must.ErrorContains(t, err, "tart is not ready")
	must.True(t, harness.IsRecoverable(err))
}

// TestDriver_StartTask_stdinFileConfined checks a symlink out of the task
// directory is refused as stdin_file.
func TestDriver_StartTask_stdinFileConfined(t *testing.T) {
	t.Parallel()
	e, h := newTartEnv(t, envOptions{})
	outside := filepath.Join(t.TempDir(), "host-secret")
	must.NoError(t, os.WriteFile(outside, []byte("x"), 0o600))
	_, err := h.TryStartTask(harness.TaskSpec{Config: sh("true", `stdin_file = "local/../../../../`+strings.TrimPrefix(outside, "/")+`"`)})
	must.ErrorContains(t, err, "leaves the task directory")
	must.SliceEmpty(t, e.vmNames(t))
}

// TestDriver_secretsStayOutOfHostProcesses hands a payload from secrets/
// to the guest on stdin and a secret through the task env, then checks that
// neither appears in any process's argv or environment, in events, or in the
// plugin's logs, while the guest command did receive both.
func TestDriver_secretsStayOutOfHostProcesses(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/self/cmdline"); err != nil {
		t.Skip("needs /proc")
	}
	e, h := newTartEnv(t, envOptions{})
	payload := "jit-config-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	envSecret := "env-secret-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	task := h.StartTask(t, harness.TaskSpec{
		Config: sh(`cat > received-payload; printf '%s' "$RUNNER_TOKEN" > received-env; echo ready; while :; do sleep 0.05; done`,
			`stdin_file = "secrets/payload.json"`),
		Files: map[string][]byte{"secrets/payload.json": []byte(payload)},
		Env:   map[string]string{"RUNNER_TOKEN": envSecret},
	})
	h.WaitStdout(t, task.ID, "ready")
	guest := e.guestDir(taskVM(t, task))
	got, err := os.ReadFile(filepath.Join(guest, "received-payload"))
	must.NoError(t, err)
	must.Eq(t, payload, string(got))
	got, err = os.ReadFile(filepath.Join(guest, "received-env"))
	must.NoError(t, err)
	must.Eq(t, envSecret, string(got))

	procs, _ := filepath.Glob("/proc/[0-9]*")
	checked := 0
	for _, p := range procs {
		// faketart runs guest commands on the host, in the VM's guest dir:
		// those are the guest's processes, which must see the secrets.
		if cwd, err := os.Readlink(filepath.Join(p, "cwd")); err == nil && strings.HasPrefix(cwd, filepath.Join(e.home, "vms")+"/") {
			continue
		}
		for _, f := range []string{"cmdline", "environ"} {
			b, err := os.ReadFile(filepath.Join(p, f))
			if err != nil {
				continue // another user's process, or gone
			}
			checked++
			for _, s := range []string{payload, envSecret} {
				if strings.Contains(string(b), s) {
					t.Errorf("secret found in %s/%s: %q", p, f, strings.ReplaceAll(string(b), "\x00", " "))
				}
			}
		}
	}
	must.Greater(t, 10, checked)
	h.StopTask(t, task.ID, time.Second, "")
	h.WaitTask(t, task.ID)
	for _, ev := range h.Events() {
		must.StrNotContains(t, ev.Message, payload)
		must.StrNotContains(t, ev.Message, envSecret)
		for _, v := range ev.Annotations {
			must.StrNotContains(t, v, payload)
		}
	}
	logs := h.PluginLogs()
	must.StrNotContains(t, logs, payload)
	must.StrNotContains(t, logs, envSecret)
	stdout, stderr := h.Logs(t, task.ID)
	must.StrNotContains(t, stdout+stderr, payload)
	h.DestroyTask(t, task.ID, true)
}
