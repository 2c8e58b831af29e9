// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package faketart_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/sim/faketart"
)

func TestFaketart_Knobs_failureInjection(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.seedVM("vm", "linux")
	e.seedImage(image, "darwin", faketart.ImageOptions{})

	t.Run("clone_always", func(t *testing.T) {
		e.set("FAKETART_FAIL_CLONE", "1")
		t.Cleanup(func() { delete(e.vars, "FAKETART_FAIL_CLONE") })
		r := e.tart("clone", "vm", "x")
		must.Eq(t, 1, r.code)
		must.Eq(t, "Error: faketart: injected clone failure\n", r.stderr)
		must.Eq(t, "vm\n", e.ok("list", "-q"))
	})
	t.Run("pull_custom_message", func(t *testing.T) {
		e.set("FAKETART_FAIL_PULL", "always").set("FAKETART_FAIL_PULL_MESSAGE", "boom")
		t.Cleanup(func() { delete(e.vars, "FAKETART_FAIL_PULL"); delete(e.vars, "FAKETART_FAIL_PULL_MESSAGE") })
		r := e.tart("clone", image, "x")
		must.Eq(t, 1, r.code)
		must.Eq(t, "Error: boom\n", r.stderr)
	})
	t.Run("run_second_call", func(t *testing.T) {
		e.set("FAKETART_FAIL_RUN", "calls:2")
		t.Cleanup(func() { delete(e.vars, "FAKETART_FAIL_RUN") })
		p := e.start("vm")
		e.ok("stop", "vm")
		p.wait(t)
		r := e.tart("run", "vm", "--no-graphics")
		must.Eq(t, 1, r.code)
		must.StrHasPrefix(t, "Error Domain=VZErrorDomain Code=1 ", r.stderr)
		p = e.start("vm") // third call works again
		must.Eq(t, "running", e.state("vm"))
		e.ok("stop", "vm")
		p.wait(t)
	})
	t.Run("exec_first_two", func(t *testing.T) {
		e.set("FAKETART_FAIL_EXEC", "first:2")
		t.Cleanup(func() { delete(e.vars, "FAKETART_FAIL_EXEC") })
		p := e.start("vm")
		for range 2 {
			r := e.tart("exec", "vm", "true")
			must.Eq(t, 1, r.code)
			must.RegexMatch(t, agentErrRe, r.stderr)
		}
		e.ok("exec", "vm", "true")
		e.ok("stop", "vm")
		p.wait(t)
	})
	t.Run("ip_stop_set_delete", func(t *testing.T) {
		p := e.start("vm")
		for _, tc := range []struct {
			knob string
			args []string
			want string
		}{
			{"FAKETART_FAIL_IP", []string{"ip", "vm", "--wait", "0"}, "no IP address found\n"},
			{"FAKETART_FAIL_STOP", []string{"stop", "vm"}, "Error: faketart: injected stop failure\n"},
			{"FAKETART_FAIL_SET", []string{"set", "vm", "--cpu", "2"}, "Error: faketart: injected set failure\n"},
			{"FAKETART_FAIL_DELETE", []string{"delete", "vm"}, "VM \"vm\" is running\n"}, // running is checked first
		} {
			e.set(tc.knob, "1")
			r := e.tart(tc.args...)
			delete(e.vars, tc.knob)
			must.Eq(t, 1, r.code, must.Sprint(tc.knob))
			must.Eq(t, tc.want, r.stderr, must.Sprint(tc.knob))
		}
		must.Eq(t, "running", e.state("vm"))
		e.ok("stop", "vm")
		p.wait(t)
		e.set("FAKETART_FAIL_DELETE", "1")
		r := e.tart("delete", "vm")
		delete(e.vars, "FAKETART_FAIL_DELETE")
		must.Eq(t, "Error: faketart: injected delete failure\n", r.stderr)
		must.Eq(t, "vm\n", e.ok("list", "-q"))
	})
	t.Run("bad_spec", func(t *testing.T) {
		e.set("FAKETART_FAIL_RUN", "sometimes")
		t.Cleanup(func() { delete(e.vars, "FAKETART_FAIL_RUN") })
		r := e.tart("list")
		must.Eq(t, 1, r.code)
		must.StrContains(t, r.stderr, "FAKETART_FAIL_RUN")
	})
}

func TestFaketart_Knobs_logVersionRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	logPath := filepath.Join(t.TempDir(), "calls.jsonl")
	e.set("FAKETART_LOG", logPath).set("FAKETART_VERSION", "2.27.0").set("FAKETART_PULL_TRANSIENT_ERRORS", "2")
	must.Eq(t, "2.27.0\n", e.ok("--version"))
	e.seedImage(image, "darwin", faketart.ImageOptions{})
	out := e.ok("pull", image, "--concurrency", "2")
	must.StrCount(t, out, "attempting to re-try...", 2)

	b, err := os.ReadFile(logPath)
	must.NoError(t, err)
	var calls [][]string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var rec struct {
			Args []string `json:"args"`
		}
		must.NoError(t, json.Unmarshal([]byte(l), &rec))
		calls = append(calls, rec.Args)
	}
	must.Eq(t, [][]string{{"--version"}, {"pull", image, "--concurrency", "2"}}, calls)
}

func TestFaketart_Home_default(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	home := t.TempDir()
	delete(e.vars, "TART_HOME")
	e.set("HOME", home)
	e.ok("create", "--linux", "vm")
	must.DirExists(t, filepath.Join(home, ".tart", "vms", "vm"))

	// An uncreatable TART_HOME.
	blocker := filepath.Join(t.TempDir(), "file")
	must.NoError(t, os.WriteFile(blocker, nil, 0o644))
	e.set("TART_HOME", filepath.Join(blocker, "home"))
	r := e.tart("list")
	must.Eq(t, 1, r.code)
	must.StrHasPrefix(t, "TART_HOME is invalid: "+filepath.Join(blocker, "home")+" does not exist, yet we can't create it: ", r.stderr)
}
