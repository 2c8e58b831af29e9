// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package faketart_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/sim/faketart"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.CleanupBuilds()
	os.Exit(code)
}

// env is one TART_HOME plus a fake registry, driven through the built
// faketart binary as real processes.
type env struct {
	t        *testing.T
	bin      string
	home     string
	registry string
	vars     map[string]string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{
		t:        t,
		bin:      testutil.BuildBinary(t, "./sim/cmd/faketart"),
		home:     filepath.Join(dir, "home"),
		registry: filepath.Join(dir, "registry"),
		vars: map[string]string{
			"CI":                        "1",
			"FAKETART_BOOT_DELAY":       "50ms",
			"FAKETART_IP_POLL_INTERVAL": "50ms",
		},
	}
	e.vars["TART_HOME"] = e.home
	e.vars["FAKETART_REGISTRY"] = e.registry
	return e
}

func (e *env) set(k, v string) *env { e.vars[k] = v; return e }

func (e *env) environ(extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FAKETART_") && !strings.HasPrefix(kv, "TART_") && !strings.HasPrefix(kv, "CI=") {
			out = append(out, kv)
		}
	}
	for k, v := range e.vars {
		out = append(out, k+"="+v)
	}
	return append(out, extra...)
}

// result is one finished faketart process.
type result struct {
	code           int
	signaled       syscall.Signal
	stdout, stderr string
}

func (e *env) cmd(args ...string) *exec.Cmd {
	c := exec.CommandContext(e.t.Context(), e.bin, args...)
	c.Env = e.environ()
	return c
}

// tart runs faketart to completion.
func (e *env) tart(args ...string) result {
	e.t.Helper()
	return e.tartIn("", args...)
}

func (e *env) tartIn(stdin string, args ...string) result {
	e.t.Helper()
	c := e.cmd(args...)
	var so, se bytes.Buffer
	c.Stdout, c.Stderr = &so, &se
	if stdin != "" {
		c.Stdin = strings.NewReader(stdin)
	}
	err := c.Run()
	return finish(e.t, err, so.String(), se.String())
}

func finish(t *testing.T, err error, so, se string) result {
	t.Helper()
	r := result{stdout: so, stderr: se}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		ws := ee.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			r.signaled, r.code = ws.Signal(), -1
		} else {
			r.code = ws.ExitStatus()
		}
	default:
		t.Fatalf("run faketart: %v", err)
	}
	return r
}

// ok runs faketart and requires exit 0.
func (e *env) ok(args ...string) string {
	e.t.Helper()
	r := e.tart(args...)
	must.Eq(e.t, 0, r.code, must.Sprintf("faketart %v: stderr=%q stdout=%q", args, r.stderr, r.stdout))
	return r.stdout
}

// runProc is a `faketart run` started in the background.
type runProc struct {
	cmd    *exec.Cmd
	stdout *testutil.SyncBuffer
	stderr *testutil.SyncBuffer
	done   chan struct{}
	res    result
}

// start starts `faketart run <name> --no-graphics extra...` and waits until
// the VM shows as running (or the process has exited).
func (e *env) start(name string, extra ...string) *runProc {
	e.t.Helper()
	p := e.startNoWait(name, extra...)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return p
		default:
		}
		if e.state(name) == "running" {
			return p
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.t.Fatalf("VM %s never showed as running", name)
	return nil
}

func (e *env) startNoWait(name string, extra ...string) *runProc {
	e.t.Helper()
	args := append([]string{"run", name, "--no-graphics"}, extra...)
	// Not CommandContext: tests signal the process themselves.
	c := exec.Command(e.bin, args...)
	c.Env = e.environ()
	p := &runProc{cmd: c, stdout: &testutil.SyncBuffer{}, stderr: &testutil.SyncBuffer{}, done: make(chan struct{})}
	c.Stdout, c.Stderr = p.stdout, p.stderr
	must.NoError(e.t, c.Start())
	go func() {
		err := c.Wait()
		p.res = finish(e.t, err, p.stdout.String(), p.stderr.String())
		close(p.done)
	}()
	e.t.Cleanup(func() {
		_ = c.Process.Kill()
		<-p.done
	})
	return p
}

// wait waits for the run process to exit and returns its result.
func (p *runProc) wait(t *testing.T) result {
	t.Helper()
	select {
	case <-p.done:
		return p.res
	case <-time.After(15 * time.Second):
		t.Fatalf("faketart run did not exit; stdout=%q", p.stdout.String())
		return result{}
	}
}

func (p *runProc) signal(t *testing.T, s syscall.Signal) {
	t.Helper()
	must.NoError(t, p.cmd.Process.Signal(s))
}

// state returns the VM's State from `get --format json`, or "" if missing.
func (e *env) state(name string) string {
	e.t.Helper()
	r := e.tart("get", name, "--format", "json")
	if r.code != 0 {
		return ""
	}
	var m map[string]any
	must.NoError(e.t, json.Unmarshal([]byte(r.stdout), &m))
	s, _ := m["State"].(string)
	return s
}

// waitState polls until the VM reaches want.
func (e *env) waitState(name, want string) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if e.state(name) == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatalf("VM %s never reached state %s (now %q)", name, want, e.state(name))
}

// seedVM creates a local VM directly on disk.
func (e *env) seedVM(name, guestOS string) faketart.VMConfig {
	e.t.Helper()
	cfg := faketart.DefaultConfig(guestOS)
	must.NoError(e.t, faketart.SeedVM(e.home, name, cfg, 20))
	return cfg
}

// seedImage makes ref available in the fake registry.
func (e *env) seedImage(ref, guestOS string, opts faketart.ImageOptions) faketart.VMConfig {
	e.t.Helper()
	cfg := faketart.DefaultConfig(guestOS)
	must.NoError(e.t, faketart.SeedImage(e.registry, ref, cfg, opts))
	return cfg
}

func (e *env) config(name string) faketart.VMConfig {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.home, "vms", name, "config.json"))
	must.NoError(e.t, err)
	var c faketart.VMConfig
	must.NoError(e.t, json.Unmarshal(b, &c))
	return c
}

func lines(s string) []string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

var agentErrRe = regexp.MustCompile(`^Failed to connect to the VM using its control socket: .*, is the Tart Guest Agent running\?\n$`)
