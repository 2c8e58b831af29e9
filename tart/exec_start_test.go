// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoenig/test/must"
)

func TestClient_StartExec_argv(t *testing.T) {
	t.Parallel()
	f := okRunner("")
	c := NewClient(WithRunner(f), WithBinary("/opt/tart"))
	_, err := c.StartExec(context.Background(), "vm1", []string{"run.sh", "--x"},
		ExecStartOptions{Stdin: strings.NewReader("s"), Detached: true, StdoutPath: "/o", StderrPath: "/e"})
	must.NoError(t, err)
	must.Eq(t, "exec -i vm1 run.sh --x", f.lastCall())
	must.Eq(t, StartOptions{Detached: true, StdoutPath: "/o", StderrPath: "/e"}, f.startOp[0])

	_, err = c.StartExec(context.Background(), "vm1", []string{"true"}, ExecStartOptions{ExitCodePath: "/c"})
	must.NoError(t, err)
	calls := f.Calls()
	wrapped := calls[len(calls)-1]
	must.Eq(t, []string{"-c", wrapped[1], "/c", "/opt/tart", "exec", "vm1", "true"}, wrapped)

	_, err = c.StartExec(context.Background(), "vm1", nil, ExecStartOptions{})
	must.ErrorContains(t, err, "empty command")
}

func TestExecFailure(t *testing.T) {
	t.Parallel()
	must.NoError(t, ExecFailure("vm", 0, "Error: x"))
	must.NoError(t, ExecFailure("vm", 3, "Error: x"))
	must.ErrorIs(t, ExecFailure("vm", 1, "Failed to connect to the VM using its control socket: x"), ErrAgentNotReady)
	must.ErrorIs(t, ExecFailure("vm", 2, `VM "vm" is not running`), ErrNotRunning)
}

func TestReadExitCode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, ok, err := ReadExitCode(filepath.Join(dir, "none"))
	must.NoError(t, err)
	must.False(t, ok)
	p := filepath.Join(dir, "code")
	must.NoError(t, os.WriteFile(p, []byte("42\n"), 0o600))
	code, ok, err := ReadExitCode(p)
	must.NoError(t, err)
	must.True(t, ok)
	must.Eq(t, 42, code)
	must.NoError(t, os.WriteFile(p, []byte("x"), 0o600))
	_, _, err = ReadExitCode(p)
	must.Error(t, err)
	must.True(t, ProcessAlive(os.Getpid()))
	must.False(t, ProcessAlive(0))
}

func TestExecFailureInFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "stderr.log")
	must.NoError(t, os.WriteFile(log, []byte("guest output\n\x1b[31mFailed to connect to the VM using its control socket: x\x1b[0m\n\n"), 0o600))
	must.ErrorIs(t, ExecFailureInFile("vm", 1, log), ErrAgentNotReady)
	must.NoError(t, ExecFailureInFile("vm", 3, log))
	must.NoError(t, ExecFailureInFile("vm", 1, filepath.Join(dir, "missing")))
	must.NoError(t, ExecFailureInFile("vm", 1, ""))
}
