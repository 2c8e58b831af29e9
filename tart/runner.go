// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// command is one program invocation handed to a commandRunner.
type command struct {
	// Path is the program (e.g. "tart" or an absolute path).
	Path string
	// Args are the arguments after the program name.
	Args []string
	// Env entries ("K=V") are appended to the current process environment.
	Env []string
	// Stdin, Stdout and Stderr are the process streams; nil means none
	// (/dev/null).
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// startOptions control how a long-running process (tart run) is started.
type startOptions struct {
	// Detached puts the process in its own session (setsid) so that it
	// survives the caller being killed (even by SIGKILL) and is not reached
	// by signals sent to the caller's process group. Detached processes must
	// write to files, not pipes: set StdoutPath/StderrPath (a pipe would
	// break when the caller dies). When false the process gets its own
	// process group, so Kill reaches the whole group.
	Detached bool
	// StdoutPath and StderrPath, when set, are files (created or appended
	// to) that receive the process output instead of command.Stdout/Stderr.
	StdoutPath, StderrPath string
}

// process is a started long-running process.
type process interface {
	// Pid is the operating-system process ID.
	Pid() int
	// Done is closed when the process has exited and been reaped.
	Done() <-chan struct{}
	// Wait blocks until the process exits and returns its exit code (-1
	// when it was killed by a signal) and an error only if waiting failed.
	Wait() (exitCode int, err error)
	// Signal sends sig to the process (to its process group when it is not
	// detached).
	Signal(sig os.Signal) error
}

// commandRunner is the seam between Client and the operating system. The
// real implementation is execRunner; tests use a recording fake.
type commandRunner interface {
	// Run runs cmd to completion. It returns the exit code and a nil error
	// when the program ran and exited (whatever the code); it returns an
	// error when the program could not be started, was killed by a signal
	// (exit code -1) or ctx ended first (the process is then killed).
	Run(ctx context.Context, cmd command) (exitCode int, err error)
	// Start starts cmd and returns without waiting. The process is not
	// tied to any context: stop it with Signal, `tart stop`, or let it end.
	Start(cmd command, opts startOptions) (process, error)
}

// execRunner runs commands with os/exec. The zero value is ready to use.
type execRunner struct{}

var _ commandRunner = execRunner{}

// setup applies c's environment and streams to cmd.
func setup(cmd *exec.Cmd, c command) {
	if len(c.Env) > 0 {
		cmd.Env = append(os.Environ(), c.Env...)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.Stdin, c.Stdout, c.Stderr
}

// Run implements commandRunner. On context end the process group gets
// SIGKILL (tart exec forwards the kill to the guest command).
func (execRunner) Run(ctx context.Context, c command) (int, error) {
	cmd := exec.CommandContext(ctx, c.Path, c.Args...)
	setup(cmd, c)
	cmd.SysProcAttr = groupAttr()
	// A grandchild that keeps our pipes open must not block us forever
	// once the process itself has exited.
	cmd.WaitDelay = 5 * time.Second
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		return killGroup(cmd.Process.Pid, syscall.SIGKILL)
	}
	err := cmd.Run()
	if err == nil {
		return 0, nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return -1, fmt.Errorf("run %s: %w", c.Path, ctxErr)
	}
	if errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Exited() {
		return cmd.ProcessState.ExitCode(), nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ee.ExitCode() < 0 { // ended by a signal
			return -1, fmt.Errorf("run %s: killed by %v", c.Path, ee.ProcessState)
		}
		return ee.ExitCode(), nil
	}
	return -1, fmt.Errorf("run %s: %w", c.Path, err)
}

// Start implements commandRunner.
func (execRunner) Start(c command, opts startOptions) (process, error) {
	// No context on purpose: the process outlives the call.
	cmd := exec.Command(c.Path, c.Args...)
	setup(cmd, c)
	var files []*os.File
	closeFiles := func() {
		for _, f := range files {
			_ = f.Close()
		}
	}
	open := func(path string) (*os.File, error) {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open process output %s: %w", path, err)
		}
		files = append(files, f)
		return f, nil
	}
	if opts.StdoutPath != "" {
		f, err := open(opts.StdoutPath)
		if err != nil {
			return nil, err
		}
		cmd.Stdout = f
	}
	if opts.StderrPath != "" {
		if opts.StderrPath == opts.StdoutPath {
			cmd.Stderr = cmd.Stdout
		} else {
			f, err := open(opts.StderrPath)
			if err != nil {
				closeFiles()
				return nil, err
			}
			cmd.Stderr = f
		}
	}
	if opts.Detached {
		cmd.SysProcAttr = sessionAttr()
	} else {
		cmd.SysProcAttr = groupAttr()
	}
	if err := cmd.Start(); err != nil {
		closeFiles()
		return nil, fmt.Errorf("start %s: %w", c.Path, err)
	}
	// The child holds its own copies of the descriptors.
	closeFiles()
	p := &execProcess{cmd: cmd, done: make(chan struct{})}
	// Reaper: owned by the child process; ends when it exits.
	go p.reap()
	return p, nil
}

type execProcess struct {
	cmd  *exec.Cmd
	done chan struct{}

	mu   sync.Mutex
	code int
	err  error
}

func (p *execProcess) reap() {
	err := p.cmd.Wait()
	p.mu.Lock()
	p.code, p.err = 0, nil
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			p.code = ee.ExitCode() // -1 when signalled
		} else {
			p.code, p.err = -1, err
		}
	}
	p.mu.Unlock()
	close(p.done)
}

func (p *execProcess) Pid() int              { return p.cmd.Process.Pid }
func (p *execProcess) Done() <-chan struct{} { return p.done }

func (p *execProcess) Wait() (int, error) {
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.code, p.err
}

func (p *execProcess) Signal(sig os.Signal) error {
	select {
	case <-p.done:
		return os.ErrProcessDone
	default:
	}
	s, ok := sig.(syscall.Signal)
	if !ok {
		return p.cmd.Process.Signal(sig)
	}
	// The process leads its own group (setsid or setpgid), so signalling
	// the group reaches it and helpers it started (softnet).
	return killGroup(p.cmd.Process.Pid, s)
}
