// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/driver/harness"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/sim/faketart"
	"github.com/tartnomad/nomad-driver-tart/tart"
)

// testImage is the OCI image every test's fake registry holds.
const testImage = "ghcr.io/cirruslabs/macos-sequoia-base:latest"

// tartEnv is one test's simulated Mac: a TART_HOME, a fake registry with
// testImage, and the faketart binary as tart.
type tartEnv struct {
	home, registry, tart string
	env                  []string
}

// envOptions tune newTartEnv.
type envOptions struct {
	// PluginConfig is added to the plugin config block.
	PluginConfig string
	// Env adds FAKETART_* knobs (boot delay defaults to 100ms).
	Env []string
	// NoLaunch returns before launching the plugin.
	NoLaunch bool
	// FullAgentStart replays Nomad's short-lived discovery and validation
	// processes first.
	FullAgentStart bool
	// Timeout bounds each harness RPC and wait (default 60s).
	Timeout time.Duration
}

// newTartEnv builds a simulated Mac and launches the built plugin against
// it. At cleanup (after the harness has destroyed every task and stopped
// the plugin) it checks that no task VM, claimed VM or task state is left,
// and deletes the warm VMs the plugin keeps on purpose.
func newTartEnv(t testing.TB, o envOptions) (*tartEnv, *harness.Harness) {
	t.Helper()
	e := &tartEnv{home: t.TempDir(), registry: t.TempDir(), tart: testutil.BuildBinary(t, "./sim/cmd/faketart")}
	must.NoError(t, faketart.SeedImage(e.registry, testImage, faketart.DefaultConfig("darwin"), faketart.ImageOptions{CompressedSize: 3_000_000_000}))
	e.env = append([]string{"TART_HOME=" + e.home, "FAKETART_REGISTRY=" + e.registry, "FAKETART_BOOT_DELAY=100ms",
		"FAKETART_IP_POLL_INTERVAL=100ms", "FAKETART_STOP_POLL_INTERVAL=20ms", "FAKETART_SHUTDOWN_DELAY=10ms"}, o.Env...)
	t.Cleanup(func() { e.checkNoLeaks(t) })
	if o.NoLaunch {
		return e, nil
	}
	if o.Timeout == 0 {
		o.Timeout = 60 * time.Second
	}
	h := harness.Launch(t, testutil.BuildBinary(t, "./cmd/nomad-driver-tart"), harness.Options{
		PluginConfig:   e.pluginConfig(t, o.PluginConfig),
		Env:            e.env,
		Timeout:        o.Timeout,
		FullAgentStart: o.FullAgentStart,
	})
	return e, h
}

func (e *tartEnv) pluginConfig(t testing.TB, extra string) string {
	return fmt.Sprintf("tart_path = %q\ntart_home = %q\nmac_seed = %q\nagent_poll_interval = \"50ms\"\nvm_stop_timeout = \"2s\"\n%s",
		e.tart, e.home, t.Name(), extra)
}

// faketart runs the fake tart with this env and returns stdout.
func (e *tartEnv) faketart(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command(e.tart, args...)
	cmd.Env = append(os.Environ(), e.env...)
	out, err := cmd.Output()
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		t.Fatalf("faketart %v: %v: %s", args, err, ee.Stderr)
	}
	must.NoError(t, err)
	return string(out)
}

type vmInfo struct {
	Name   string
	Source string
	State  string
}

// vms lists the local VMs in TART_HOME.
func (e *tartEnv) vms(t testing.TB) []vmInfo {
	t.Helper()
	var all []vmInfo
	must.NoError(t, json.Unmarshal([]byte(e.faketart(t, "list", "--format", "json")), &all))
	var local []vmInfo
	for _, v := range all {
		if strings.EqualFold(v.Source, "local") {
			local = append(local, v)
		}
	}
	return local
}

func (e *tartEnv) vmNames(t testing.TB) []string {
	var out []string
	for _, v := range e.vms(t) {
		out = append(out, v.Name)
	}
	return out
}

// guestDir is where faketart runs a VM's guest commands.
func (e *tartEnv) guestDir(vm string) string { return filepath.Join(e.home, "vms", vm, "guest") }

// checkNoLeaks fails the test if anything but unclaimed warm VMs and
// templates is left, then deletes those.
func (e *tartEnv) checkNoLeaks(t testing.TB) {
	for _, v := range e.vms(t) {
		n, ours := tart.ParseVMName(v.Name)
		_, claimedErr := os.Stat(filepath.Join(e.home, "vms", v.Name, tart.ClaimedMarker))
		keptOnPurpose := (n.Kind == tart.KindPool && claimedErr != nil) || n.Kind == tart.KindTemplate
		if !ours || !keptOnPurpose {
			t.Errorf("leaked vm %s (%s)", v.Name, v.State)
		}
		cmd := exec.Command(e.tart, "stop", v.Name, "--timeout", "1")
		cmd.Env = append(os.Environ(), e.env...)
		_ = cmd.Run()
		e.faketart(t, "delete", v.Name)
	}
	states, _ := os.ReadDir(filepath.Join(e.home, "nomad-driver-tart", "tasks"))
	for _, s := range states {
		t.Errorf("leaked task state dir %s", s.Name())
	}
	must.SliceEmpty(t, e.vmNames(t))
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // poll interval, not a wait for an outcome
	}
}

// taskVM returns the VM a task runs in, from its handle's driver state.
func taskVM(t testing.TB, task *harness.Task) string {
	t.Helper()
	var st struct {
		VMName string `json:"vm_name"`
	}
	must.NoError(t, json.Unmarshal(task.Handle.GetDriverState(), &st))
	must.NotEq(t, "", st.VMName)
	return st.VMName
}

// sh is a task config running script with /bin/sh in the guest.
func sh(script string, extra ...string) string {
	return fmt.Sprintf("image = %q\ncommand = \"/bin/sh\"\nargs = [\"-c\", %q]\n%s", testImage, script, strings.Join(extra, "\n"))
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func buildPlugin(t testing.TB) string { return testutil.BuildBinary(t, "./cmd/nomad-driver-tart") }
