// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoenig/test/must"
)

func TestExecRunner_Run(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	code, err := execRunner{}.Run(context.Background(), command{Path: "/bin/sh", Args: []string{"-c", `cat; echo "$FOO" >&2; exit 4`},
		Env: []string{"FOO=bar"}, Stdin: strings.NewReader("in"), Stdout: &out, Stderr: &errb})
	must.NoError(t, err)
	must.Eq(t, 4, code)
	must.Eq(t, "in", out.String())
	must.Eq(t, "bar\n", errb.String())

	_, err = execRunner{}.Run(context.Background(), command{Path: "/nonexistent/tart"})
	must.Error(t, err)

	code, err = execRunner{}.Run(context.Background(), command{Path: "/bin/sh", Args: []string{"-c", "kill -9 $$"}})
	must.ErrorContains(t, err, "killed by signal")
	must.Eq(t, -1, code)
}

func TestExecRunner_Run_contextKillsProcessGroup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		// The grandchild sleep shares the group and must die too.
		_, err := execRunner{}.Run(ctx, command{Path: "/bin/sh", Args: []string{"-c", `sleep 60 & echo $! > ` + pidFile + `; wait`}})
		done <- err
	}()
	waitFor(t, func() bool { b, _ := os.ReadFile(pidFile); return len(bytes.TrimSpace(b)) > 0 })
	cancel()
	err := <-done
	must.ErrorIs(t, err, context.Canceled)
	b, _ := os.ReadFile(pidFile)
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b)))
	must.NoError(t, err)
	waitFor(t, func() bool { return syscall.Kill(pid, 0) != nil || isZombie(pid) })
}

func TestExecRunner_Start(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "out.log")
	p, err := execRunner{}.Start(command{Path: "/bin/sh", Args: []string{"-c", "echo started; echo oops >&2; sleep 60"}},
		startOptions{Detached: true, StdoutPath: log, StderrPath: log})
	must.NoError(t, err)
	pgid, err := syscall.Getpgid(p.Pid())
	must.NoError(t, err)
	must.Eq(t, p.Pid(), pgid, must.Sprint("detached: leads its own session and group"))
	must.NotEq(t, syscall.Getpgrp(), pgid)
	waitFor(t, func() bool { b, _ := os.ReadFile(log); return strings.Contains(string(b), "oops") })
	must.NoError(t, p.Signal(syscall.SIGTERM))
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("process did not exit")
	}
	code, err := p.Wait()
	must.NoError(t, err)
	must.Eq(t, -1, code)
	must.ErrorIs(t, p.Signal(syscall.SIGTERM), os.ErrProcessDone)

	_, err = execRunner{}.Start(command{Path: "/bin/true"}, startOptions{StdoutPath: filepath.Join(dir, "missing", "x")})
	must.ErrorContains(t, err, "open process output")
}

// isZombie reports a Linux zombie (killed, not yet reaped by its parent).
func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] == "Z"
}
