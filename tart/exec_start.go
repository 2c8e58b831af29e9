// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// ExecStartOptions configure StartExec: a guest command that runs in the
// background, optionally surviving the caller.
type ExecStartOptions struct {
	// Stdin, when non-nil, is forwarded (tart exec -i). An *os.File is
	// handed to tart directly, so it keeps working after the caller dies;
	// another reader is copied by the caller's process.
	Stdin io.Reader
	// StdoutPath and StderrPath are files (or FIFOs, e.g. Nomad's log
	// pipes) that receive the guest output; empty discards it.
	StdoutPath, StderrPath string
	// TTY passes -t (tart then needs a terminal as its stdout).
	TTY bool
	// Detached runs tart exec in its own session, so the guest command
	// survives the caller being killed.
	Detached bool
	// ExitCodePath, when set, makes a /bin/sh wrapper write tart exec's
	// exit code to this file (atomically) when it ends, so a restarted
	// caller that cannot wait for the process can still learn the result
	// with ReadExitCode.
	ExitCodePath string
}

// ExecHandle is a guest command started with StartExec.
type ExecHandle struct {
	VM      string
	Process Process
	// StderrPath and ExitCodePath are the options it was started with.
	StderrPath, ExitCodePath string
}

// Done is closed when tart exec has ended.
func (h *ExecHandle) Done() <-chan struct{} { return h.Process.Done() }

// Wait waits for the command and returns the guest's exit code. A tart
// failure (VM not running, agent unreachable) is an *Error; it can only be
// recognised when StderrPath is a regular file (its last line is read).
func (h *ExecHandle) Wait() (int, error) {
	code, err := h.Process.Wait()
	if err != nil {
		return code, newError("exec", h.VM, -1, "", err)
	}
	if code < 0 {
		return code, newError("exec", h.VM, code, "", errors.New("tart exec was killed by a signal"))
	}
	return code, ExecFailureInFile(h.VM, code, h.StderrPath)
}

// StartExec starts `tart exec [-i] [-t] <name> argv...` without waiting
// for it. The process is not tied to ctx (only checked before starting):
// stop it with Process.Signal.
func (c *Client) StartExec(ctx context.Context, name string, argv []string, o ExecStartOptions) (*ExecHandle, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("tart exec %s: %w", name, err)
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("tart exec %s: empty command", name)
	}
	args := execArgs(name, argv, o.Stdin != nil, o.TTY)
	cmd := c.command(args)
	if o.ExitCodePath != "" {
		// $0 is the exit-code file, $1 the tart binary, the rest its args.
		const script = `"$@"; code=$?; printf '%d\n' "$code" > "$0.tmp" && mv -f "$0.tmp" "$0"; exit "$code"`
		cmd.Args = append([]string{"-c", script, o.ExitCodePath, c.path}, args...)
		cmd.Path = "/bin/sh"
	}
	cmd.Stdin = o.Stdin
	c.logger.Debug("starting guest command", "vm_name", name, "program", argv[0], "detached", o.Detached)
	p, err := c.runner.Start(cmd, StartOptions{Detached: o.Detached, StdoutPath: o.StdoutPath, StderrPath: o.StderrPath})
	if err != nil {
		return nil, newError("exec", name, -1, "", err)
	}
	return &ExecHandle{VM: name, Process: p, StderrPath: o.StderrPath, ExitCodePath: o.ExitCodePath}, nil
}

// ExecFailure returns an *Error when tart exec's exit code and the last
// stderr line say tart itself failed (see Client.Exec), else nil: the code
// is then the guest command's.
func ExecFailure(vm string, code int, lastStderrLine string) error {
	if code == 0 || !isTartExecFailure(code, vm, lastStderrLine) {
		return nil
	}
	return newError("exec", vm, code, lastStderrLine, nil)
}

// ExecFailureInFile is ExecFailure reading the last stderr line from
// stderrPath, the regular file tart exec's stderr went to (a FIFO or an
// empty path gives no line). A caller that learned the exit code with
// ReadExitCode after a restart judges it as ExecHandle.Wait would have.
func ExecFailureInFile(vm string, code int, stderrPath string) error {
	return ExecFailure(vm, code, lastLineOfFile(stderrPath))
}

// ReadExitCode reads an exit-code file written by StartExec's wrapper. ok
// is false while the file does not exist (the command still runs, or was
// killed before it could write).
func ReadExitCode(path string) (code int, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read exit code: %w", err)
	}
	code, err = strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, false, fmt.Errorf("read exit code from %s: %w", path, err)
	}
	return code, true, nil
}

// ProcessAlive reports whether a process with pid exists (for processes a
// restarted caller can no longer wait for, such as detached tart run or
// tart exec). A zombie still counts as alive.
func ProcessAlive(pid int) bool {
	return pid > 0 && processAlive(pid)
}

// lastLineOfFile returns the last non-empty line of a regular file (the
// last 4 KiB are read); "" for FIFOs, missing files and empty paths.
func lastLineOfFile(path string) string {
	if path == "" {
		return ""
	}
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const tail = 4096
	off := max(fi.Size()-tail, 0)
	buf := make([]byte, fi.Size()-off)
	n, _ := f.ReadAt(buf, off)
	return lastLine(string(buf[:n]))
}

// KillProcessGroup sends SIGKILL to the process group led by pid (a
// detached tart run or tart exec started by an earlier process), which
// ends the command and anything it started.
func KillProcessGroup(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("kill process group: invalid pid %d", pid)
	}
	return killGroup(pid, syscall.SIGKILL)
}
