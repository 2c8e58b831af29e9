// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package testdriver

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// WrapCommand is the first argument that makes the test driver's binary run
// as a task wrapper instead of a plugin.
const WrapCommand = "wrap"

// exitStatus is what the wrapper records when the command has ended.
type exitStatus struct {
	ExitCode   int       `json:"exit_code"`
	Signal     int       `json:"signal"`
	Err        string    `json:"err,omitempty"`
	FinishedAt time.Time `json:"finished_at"`
}

// forwardedSignals are passed on to the command. SIGKILL and SIGSTOP cannot
// be caught; the driver sends those to the command's PID itself.
var forwardedSignals = []os.Signal{
	syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTERM,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGCONT, syscall.SIGWINCH,
}

const (
	childPIDFile = "child.pid"
	exitFile     = "exit.json"
)

// Wrap runs argv = <state dir> <command> [args...]: it starts the command
// with the wrapper's own stdio, environment and working directory, records
// its PID, waits, and records its exit status. It returns the wrapper's
// exit code.
func Wrap(argv []string) int {
	if len(argv) < 2 {
		fmt.Fprintln(os.Stderr, "usage: wrap <state dir> <command> [args...]")
		return 2
	}
	dir, command := argv[0], argv[1:]
	// Catch forwarded signals before the command exists, so that a signal
	// sent right after StartTask is queued rather than lost.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, forwardedSignals...)
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	st := exitStatus{}
	if err := cmd.Start(); err != nil {
		st = exitStatus{ExitCode: 127, Err: fmt.Sprintf("start %s: %v", command[0], err)}
	} else {
		_ = writeFileAtomic(filepath.Join(dir, childPIDFile), []byte(strconv.Itoa(cmd.Process.Pid)))
		done := make(chan struct{})
		go func() {
			for {
				select {
				case sig := <-sigs:
					_ = cmd.Process.Signal(sig)
				case <-done:
					return
				}
			}
		}()
		st = statusOf(cmd.Wait())
		close(done)
	}
	st.FinishedAt = time.Now()
	data, _ := json.Marshal(st)
	if err := writeFileAtomic(filepath.Join(dir, exitFile), data); err != nil {
		fmt.Fprintf(os.Stderr, "wrap: record exit status: %v\n", err)
		return 1
	}
	return 0
}

func statusOf(err error) exitStatus {
	if err == nil {
		return exitStatus{}
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return exitStatus{ExitCode: -1, Err: err.Error()}
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		return exitStatus{ExitCode: 128 + int(ws.Signal()), Signal: int(ws.Signal())}
	}
	return exitStatus{ExitCode: ee.ExitCode()}
}

// writeFileAtomic writes via a temporary file and rename, so a reader never
// sees a partial file.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
