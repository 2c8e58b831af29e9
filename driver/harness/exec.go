// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package harness

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	driverpb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/drivers"
)

// ExecOptions describe a `nomad alloc exec` session.
type ExecOptions struct {
	Command []string
	Tty     bool
	// Stdin is sent in chunks, followed by a close marker at EOF. It must
	// reach EOF (or the session must end) for the call to return. Nil sends
	// nothing and no close marker, like an idle terminal.
	Stdin io.Reader
	// TerminalSize, when set, is sent right after the setup message.
	TerminalSize *TerminalSize
}

// TerminalSize of an exec session's TTY.
type TerminalSize struct{ Height, Width int32 }

// ExecStreamResult is the outcome of an exec session.
type ExecStreamResult struct {
	Stdout, Stderr []byte
	ExitCode       int
}

// ExecTaskStreaming runs an interactive exec session as the client does for
// `nomad alloc exec` (reference 3.2): setup first, then stdin (the client
// never half-closes its side), collecting stdout/stderr until the driver
// sends exited with a result.
func (h *Harness) ExecTaskStreaming(t testing.TB, taskID string, opts ExecOptions) ExecStreamResult {
	t.Helper()
	res, err := h.TryExecTaskStreaming(taskID, opts)
	if err != nil {
		t.Fatalf("harness: ExecTaskStreaming %s %q: %v", taskID, opts.Command, err)
	}
	return res
}

// TryExecTaskStreaming is ExecTaskStreaming returning the error.
func (h *Harness) TryExecTaskStreaming(taskID string, opts ExecOptions) (ExecStreamResult, error) {
	inst, err := h.driverFor()
	if err != nil {
		return ExecStreamResult{}, err
	}
	ctx, cancel := h.ctx()
	defer cancel()
	stream, err := inst.driver.ExecTaskStreaming(ctx)
	if err != nil {
		return ExecStreamResult{}, fmt.Errorf("open stream: %w", err)
	}
	// A Send error of io.EOF means the driver already ended the call; the
	// reason comes from Recv.
	if err := sendSetup(stream, taskID, opts); err != nil && !errors.Is(err, io.EOF) {
		return ExecStreamResult{}, err
	}
	stdinDone := make(chan struct{})
	go func() {
		defer close(stdinDone)
		if opts.Stdin != nil {
			sendStdin(stream, opts.Stdin)
		}
	}()
	res, err := receiveExec(stream)
	cancel()
	<-stdinDone
	return res, err
}

func sendSetup(stream driverpb.Driver_ExecTaskStreamingClient, taskID string, opts ExecOptions) error {
	setup := &driverpb.ExecTaskStreamingRequest{Setup: &driverpb.ExecTaskStreamingRequest_Setup{
		TaskId: taskID, Command: opts.Command, Tty: opts.Tty,
	}}
	if err := stream.Send(setup); err != nil {
		return fmt.Errorf("send setup: %w", err)
	}
	if sz := opts.TerminalSize; sz != nil {
		msg := &driverpb.ExecTaskStreamingRequest{TtySize: &driverpb.ExecTaskStreamingRequest_TerminalSize{Height: sz.Height, Width: sz.Width}}
		if err := stream.Send(msg); err != nil {
			return fmt.Errorf("send terminal size: %w", err)
		}
	}
	return nil
}

// sendStdin forwards r in chunks and then the close marker. Send errors end
// it: the session is over.
func sendStdin(stream driverpb.Driver_ExecTaskStreamingClient, r io.Reader) {
	buf := make([]byte, 32*1024)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			data := append([]byte(nil), buf[:n]...)
			if stream.Send(&driverpb.ExecTaskStreamingRequest{Stdin: &driverpb.ExecTaskStreamingIOOperation{Data: data}}) != nil {
				return
			}
		}
		if err != nil {
			_ = stream.Send(&driverpb.ExecTaskStreamingRequest{Stdin: &driverpb.ExecTaskStreamingIOOperation{Close: true}})
			return
		}
	}
}

func receiveExec(stream driverpb.Driver_ExecTaskStreamingClient) (ExecStreamResult, error) {
	var stdout, stderr bytes.Buffer
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return ExecStreamResult{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}, errors.New("driver contract: stream ended without a message with exited=true")
		}
		if err != nil {
			return ExecStreamResult{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}, fmt.Errorf("receive: %w", err)
		}
		stdout.Write(msg.GetStdout().GetData())
		stderr.Write(msg.GetStderr().GetData())
		if msg.GetExited() {
			res := ExecStreamResult{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
			if msg.GetResult() == nil {
				return res, errors.New("driver contract: exited message without result")
			}
			res.ExitCode = int(msg.GetResult().GetExitCode())
			return res, nil
		}
	}
}
