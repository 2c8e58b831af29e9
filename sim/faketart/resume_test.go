// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package faketart_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/shoenig/test/must"
)

// suspended boots name with --suspendable, suspends it and waits until
// tart run has exited, leaving it suspended.
func (e *env) suspended(name string) {
	e.t.Helper()
	p := e.start(name, "--suspendable")
	e.ok("suspend", name)
	must.Eq(e.t, 0, p.wait(e.t).code)
	must.Eq(e.t, "suspended", e.state(name))
}

// TestFaketart_Suspend_reference checks the suspend/resume behaviour of
// the reference, one subtest per documented fact, named after its
// section: resume instead of boot (its own delay), the snapshot copied by
// clone, and the ways a snapshot is lost or refused.
func TestFaketart_Suspend_reference(t *testing.T) {
	t.Parallel()
	t.Run("3.10_reuse_pattern_clone_resumes_with_resume_delay", func(t *testing.T) {
		t.Parallel()
		// A boot would take an hour: an agent answering within exec's
		// connect timeout proves the clone resumed.
		e := newEnv(t).set("FAKETART_BOOT_DELAY", "1h").set("FAKETART_RESUME_DELAY", "50ms")
		e.seedVM("tmpl", "darwin")
		e.suspended("tmpl")
		e.ok("clone", "tmpl", "use1")
		must.Eq(t, "suspended", e.state("use1"))
		p := e.start("use1")
		must.Eq(t, "ok\n", e.ok("exec", "use1", "echo", "ok"))
		must.StrHasPrefix(t, "restoring VM state from a snapshot...\nresuming VM...\n", p.stdout.String())
		// The template stays suspended and reusable.
		must.Eq(t, "suspended", e.state("tmpl"))
		e.ok("stop", "use1")
		p.wait(t)
		e.ok("delete", "use1")
		e.ok("clone", "tmpl", "use2")
		e.start("use2")
		must.Eq(t, "ok\n", e.ok("exec", "use2", "echo", "ok"))
	})
	t.Run("3.10_set_random_mac_discards_snapshot", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.seedVM("vm", "darwin")
		e.suspended("vm")
		e.ok("set", "vm", "--random-mac")
		must.Eq(t, "stopped", e.state("vm"))
	})
	t.Run("4.3_mac_edited_after_snapshot_refuses_restore", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.seedVM("vm", "darwin")
		e.suspended("vm")
		cfg := e.config("vm")
		cfg.MACAddress = "02:00:00:00:00:99"
		raw, err := cfg.MarshalJSON()
		must.NoError(t, err)
		must.NoError(t, os.WriteFile(filepath.Join(e.home, "vms", "vm", "config.json"), raw, 0o644))
		res := e.tart("run", "vm", "--no-graphics")
		must.Eq(t, 1, res.code)
		must.StrContains(t, res.stderr, "invalid argument")
		must.Eq(t, "restoring VM state from a snapshot...\n", res.stdout)
	})
	t.Run("3.6_mac_collision_at_run_discards_snapshot_and_boots", func(t *testing.T) {
		t.Parallel()
		// Two clones of one suspended template share its MAC: only the
		// first resumes, the second gets a new MAC and cold-boots.
		e := newEnv(t).set("FAKETART_BOOT_DELAY", "1h")
		e.seedVM("tmpl", "darwin")
		e.suspended("tmpl")
		e.ok("clone", "tmpl", "a")
		e.ok("clone", "tmpl", "b")
		pa := e.start("a")
		pb := e.start("b")
		must.StrContains(t, pa.stdout.String(), "resuming VM...")
		must.StrContains(t, pb.stdout.String(), "Resetting VM to assign a new MAC address...\n")
		must.StrNotContains(t, pb.stdout.String(), "resuming VM...")
		must.NotEq(t, e.config("a").MACAddress, e.config("b").MACAddress)
	})
	t.Run("3.6_injected_resume_failure", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t).set("FAKETART_FAIL_RESUME", "1")
		e.seedVM("vm", "darwin")
		e.suspended("vm")
		res := e.tart("run", "vm", "--no-graphics")
		must.Eq(t, 1, res.code)
		must.StrContains(t, res.stderr, "invalid argument")
	})
	t.Run("3.10_linux_guest_not_suspendable", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.seedVM("lin", "linux")
		res := e.tart("run", "lin", "--no-graphics", "--suspendable")
		must.Eq(t, 64, res.code)
		must.StrHasPrefix(t, "Error: You can only suspend macOS VMs", res.stderr)
	})
}
