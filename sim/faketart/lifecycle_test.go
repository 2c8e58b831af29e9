// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package faketart_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoenig/test/must"
)

func TestFaketart_RunStop_lifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.seedVM("vm", "linux")
	p := e.start("vm")
	must.Eq(t, "running", e.state("vm"))
	must.StrContains(t, e.ok("list"), "running")

	// A second run of the same VM: exit 2, the first keeps running.
	r := e.tart("run", "vm", "--no-graphics")
	must.Eq(t, 2, r.code)
	must.Eq(t, "VM \"vm\" is already running!\n", r.stderr)

	// Running VMs cannot be deleted.
	r = e.tart("delete", "vm")
	must.Eq(t, 1, r.code)
	must.Eq(t, "VM \"vm\" is running\n", r.stderr)

	must.Eq(t, "", e.ok("stop", "vm"))
	res := p.wait(t)
	must.Eq(t, 0, res.code)
	must.Eq(t, "Stopping VM...\n", res.stdout)
	must.Eq(t, "stopped", e.state("vm"))
	must.FileNotExists(t, filepath.Join(e.home, "vms", "vm", "control.sock"))

	// Stopped again: exit 2.
	r = e.tart("stop", "vm")
	must.Eq(t, 2, r.code)
	e.ok("delete", "vm")
	must.Eq(t, "", e.ok("list", "-q"))
}

func TestFaketart_Run_killedLeavesStopped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.seedVM("vm", "darwin")
	p := e.start("vm")
	p.signal(t, syscall.SIGKILL)
	res := p.wait(t)
	must.Eq(t, syscall.SIGKILL, res.signaled)
	must.Eq(t, "stopped", e.state("vm"))
	// The VM can run again right away.
	p2 := e.start("vm")
	must.Eq(t, "running", e.state("vm"))
	p2.signal(t, syscall.SIGTERM) // not handled by tart: dies by the signal
	must.Eq(t, syscall.SIGTERM, p2.wait(t).signaled)
	must.Eq(t, "stopped", e.state("vm"))
}

func TestFaketart_Stop_timeoutKills(t *testing.T) {
	t.Parallel()
	e := newEnv(t).set("FAKETART_RUN_IGNORE_SIGINT", "1")
	e.seedVM("vm", "linux")
	p := e.start("vm")
	must.Eq(t, "", e.ok("stop", "vm", "--timeout", "1"))
	res := p.wait(t)
	must.Eq(t, syscall.SIGKILL, res.signaled)
	e.waitState("vm", "stopped")

	// --timeout 0: SIGINT then SIGKILL at once.
	p = e.start("vm")
	e.ok("stop", "vm", "-t", "0")
	must.Eq(t, syscall.SIGKILL, p.wait(t).signaled)
}

func TestFaketart_Run_signals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.seedVM("mac", "darwin")

	t.Run("sigusr2_guest_shutdown", func(t *testing.T) {
		p := e.start("mac")
		p.signal(t, syscall.SIGUSR2)
		res := p.wait(t)
		must.Eq(t, 0, res.code)
		must.Eq(t, "Requesting guest OS to stop...\nguest has stopped the virtual machine\n", res.stdout)
	})
	t.Run("sigusr1_without_suspendable_kills", func(t *testing.T) {
		p := e.start("mac")
		p.signal(t, syscall.SIGUSR1)
		res := p.wait(t)
		must.Eq(t, 1, res.code)
		must.StrHasPrefix(t, "Failed to suspend the VM: ", res.stderr)
		must.Eq(t, "stopped", e.state("mac"))
	})
	t.Run("suspend_then_resume", func(t *testing.T) {
		p := e.start("mac", "--suspendable")
		must.Eq(t, "", e.ok("suspend", "mac"))
		res := p.wait(t)
		must.Eq(t, 0, res.code)
		must.Eq(t, "pausing VM to take a snapshot...\ncreating a snapshot...\nsnapshot created successfully! shutting down the VM...\n", res.stdout)
		must.Eq(t, "suspended", e.state("mac"))

		p = e.start("mac") // --suspendable implied
		e.ok("stop", "mac")
		res = p.wait(t)
		must.Eq(t, "restoring VM state from a snapshot...\nresuming VM...\nStopping VM...\n", res.stdout)
		must.Eq(t, "stopped", e.state("mac"))
	})
	t.Run("stop_suspended_discards_snapshot", func(t *testing.T) {
		p := e.start("mac", "--suspendable")
		e.ok("suspend", "mac")
		p.wait(t)
		must.Eq(t, "suspended", e.state("mac"))
		must.Eq(t, "", e.ok("stop", "mac"))
		must.Eq(t, "stopped", e.state("mac"))
	})
}

func TestFaketart_Run_guestTimers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.seedVM("vm", "linux")
	e.set("FAKETART_RUN_CRASH_AFTER", "100ms")
	res := e.startNoWait("vm").wait(t)
	must.Eq(t, 1, res.code)
	must.StrHasPrefix(t, "guest has stopped the virtual machine due to error: ", res.stdout)

	delete(e.vars, "FAKETART_RUN_CRASH_AFTER")
	e.set("FAKETART_GUEST_STOP_AFTER", "100ms")
	res = e.startNoWait("vm").wait(t)
	must.Eq(t, 0, res.code)
	must.Eq(t, "guest has stopped the virtual machine\n", res.stdout)
}

func TestFaketart_Run_vmLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, n := range []string{"m1", "m2", "m3"} {
		e.seedVM(n, "darwin")
	}
	e.seedVM("l1", "linux")
	e.start("m1")
	e.start("m2")
	e.start("l1") // Linux guests do not count

	r := e.tart("run", "m3", "--no-graphics")
	must.Eq(t, 1, r.code)
	must.Eq(t, "The number of VMs exceeds the system limit (other running VMs: l1, m1, m2)\n", r.stderr)
	must.Eq(t, "stopped", e.state("m3"))

	// A phantom (leaked) slot: limit error with nothing else visible.
	e2 := newEnv(t).set("FAKETART_PHANTOM_VMS", "2")
	e2.seedVM("m", "darwin")
	r = e2.tart("run", "m", "--no-graphics")
	must.Eq(t, 1, r.code)
	must.Eq(t, "The number of VMs exceeds the system limit\n", r.stderr)

	// A raised limit lets a third macOS VM run.
	e.set("FAKETART_VM_LIMIT", "3")
	e.start("m3")
	must.Eq(t, "running", e.state("m3"))
}

func TestFaketart_Run_concurrentLimitIsAtomic(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	names := []string{"a", "b", "c", "d"}
	for _, n := range names {
		e.seedVM(n, "darwin")
	}
	procs := make([]*runProc, len(names))
	for i, n := range names {
		procs[i] = e.startNoWait(n)
	}
	// Exactly two runs survive; the others exit 1 with the limit error.
	exited := func() (n int) {
		for _, p := range procs {
			select {
			case <-p.done:
				n++
			default:
			}
		}
		return n
	}
	deadline := time.Now().Add(10 * time.Second)
	for exited() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	failed := 0
	for _, p := range procs {
		select {
		case <-p.done:
			must.Eq(t, 1, p.res.code)
			must.StrContains(t, p.res.stderr, "The number of VMs exceeds the system limit")
			failed++
		default:
		}
	}
	must.Eq(t, 2, failed)
	running := 0
	for _, n := range names {
		if e.state(n) == "running" {
			running++
		}
	}
	must.Eq(t, 2, running)
}

func TestFaketart_Run_macCollision(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.seedVM("a", "linux")
	e.seedVM("b", "linux")
	// Give b the same MAC, as two clones of one suspended VM would have.
	b := e.config("b")
	b.MACAddress = cfg.MACAddress
	raw, err := b.MarshalJSON()
	must.NoError(t, err)
	must.NoError(t, os.WriteFile(filepath.Join(e.home, "vms", "b", "config.json"), raw, 0o644))

	e.start("a")
	p := e.start("b")
	must.Eq(t, "running", e.state("b"))
	must.StrContains(t, p.stdout.String(), "There is already a running VM with the same MAC address!\nResetting VM to assign a new MAC address...\n")
	must.NotEq(t, cfg.MACAddress, e.config("b").MACAddress)
}

func TestFaketart_Run_dirShares(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.seedVM("mac", "darwin")
	share := t.TempDir()
	must.NoError(t, os.WriteFile(filepath.Join(share, "jit"), []byte("secret-config"), 0o600))
	e.start("mac", "--dir", "work:"+share+":ro")
	out := e.ok("exec", "mac", "cat", "Volumes/My Shared Files/work/jit")
	must.Eq(t, "secret-config", out)
	e.ok("stop", "mac")
	e.waitState("mac", "stopped")
	must.FileNotExists(t, filepath.Join(e.home, "vms", "mac", "guest", "Volumes", "My Shared Files"))

	// A missing host directory fails the start.
	r := e.tart("run", "mac", "--no-graphics", "--dir", filepath.Join(share, "nope"))
	must.Eq(t, 1, r.code)
	must.True(t, strings.HasPrefix(r.stderr, "Error Domain=VZErrorDomain"))
}

func TestFaketart_Run_startDelayShowsStopped(t *testing.T) {
	t.Parallel()
	e := newEnv(t).set("FAKETART_RUN_START_DELAY", "300ms")
	e.seedVM("vm", "linux")
	p := e.startNoWait("vm")
	must.Eq(t, "stopped", e.state("vm"), must.Sprint("right after spawn the lock is not taken yet"))
	e.waitState("vm", "running")
	e.ok("stop", "vm")
	must.Eq(t, 0, p.wait(t).code)
}
