// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package sdk

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	driverpb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/drivers"
)

// execChunkSize bounds one output message well below gRPC's 4 MiB default.
const execChunkSize = 32 << 10

// resizeBuffer is how many terminal resizes may queue before the oldest is
// dropped; only the latest size matters.
const resizeBuffer = 4

// ExecTaskStreaming serves `nomad alloc exec`: the first message carries
// the setup, later ones stdin data/close and terminal resizes (empty ones
// are heartbeats). Output goes back as stdout/stderr messages, then a close
// marker for each, then one exited message with the result. The client
// never half-closes its side, so the handler does not wait for EOF.
func (s *server) ExecTaskStreaming(stream driverpb.Driver_ExecTaskStreamingServer) error {
	ctx := stream.Context()
	streamer, ok := s.d.(ExecStreamer)
	if !ok {
		return status.Error(codes.Unimplemented, "driver does not support exec streaming")
	}
	first, err := stream.Recv()
	if err != nil {
		return toStatus(ctx, fmt.Errorf("failed to receive exec setup: %w", err))
	}
	setup := first.GetSetup()
	if setup == nil || len(setup.GetCommand()) == 0 {
		return status.Error(codes.InvalidArgument, "first exec message must carry a setup with a command")
	}

	out := &execSender{stream: stream}
	stdinR, stdinW := io.Pipe()
	// Unblocks the receive loop's pipe writes once the command is done;
	// the loop itself ends when the stream's context does.
	defer func() { _ = stdinR.CloseWithError(io.EOF) }()
	resize := make(chan TerminalSize, resizeBuffer)
	go receiveExecInput(stream, stdinW, resize)

	res, err := streamer.ExecTaskStreaming(ctx, setup.GetTaskId(), &ExecOptions{
		Command:  setup.GetCommand(),
		Tty:      setup.GetTty(),
		Stdin:    stdinR,
		Stdout:   out.writer(false),
		Stderr:   out.writer(true),
		ResizeCh: resize,
	})
	if err != nil {
		return toStatus(ctx, fmt.Errorf("failed to exec in task %s: %w", setup.GetTaskId(), err))
	}
	if res == nil {
		return status.Errorf(codes.Internal, "driver returned no exit result for exec in task %s", setup.GetTaskId())
	}
	return out.finish(res)
}

// receiveExecInput copies client messages into the command's stdin and the
// resize channel until the stream ends (it is owned by the stream's
// context, which ends when the handler returns).
func receiveExecInput(stream driverpb.Driver_ExecTaskStreamingServer, stdin *io.PipeWriter, resize chan TerminalSize) {
	defer close(resize)
	for {
		msg, err := stream.Recv()
		if err != nil {
			_ = stdin.CloseWithError(io.EOF)
			return
		}
		if sz := msg.GetTtySize(); sz != nil {
			pushResize(resize, TerminalSize{Height: int(sz.GetHeight()), Width: int(sz.GetWidth())})
		}
		in := msg.GetStdin()
		if len(in.GetData()) > 0 {
			if _, err := stdin.Write(in.GetData()); err != nil {
				return // the command no longer reads stdin
			}
		}
		if in.GetClose() {
			_ = stdin.Close()
		}
	}
}

// pushResize queues sz, dropping the oldest queued size when full.
func pushResize(ch chan TerminalSize, sz TerminalSize) {
	for {
		select {
		case ch <- sz:
			return
		default:
			select {
			case <-ch:
			default:
			}
		}
	}
}

// execSender serialises sends: gRPC streams allow one sender at a time,
// while the command writes stdout and stderr concurrently.
type execSender struct {
	mu     sync.Mutex
	stream driverpb.Driver_ExecTaskStreamingServer
}

func (e *execSender) send(m *driverpb.ExecTaskStreamingResponse) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stream.Send(m)
}

func (e *execSender) writer(stderr bool) io.Writer {
	return execWriterFunc(func(p []byte) (int, error) {
		for off := 0; off < len(p); off += execChunkSize {
			chunk := p[off:min(off+execChunkSize, len(p))]
			op := &driverpb.ExecTaskStreamingIOOperation{Data: append([]byte(nil), chunk...)}
			m := &driverpb.ExecTaskStreamingResponse{Stdout: op}
			if stderr {
				m = &driverpb.ExecTaskStreamingResponse{Stderr: op}
			}
			if err := e.send(m); err != nil {
				return off, fmt.Errorf("failed to send exec output: %w", err)
			}
		}
		return len(p), nil
	})
}

// finish sends the close markers and the final exited message.
func (e *execSender) finish(res *ExitResult) error {
	closed := &driverpb.ExecTaskStreamingIOOperation{Close: true}
	err := errors.Join(
		e.send(&driverpb.ExecTaskStreamingResponse{Stdout: closed}),
		e.send(&driverpb.ExecTaskStreamingResponse{Stderr: closed}),
		e.send(&driverpb.ExecTaskStreamingResponse{Exited: true, Result: exitResultToProto(res)}),
	)
	if err != nil {
		return fmt.Errorf("failed to send exec result: %w", err)
	}
	return nil
}

type execWriterFunc func(p []byte) (int, error)

func (f execWriterFunc) Write(p []byte) (int, error) { return f(p) }
