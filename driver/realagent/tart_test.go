// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package realagent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil/nomadagent"
)

const (
	// poolImage is the warm pool's image; coldImage is in the registry but
	// in no pool, so its tasks cold-start.
	poolImage = "ghcr.io/cirruslabs/macos-sequoia-base:latest"
	coldImage = "ghcr.io/cirruslabs/macos-sonoma-base:latest"
	// poolPrefix starts the names of the warm pool's VMs.
	poolPrefix = "ntart-pool-macos-"
	pluginName = "nomad-driver-tart"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.CleanupBuilds()
	os.Exit(code)
}

// startAgent starts an agent whose tart driver has a warm pool "macos" of
// one VM (ready before it returns) and room for one more VM.
func startAgent(t *testing.T) *nomadagent.Agent {
	t.Helper()
	return nomadagent.Start(t, nomadagent.Options{
		Images: []string{poolImage, coldImage},
		PluginConfig: map[string]string{pluginName: nomadagent.FastTartConfig + fmt.Sprintf(`
max_vms = 2
pool {
  name  = "macos"
  image = %q
  size  = 1
}`, poolImage)},
		Ready: func(n *api.Node) bool { return n.Attributes["driver.tart.pool.macos.ready"] == "1" },
	})
}

// job is a batch job of one task "t" on the tart driver that is neither
// restarted nor rescheduled. config is the body of the task's config
// block; extra goes into the task block.
func job(id, config, extra string) string {
	return fmt.Sprintf(`
job %q {
  type = "batch"
  group "g" {
    restart {
      attempts = 0
      mode     = "fail"
    }
    reschedule {
      attempts  = 0
      unlimited = false
    }
    task "t" {
      driver = "tart"
      config {
%s
      }
%s
      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}`, id, config, extra)
}

// shCommand is task config running script with /bin/sh in a VM of image.
func shCommand(image, script string) string {
	return fmt.Sprintf("image = %q\ncommand = \"/bin/sh\"\nargs = [\"-c\", %q]", image, script)
}

// waitLog polls the task's log (stdout or stderr) until it contains want.
func waitLog(t *testing.T, a *nomadagent.Agent, alloc *api.Allocation, logType, want string) {
	t.Helper()
	deadline := time.Now().Add(nomadagent.WaitTimeout)
	for {
		got := a.AllocLogs(t, alloc, "t", logType)
		if strings.Contains(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s never printed %q; it printed %q", logType, want, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// terminated returns the exit code of the task's last Terminated event.
func terminated(t *testing.T, alloc *api.Allocation) int {
	t.Helper()
	st := alloc.TaskStates["t"]
	must.NotNil(t, st)
	for i := len(st.Events) - 1; i >= 0; i-- {
		if st.Events[i].Type == api.TaskTerminated {
			return st.Events[i].ExitCode
		}
	}
	t.Fatalf("no Terminated event:\n%s", nomadagent.TaskEvents(alloc))
	return 0
}

// eventTypes counts the task's events of type typ.
func countEvents(alloc *api.Allocation, typ string) int {
	n := 0
	for _, e := range alloc.TaskStates["t"].Events {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// driverEvent finds the task's first Driver event starting with prefix.
func driverEvent(t *testing.T, alloc *api.Allocation, prefix string) *api.TaskEvent {
	t.Helper()
	for _, e := range alloc.TaskStates["t"].Events {
		if e.Type == api.TaskDriverMessage && strings.HasPrefix(e.DisplayMessage, prefix) {
			return e
		}
	}
	t.Fatalf("no driver event %q:\n%s", prefix, nomadagent.TaskEvents(alloc))
	return nil
}

// checkNoTaskVMs waits until TART_HOME holds only the warm pool's VMs (at
// most its size) and none of gone, the VMs the test's tasks used.
func checkNoTaskVMs(t *testing.T, a *nomadagent.Agent, gone ...string) {
	t.Helper()
	deadline := time.Now().Add(nomadagent.WaitTimeout)
	for {
		vms := a.VMs(t)
		extra := slices.DeleteFunc(slices.Clone(vms), func(vm string) bool {
			return strings.HasPrefix(vm, poolPrefix) && !slices.Contains(gone, vm)
		})
		if len(extra) == 0 && len(vms) <= 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("VMs left in TART_HOME: %v (task VMs: %v)", vms, extra)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitPoolVM waits until a warm-pool VM other than those in not runs and
// returns its name.
func waitPoolVM(t *testing.T, a *nomadagent.Agent, not ...string) string {
	t.Helper()
	deadline := time.Now().Add(nomadagent.WaitTimeout)
	for {
		var vms []struct{ Name, State string }
		must.NoError(t, json.Unmarshal([]byte(a.Tart(t, "list", "--source", "local", "--format", "json")), &vms))
		for _, vm := range vms {
			if strings.HasPrefix(vm.Name, poolPrefix) && vm.State == "running" && !slices.Contains(not, vm.Name) {
				return vm.Name
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no running warm VM other than %v: %+v", not, vms)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// warmClaims counts the "Claimed warm VM" events of every allocation on
// the node so far: the value driver.tart.starts.warm reaches.
func warmClaims(t *testing.T, a *nomadagent.Agent) int {
	t.Helper()
	allocs, _, err := a.API().Nodes().Allocations(a.Node(t).ID, nil)
	must.NoError(t, err)
	n := 0
	for _, alloc := range allocs {
		for _, st := range alloc.TaskStates {
			for _, e := range st.Events {
				if e.Type == api.TaskDriverMessage && strings.HasPrefix(e.DisplayMessage, "Claimed warm VM ") {
					n++
				}
			}
		}
	}
	return n
}

// gateScript prints ready, marks its guest dir with "started", waits for
// a file "go" in it and exits with code.
func gateScript(code int) string {
	return fmt.Sprintf("echo ready; touch started; while [ ! -f go ]; do sleep 0.1; done; echo released; exit %d", code)
}

// guestDir finds the guest directory of the VM whose task ran gateScript.
func guestDir(t *testing.T, a *nomadagent.Agent) (vm, dir string) {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(a.TartHome, "vms", "*", "guest", "started"))
	must.NoError(t, err)
	must.Len(t, 1, matches, must.Sprintf("guest dirs marked started: %v", matches))
	dir = filepath.Dir(matches[0])
	return filepath.Base(filepath.Dir(dir)), dir
}

func TestNomadTart(t *testing.T) {
	a := startAgent(t)

	t.Run("fingerprint", func(t *testing.T) {
		n := a.Node(t)
		d := n.Drivers["tart"]
		must.NotNil(t, d)
		must.True(t, d.Detected)
		must.True(t, d.Healthy, must.Sprint(d.HealthDescription))
		must.StrHasPrefix(t, "Healthy", d.HealthDescription)
		must.Eq(t, "1", n.Attributes["driver.tart"])
		must.Eq(t, "2.32.1", n.Attributes["driver.tart.version"]) // faketart's version
		must.Eq(t, "1", n.Attributes["driver.tart.pool.macos.ready"])
		must.MapContainsKey(t, n.Attributes, "driver.tart.slots.available")
	})

	t.Run("warm_pool_claim", func(t *testing.T) {
		before := a.VMs(t)
		must.Len(t, 1, before)
		id := a.RunJobHCL(t, job("warm-batch", shCommand(poolImage, `echo warm; exit 0`), ""))
		alloc := a.WaitAllocDone(t, a.WaitAlloc(t, id).ID)
		must.Eq(t, api.AllocClientStatusComplete, alloc.ClientStatus, must.Sprint(nomadagent.TaskEvents(alloc)))
		must.Eq(t, 0, terminated(t, alloc))
		ev := driverEvent(t, alloc, "Claimed warm VM "+before[0])
		t.Logf("claim event: %q", ev.DisplayMessage)
		must.Eq(t, "warm\n", a.AllocLogs(t, alloc, "t", "stdout"))
		// The claimed VM is deleted and the pool boots a replacement.
		checkNoTaskVMs(t, a, before[0])
		waitPoolVM(t, a, before[0])
	})

	t.Run("claim_reaches_node_attributes", func(t *testing.T) {
		// The driver sends a claim's attributes within 200 ms; Nomad's
		// client puts them on the node at its next batched node update.
		// The lag is logged (README, Attributes), not asserted.
		a.WaitNodeAttr(t, "driver.tart.starts.warm", strconv.Itoa(warmClaims(t, a)))
		waitPoolVM(t, a)
		a.WaitNodeAttr(t, "driver.tart.pool.macos.ready", "1")
		id := a.RunJobHCL(t, job("warm-attrs", shCommand(poolImage, `exit 0`), ""))
		alloc := a.WaitAllocDone(t, a.WaitAlloc(t, id).ID)
		must.Eq(t, api.AllocClientStatusComplete, alloc.ClientStatus, must.Sprint(nomadagent.TaskEvents(alloc)))
		claimed := time.Unix(0, driverEvent(t, alloc, "Claimed warm VM ").Time)
		a.WaitNodeAttr(t, "driver.tart.starts.warm", strconv.Itoa(warmClaims(t, a)))
		t.Logf("driver.tart.starts.warm reached the node %.1fs after the claim event", time.Since(claimed).Seconds())
		checkNoTaskVMs(t, a)
	})

	t.Run("command_not_in_guest", func(t *testing.T) {
		id := a.RunJobHCL(t, job("missing-command", fmt.Sprintf("image = %q\ncommand = \"/no/such/command\"", poolImage), ""))
		alloc := a.WaitAllocDone(t, a.WaitAlloc(t, id).ID)
		must.Eq(t, 127, terminated(t, alloc))
		must.Eq(t, "/no/such/command: not found\n", a.AllocLogs(t, alloc, "t", "stderr"))
		checkNoTaskVMs(t, a)
	})

	t.Run("batch_cold_logs_and_exit_code", func(t *testing.T) {
		id := a.RunJobHCL(t, job("cold-batch", shCommand(coldImage,
			`echo "out $GREETING $NOMAD_TASK_NAME"; echo "err line" >&2; exit 3`),
			`env {
        GREETING = "hello"
      }`))
		alloc := a.WaitAllocDone(t, a.WaitAlloc(t, id).ID)
		must.Eq(t, api.AllocClientStatusFailed, alloc.ClientStatus, must.Sprint(nomadagent.TaskEvents(alloc)))
		must.Eq(t, 3, terminated(t, alloc))
		must.True(t, alloc.TaskStates["t"].Failed)
		must.Eq(t, "out hello t\n", a.AllocLogs(t, alloc, "t", "stdout"))
		must.Eq(t, "err line\n", a.AllocLogs(t, alloc, "t", "stderr"))
		// A cold start: no warm VM was claimed.
		for _, e := range alloc.TaskStates["t"].Events {
			must.StrNotContains(t, e.DisplayMessage, "Claimed warm VM")
		}
		checkNoTaskVMs(t, a)
	})

	t.Run("dispatch_payload_on_stdin", func(t *testing.T) {
		// The payload reaches the guest command on stdin (stdin_file), and
		// the job's meta its environment, as the runner jobs use them.
		id := a.RunJobHCL(t, `
job "payload" {
  type = "batch"
  parameterized {
    payload       = "required"
    meta_required = ["runner_name"]
  }
  group "g" {
    restart {
      attempts = 0
      mode     = "fail"
    }
    task "t" {
      driver = "tart"
      dispatch_payload {
        file = "payload.txt"
      }
      config {
        image      = "`+poolImage+`"
        stdin_file = "local/payload.txt"
        command    = "/bin/sh"
        args       = ["-c", "echo \"$NOMAD_META_runner_name got $(cat)\""]
      }
      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}`)
		resp, _, err := a.API().Jobs().Dispatch(id, map[string]string{"runner_name": "r1"}, []byte("the-payload"), "", nil)
		must.NoError(t, err)
		alloc := a.WaitAllocDone(t, a.WaitAlloc(t, resp.DispatchedJobID).ID)
		must.Eq(t, api.AllocClientStatusComplete, alloc.ClientStatus, must.Sprint(nomadagent.TaskEvents(alloc)))
		must.Eq(t, "r1 got the-payload\n", a.AllocLogs(t, alloc, "t", "stdout"))
		checkNoTaskVMs(t, a)
	})

	t.Run("exec", func(t *testing.T) {
		id := a.RunJobHCL(t, job("exec", shCommand(poolImage, `echo ready; sleep 300`), `kill_timeout = "2s"`))
		alloc := a.WaitAllocRunning(t, id)
		waitLog(t, a, alloc, "stdout", "ready")
		ctx, cancel := context.WithTimeout(context.Background(), nomadagent.WaitTimeout)
		defer cancel()

		var stdout, stderr bytes.Buffer
		code, err := a.API().Allocations().Exec(ctx, alloc, "t", false,
			[]string{"/bin/sh", "-c", `read x; echo "out $x"; echo "err $x" >&2; exit 4`},
			strings.NewReader("ping\n"), &stdout, &stderr, nil, nil)
		must.NoError(t, err)
		must.Eq(t, 4, code)
		must.Eq(t, "out ping\n", stdout.String())
		must.Eq(t, "err ping\n", stderr.String())

		stdout.Reset()
		stderr.Reset()
		sizes := make(chan api.TerminalSize, 1)
		sizes <- api.TerminalSize{Height: 40, Width: 100}
		stdin, stdinW := io.Pipe()
		defer stdinW.Close()
		code, err = a.API().Allocations().Exec(ctx, alloc, "t", true,
			[]string{"/bin/sh", "-c", `if [ -t 0 ] && [ -t 1 ]; then echo "a tty"; fi; stty size; exit 5`},
			stdin, &stdout, &stderr, sizes, nil)
		must.NoError(t, err)
		must.Eq(t, 5, code)
		must.StrContains(t, stdout.String(), "a tty")
		must.StrContains(t, stdout.String(), "40 100")

		a.StopJob(t, id)
		a.WaitAllocDone(t, alloc.ID)
		checkNoTaskVMs(t, a)
	})

	t.Run("signal", func(t *testing.T) {
		id := a.RunJobHCL(t, job("signal", shCommand(poolImage,
			`trap 'echo got-usr1' USR1; echo ready; while :; do sleep 0.1; done`), `kill_timeout = "2s"`))
		alloc := a.WaitAllocRunning(t, id)
		waitLog(t, a, alloc, "stdout", "ready")
		must.NoError(t, a.API().Allocations().Signal(alloc, nil, "t", "SIGUSR1"))
		waitLog(t, a, alloc, "stdout", "got-usr1")
		a.StopJob(t, id)
		a.WaitAllocDone(t, alloc.ID)
		checkNoTaskVMs(t, a)
	})

	t.Run("stop_kill_signal", func(t *testing.T) {
		// The task ends on SIGINT by itself, well within kill_timeout.
		id := a.RunJobHCL(t, job("stop-sigint", shCommand(poolImage,
			`trap 'echo got-int; exit 0' INT; echo ready; while :; do sleep 0.1; done`),
			"kill_signal = \"SIGINT\"\n      kill_timeout = \"60s\""))
		alloc := a.WaitAllocRunning(t, id)
		waitLog(t, a, alloc, "stdout", "ready")
		a.StopJob(t, id)
		alloc = a.WaitAllocDone(t, alloc.ID)
		must.StrContains(t, a.AllocLogs(t, alloc, "t", "stdout"), "got-int")
		must.Eq(t, 0, terminated(t, alloc), must.Sprint(nomadagent.TaskEvents(alloc)))
		checkNoTaskVMs(t, a)
	})

	t.Run("stop_kill_timeout", func(t *testing.T) {
		// The task ignores SIGTERM: the driver must wait kill_timeout, then
		// kill it.
		const killTimeout = 2 * time.Second
		id := a.RunJobHCL(t, job("stop-timeout", shCommand(poolImage,
			`trap '' TERM; echo ready; while :; do sleep 0.1; done`), `kill_timeout = "2s"`))
		alloc := a.WaitAllocRunning(t, id)
		waitLog(t, a, alloc, "stdout", "ready")
		a.StopJob(t, id)
		alloc = a.WaitAllocDone(t, alloc.ID)
		var killing, killed *api.TaskEvent
		for _, e := range alloc.TaskStates["t"].Events {
			switch e.Type {
			case api.TaskKilling:
				killing = e
			case api.TaskKilled:
				killed = e
			}
		}
		must.NotNil(t, killing, must.Sprint(nomadagent.TaskEvents(alloc)))
		must.NotNil(t, killed, must.Sprint(nomadagent.TaskEvents(alloc)))
		must.Eq(t, killTimeout, killing.KillTimeout)
		waited := time.Duration(killed.Time - killing.Time)
		t.Logf("Killing to Killed: %s (kill_timeout %s)", waited, killTimeout)
		must.GreaterEq(t, killTimeout, waited)
		checkNoTaskVMs(t, a)
	})

	t.Run("bad_config", func(t *testing.T) {
		for _, tc := range []struct {
			name, config string
			event        string   // event type
			want         []string // substrings of its message
		}{
			{name: "unknown_field", config: shCommand(poolImage, "true") + "\nbogus_option = 1",
				event: api.TaskFailedValidation, want: []string{"bogus_option"}},
			{name: "missing_command", config: fmt.Sprintf("image = %q", poolImage),
				event: api.TaskFailedValidation, want: []string{`"command" is required`}},
			{name: "bad_network_mode", config: shCommand(poolImage, "true") + "\nnetwork_mode = \"wifi\"",
				event: api.TaskDriverFailure, want: []string{`network_mode = "wifi"`}},
			{name: "unpullable_image", config: shCommand("ghcr.io/cirruslabs/no-such-image:latest", "true"),
				event: api.TaskDriverFailure, want: []string{`image "ghcr.io/cirruslabs/no-such-image:latest" was not found in its registry`, "404"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				// In parallel: none of these starts a VM, and each waits
				// ~4s for Nomad's logmon to give up on the unopened log
				// FIFOs.
				t.Parallel()
				id := a.RunJobHCL(t, job("bad-"+strings.ReplaceAll(tc.name, "_", "-"), tc.config, ""))
				alloc := a.WaitAllocDone(t, a.WaitAlloc(t, id).ID)
				must.Eq(t, api.AllocClientStatusFailed, alloc.ClientStatus)
				var ev *api.TaskEvent
				for _, e := range alloc.TaskStates["t"].Events {
					if e.Type == tc.event {
						ev = e
					}
				}
				must.NotNil(t, ev, must.Sprintf("no %s event:\n%s", tc.event, nomadagent.TaskEvents(alloc)))
				t.Logf("%s: %s", ev.Type, ev.DisplayMessage)
				for _, w := range tc.want {
					must.StrContains(t, ev.DisplayMessage, w)
				}
				checkNoTaskVMs(t, a)
			})
		}
	})

	t.Run("plugin_sigkill", func(t *testing.T) {
		id := a.RunJobHCL(t, job("plugin-kill", shCommand(poolImage, gateScript(7)), ""))
		alloc := a.WaitAllocRunning(t, id)
		waitLog(t, a, alloc, "stdout", "ready")
		vm, dir := guestDir(t, a)
		old := a.PluginPIDs(pluginName)
		must.Len(t, 1, old)
		must.NoError(t, syscall.Kill(old[0], syscall.SIGKILL))

		// Nomad relaunches the plugin and the task runner recovers the task
		// on it: the task is still running, in the same VM.
		a.WaitPlugin(t, pluginName, old[0])
		alloc = a.Alloc(t, alloc.ID)
		must.Eq(t, "running", alloc.TaskStates["t"].State, must.Sprint(nomadagent.TaskEvents(alloc)))
		must.SliceContains(t, a.VMs(t), vm)

		must.NoError(t, os.WriteFile(filepath.Join(dir, "go"), nil, 0o644))
		alloc = a.WaitAllocDone(t, alloc.ID)
		must.Eq(t, 7, terminated(t, alloc), must.Sprint(nomadagent.TaskEvents(alloc)))
		must.StrContains(t, a.AllocLogs(t, alloc, "t", "stdout"), "released")
		must.Eq(t, 1, countEvents(alloc, api.TaskStarted))
		checkNoTaskVMs(t, a, vm)
	})

	t.Run("agent_sigkill_restart", func(t *testing.T) {
		id := a.RunJobHCL(t, job("agent-kill", shCommand(poolImage, gateScript(9)), ""))
		alloc := a.WaitAllocRunning(t, id)
		waitLog(t, a, alloc, "stdout", "ready")
		vm, dir := guestDir(t, a)
		waitPoolVM(t, a) // the pool's replacement for the claimed VM
		vmsBefore := a.VMs(t)

		pluginBefore := a.PluginPIDs(pluginName)
		a.Kill(t)
		a.Restart(t)
		t.Logf("plugin processes before the agent's SIGKILL: %v, after its restart: %v", pluginBefore, a.PluginPIDs(pluginName))
		alloc = a.WaitAllocRunning(t, id)
		must.Eq(t, "running", alloc.TaskStates["t"].State, must.Sprint(nomadagent.TaskEvents(alloc)))
		// Recovered, not restarted: the same VMs, no second task VM.
		must.SliceContainsAll(t, vmsBefore, a.VMs(t))

		must.NoError(t, os.WriteFile(filepath.Join(dir, "go"), nil, 0o644))
		alloc = a.WaitAllocDone(t, alloc.ID)
		must.Eq(t, 9, terminated(t, alloc), must.Sprint(nomadagent.TaskEvents(alloc)))
		// The restarted client also recovered the finished tasks of the
		// earlier subtests: the driver must not treat them as lost tasks.
		must.StrNotContains(t, a.Logs(), "task cannot be recovered")
		must.StrContains(t, a.AllocLogs(t, alloc, "t", "stdout"), "released")
		must.Eq(t, 1, countEvents(alloc, api.TaskStarted))
		checkNoTaskVMs(t, a, vm)
	})
}
