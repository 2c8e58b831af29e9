// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package scripts_test checks the repository's shell scripts with real
// processes.
package scripts_test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
)

// TestCIRun_leavesAForeignEngineRunning runs .ci/run while "another" engine
// already serves its directory (a developer's, started with
// scripts/test-dockerd.sh start): the run uses it and must not stop it at
// exit. The stand-in engine is a sleep binary named dockerd behind a real
// unix socket; `make` is a stub and the scripts run from a scratch copy of
// the tree, so only the scripts' own logic runs.
// Before the fix the exit trap stopped whatever engine the pid file named.
func TestCIRun_leavesAForeignEngineRunning(t *testing.T) {
	root := testutil.RepoRoot(t)
	shims := t.TempDir()
	sleep, err := exec.LookPath("sleep")
	must.NoError(t, err)
	b, err := os.ReadFile(sleep)
	must.NoError(t, err)
	must.NoError(t, os.WriteFile(filepath.Join(shims, "dockerd"), b, 0o755))
	// make stands in for every target; `make dist` leaves a checkable
	// SHA256SUMS, as .ci/run verifies it.
	must.NoError(t, os.WriteFile(filepath.Join(shims, "make"), []byte(`#!/bin/sh
if [ "$1" = dist ]; then mkdir -p dist && echo x > dist/x && (cd dist && sha256sum x > SHA256SUMS); fi
exit 0
`), 0o755))
	must.NoError(t, os.WriteFile(filepath.Join(shims, "protoc"), []byte("#!/bin/sh\nexit 0\n"), 0o755))

	dir := t.TempDir()
	ln, err := net.Listen("unix", filepath.Join(dir, "docker.sock"))
	must.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	engine := exec.Command(filepath.Join(shims, "dockerd"), "600")
	must.NoError(t, engine.Start())
	exited := make(chan struct{})
	go func() { _ = engine.Wait(); close(exited) }()
	t.Cleanup(func() { _ = engine.Process.Kill(); <-exited })
	must.NoError(t, os.WriteFile(filepath.Join(dir, "dockerd.pid"), []byte(strconv.Itoa(engine.Process.Pid)), 0o600))

	// A copy of the scripts in a scratch tree: .ci/run works from the
	// tree it lives in, and the stubs must not write into the real one.
	outer := t.TempDir()
	tree := filepath.Join(outer, "repo")
	// The Nomad installer .ci/run takes from the shared directory beside
	// the clone.
	must.NoError(t, os.MkdirAll(filepath.Join(outer, "shared", "nomad"), 0o755))
	must.NoError(t, os.WriteFile(filepath.Join(outer, "shared", "nomad", "install.sh"), []byte("#!/bin/sh\necho /nonexistent/nomad\n"), 0o755))
	for _, f := range []string{".ci/run", "scripts/test-dockerd.sh"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		must.NoError(t, err)
		must.NoError(t, os.MkdirAll(filepath.Join(tree, filepath.Dir(f)), 0o755))
		must.NoError(t, os.WriteFile(filepath.Join(tree, f), b, 0o755))
	}
	run := exec.Command(filepath.Join(tree, ".ci", "run"))
	run.Env = append(os.Environ(), "PATH="+shims+":"+os.Getenv("PATH"), "TEST_DOCKERD_DIR="+dir)
	out, err := run.CombinedOutput()
	must.NoError(t, err, must.Sprint(string(out)))
	must.StrContains(t, string(out), "docker engine at unix://"+dir)

	select {
	case <-exited:
		t.Fatal(".ci/run stopped an engine it did not start")
	case <-time.After(200 * time.Millisecond): // a stop would have sent SIGTERM already; this only bounds the check
	}
	must.NoError(t, engine.Process.Signal(syscall.Signal(0)))
}
