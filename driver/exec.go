// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
	"github.com/tartnomad/nomad-driver-tart/tart"
)

// execOnce is ExecTask: `tart exec <vm> <cmd>` with captured output.
func (d *Driver) execOnce(ctx context.Context, rt *tartHost, h *taskHandle, cmd []string, timeout time.Duration) (*sdk.ExecResult, error) {
	if len(cmd) == 0 {
		return nil, errors.New("exec: empty command")
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var stdout, stderr bytes.Buffer
	code, err := rt.client.Exec(ctx, h.state.VMName, cmd, tart.ExecOptions{Stdout: &stdout, Stderr: &stderr})
	if err != nil {
		if ctx.Err() != nil {
			return &sdk.ExecResult{ExitResult: &sdk.ExitResult{ExitCode: -1, Err: ctx.Err()},
				Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}, nil
		}
		return nil, fmt.Errorf("exec in vm %s: %w", h.state.VMName, err)
	}
	return &sdk.ExecResult{ExitResult: &sdk.ExitResult{ExitCode: code}, Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}, nil
}

// ExecTaskStreaming serves `nomad alloc exec`: `tart exec -i [-t] <vm>
// <cmd>` with the session's streams. With a TTY, tart exec runs on a host
// pseudo-terminal (tart reads the window size from its stdout) and the
// session's resizes are applied to it.
func (d *Driver) ExecTaskStreaming(ctx context.Context, taskID string, opts *sdk.ExecOptions) (*sdk.ExitResult, error) {
	h, ok := d.tasks.get(taskID)
	if !ok {
		return nil, fmt.Errorf("exec in task %s: %w", taskID, sdk.ErrTaskNotFound)
	}
	if len(opts.Command) == 0 {
		return nil, errors.New("exec: empty command")
	}
	rt, err := d.host(ctx)
	if err != nil {
		return nil, fmt.Errorf("exec in task %s: %w", taskID, err)
	}
	if !opts.Tty {
		code, err := rt.client.Exec(ctx, h.state.VMName, opts.Command,
			tart.ExecOptions{Stdin: opts.Stdin, Stdout: opts.Stdout, Stderr: opts.Stderr})
		if err != nil {
			return nil, fmt.Errorf("exec in vm %s: %w", h.state.VMName, err)
		}
		return &sdk.ExitResult{ExitCode: code}, nil
	}
	return d.execTTY(ctx, rt, h, opts)
}

// execTTY runs tart exec -i -t on a host PTY.
func (d *Driver) execTTY(ctx context.Context, rt *tartHost, h *taskHandle, opts *sdk.ExecOptions) (*sdk.ExitResult, error) {
	master, slave, err := openPTY()
	if err != nil {
		return nil, fmt.Errorf("exec with tty: %w", err)
	}
	defer master.Close()
	args := append([]string{"exec", "-i", "-t", h.state.VMName}, opts.Command...)
	cmd := exec.CommandContext(ctx, rt.client.Binary(), args...)
	cmd.Env = append(os.Environ(), rt.tartEnv...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		_ = slave.Close()
		return nil, fmt.Errorf("exec with tty: start tart exec: %w", err)
	}
	_ = slave.Close()
	go func() { // owned by the session: ends with stdin's EOF or the pty's close
		_, _ = io.Copy(master, opts.Stdin)
	}()
	go func() { // owned by the session
		for {
			select {
			case sz, ok := <-opts.ResizeCh:
				if !ok {
					return
				}
				_ = setPTYSize(master, sz.Height, sz.Width)
			case <-ctx.Done():
				return
			}
		}
	}()
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(opts.Stdout, master) // EIO once every slave fd is closed
	}()
	werr := cmd.Wait()
	_ = master.Close()
	<-copied
	code := 0
	var ee *exec.ExitError
	switch {
	case werr == nil:
	case errors.As(werr, &ee):
		code = ee.ExitCode()
	default:
		return nil, fmt.Errorf("exec with tty: %w", werr)
	}
	return &sdk.ExitResult{ExitCode: code}, nil
}
