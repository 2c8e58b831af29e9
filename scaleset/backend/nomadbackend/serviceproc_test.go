// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadbackend_test

// The built service as a process, shared by the tests that run it against
// the API double (e2e_test.go) and a real agent (realflow_test.go,
// realbench_test.go).

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
)

// serviceProc is one nomad-gha-scaleset process.
type serviceProc struct {
	cmd  *exec.Cmd
	logs *testutil.SyncBuffer
	done chan error
}

// startService starts the built nomad-gha-scaleset with the config at
// cfgPath and the token pat; t.Cleanup stops it (SIGTERM, then SIGKILL
// after 30s).
func startService(t testing.TB, cfgPath, pat string) *serviceProc {
	t.Helper()
	bin := testutil.BuildBinary(t, "./cmd/nomad-gha-scaleset")
	s := &serviceProc{logs: &testutil.SyncBuffer{}, done: make(chan error, 1)}
	s.cmd = exec.Command(bin, "run", "--config", cfgPath, "--log-level", "debug")
	s.cmd.Env = append(os.Environ(), "NOMAD_GHA_SCALESET_GITHUB_TOKEN="+pat, "NOMAD_TOKEN=", "NOMAD_ADDR=")
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	must.NoError(t, s.cmd.Start())
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-s.done:
			s.done <- err
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("service logs:\n%s", tailLines(s.logs.String(), 80))
		}
	})
	return s
}

// stop sends SIGTERM and expects a clean exit.
func (s *serviceProc) stop(t testing.TB) {
	t.Helper()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		s.done <- err
		must.NoError(t, err, must.Sprint(tailLines(s.logs.String(), 40)))
	case <-time.After(60 * time.Second):
		t.Fatal("service did not stop on SIGTERM")
	}
}

// kill SIGKILLs the service.
func (s *serviceProc) kill(t testing.TB) {
	t.Helper()
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case err := <-s.done:
		s.done <- err
	case <-time.After(10 * time.Second):
		t.Fatal("service did not die on SIGKILL")
	}
}

func tailLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
