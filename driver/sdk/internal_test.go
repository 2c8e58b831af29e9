// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package sdk

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/shoenig/test/must"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	driverpb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/drivers"
)

func Test_toStatus(t *testing.T) {
	t.Parallel()
	live := t.Context()
	ended, cancel := context.WithCancel(t.Context())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want codes.Code
	}{
		{name: "nil", ctx: live, err: nil, want: codes.OK},
		{name: "plain", ctx: live, err: errors.New("boom"), want: codes.Unknown},
		{name: "not supported", ctx: live, err: fmt.Errorf("x: %w", ErrNotSupported), want: codes.Unimplemented},
		{name: "not found", ctx: live, err: fmt.Errorf("x: %w", ErrTaskNotFound), want: codes.NotFound},
		{name: "recoverable", ctx: live, err: NewRecoverableError(errors.New("busy")), want: codes.FailedPrecondition},
		{name: "driver deadline", ctx: live, err: fmt.Errorf("tart: %w", context.DeadlineExceeded), want: codes.DeadlineExceeded},
		{name: "driver canceled is not Canceled", ctx: live, err: fmt.Errorf("tart: %w", context.Canceled), want: codes.Aborted},
		{name: "rpc ended", ctx: ended, err: errors.New("boom"), want: codes.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := toStatus(tc.ctx, tc.err)
			must.Eq(t, tc.want, status.Code(err))
			must.NotEq(t, codes.Unavailable, status.Code(err))
		})
	}
}

func Test_pushResize_keepsLatest(t *testing.T) {
	t.Parallel()
	ch := make(chan TerminalSize, 2)
	for w := 1; w <= 5; w++ {
		pushResize(ch, TerminalSize{Width: w}) // never blocks
	}
	must.Eq(t, TerminalSize{Width: 4}, <-ch)
	must.Eq(t, TerminalSize{Width: 5}, <-ch)
}

func Test_execSender_chunksOutput(t *testing.T) {
	t.Parallel()
	rec := &recordingExecStream{}
	w := (&execSender{stream: rec}).writer(true)
	data := make([]byte, 2*execChunkSize+10)
	n, err := w.Write(data)
	must.NoError(t, err)
	must.Eq(t, len(data), n)
	must.SliceLen(t, 3, rec.sent)
	total := 0
	for _, m := range rec.sent {
		must.Nil(t, m.GetStdout())
		must.LessEq(t, execChunkSize, len(m.GetStderr().GetData()))
		total += len(m.GetStderr().GetData())
	}
	must.Eq(t, len(data), total)
}

// recordingExecStream records what the exec handler sends.
type recordingExecStream struct {
	driverpb.Driver_ExecTaskStreamingServer // only Send is used
	sent                                    []*driverpb.ExecTaskStreamingResponse
}

func (r *recordingExecStream) Send(m *driverpb.ExecTaskStreamingResponse) error {
	r.sent = append(r.sent, m)
	return nil
}
