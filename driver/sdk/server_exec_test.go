// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package sdk_test

import (
	"io"
	"testing"
	"time"

	"github.com/shoenig/test/must"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	driverpb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/drivers"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
)

func TestServer_ExecTask_result(t *testing.T) {
	t.Parallel()
	d := newFakeDriver()
	c := connect(t, d)
	d.execRes = &sdk.ExecResult{ExitResult: &sdk.ExitResult{ExitCode: 2}, Stdout: []byte("out"), Stderr: []byte("err")}

	resp, err := c.Driver.ExecTask(t.Context(), &driverpb.ExecTaskRequest{
		TaskId: "t1", Command: []string{"/bin/true", "-x"}, Timeout: durationpb.New(time.Second)})
	must.NoError(t, err)
	must.Eq(t, int32(2), resp.GetResult().GetExitCode())
	must.Eq(t, []byte("out"), resp.GetStdout())
	must.Eq(t, []byte("err"), resp.GetStderr())
	must.Eq(t, []string{"/bin/true", "-x"}, d.gotCommand)
	must.Eq(t, time.Second, d.gotTimeout)

	// No result means no (crashing) answer without one.
	d.execRes = &sdk.ExecResult{Stdout: []byte("out")}
	_, err = c.Driver.ExecTask(t.Context(), &driverpb.ExecTaskRequest{TaskId: "t1", Command: []string{"x"}})
	must.Eq(t, codes.Internal, status.Code(err))
	d.execRes = nil
	_, err = c.Driver.ExecTask(t.Context(), &driverpb.ExecTaskRequest{TaskId: "t1", Command: []string{"x"}})
	must.Eq(t, codes.Internal, status.Code(err))
}

func TestServer_ExecTaskStreaming_exchange(t *testing.T) {
	t.Parallel()
	d := &fullDriver{fakeDriver: newFakeDriver()}
	stream, err := connect(t, d).Driver.ExecTaskStreaming(t.Context())
	must.NoError(t, err)

	for _, m := range []*driverpb.ExecTaskStreamingRequest{
		{Setup: &driverpb.ExecTaskStreamingRequest_Setup{TaskId: "t1", Command: []string{"/bin/sh"}, Tty: true}},
		{TtySize: &driverpb.ExecTaskStreamingRequest_TerminalSize{Height: 24, Width: 80}},
		{}, // heartbeat
		{Stdin: &driverpb.ExecTaskStreamingIOOperation{Data: []byte("hello ")}},
		{Stdin: &driverpb.ExecTaskStreamingIOOperation{Data: []byte("world")}},
		{Stdin: &driverpb.ExecTaskStreamingIOOperation{Close: true}},
	} {
		must.NoError(t, stream.Send(m))
	}
	// The client never half-closes; the server must finish on its own.
	var stdout, stderr []byte
	var closedOut, closedErr bool
	var final *driverpb.ExecTaskStreamingResponse
	for final == nil {
		resp, err := stream.Recv()
		must.NoError(t, err)
		switch {
		case resp.GetExited():
			final = resp
		case resp.GetStdout() != nil:
			must.False(t, closedOut, must.Sprint("stdout after its close marker"))
			stdout = append(stdout, resp.GetStdout().GetData()...)
			closedOut = resp.GetStdout().GetClose()
		case resp.GetStderr() != nil:
			must.False(t, closedErr, must.Sprint("stderr after its close marker"))
			stderr = append(stderr, resp.GetStderr().GetData()...)
			closedErr = resp.GetStderr().GetClose()
		}
	}
	must.Eq(t, "hello world", string(stdout))
	must.Eq(t, "err", string(stderr))
	must.True(t, closedOut && closedErr)
	must.Eq(t, int32(80), final.GetResult().GetExitCode())
	_, err = stream.Recv()
	must.ErrorIs(t, err, io.EOF)
	must.Eq(t, "t1", d.gotTaskID)
	must.True(t, d.execOpts.Tty)
	must.Eq(t, []string{"/bin/sh"}, d.execOpts.Command)
}

func TestServer_ExecTaskStreaming_errors(t *testing.T) {
	t.Parallel()
	setup := &driverpb.ExecTaskStreamingRequest{Setup: &driverpb.ExecTaskStreamingRequest_Setup{
		TaskId: "t1", Command: []string{"sh"}}}
	for _, tc := range []struct {
		name  string
		d     sdk.Driver
		first *driverpb.ExecTaskStreamingRequest
		code  codes.Code
	}{
		{name: "not a streamer", d: newFakeDriver(), first: setup, code: codes.Unimplemented},
		{name: "no setup", d: &fullDriver{fakeDriver: newFakeDriver()}, first: &driverpb.ExecTaskStreamingRequest{}, code: codes.InvalidArgument},
		{name: "unknown task", d: &fullDriver{fakeDriver: &fakeDriver{err: sdk.ErrTaskNotFound}}, first: setup, code: codes.NotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stream, err := connect(t, tc.d).Driver.ExecTaskStreaming(t.Context())
			must.NoError(t, err)
			must.NoError(t, stream.Send(tc.first))
			_, err = stream.Recv()
			must.Eq(t, tc.code, status.Code(err))
		})
	}
}
