// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package sdk

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	driverpb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/drivers"
)

// defaultStatsInterval applies when the client sends no collection interval
// (Nomad's own default is 1 s).
const defaultStatsInterval = time.Second

// StartTask must return only once the task runs. The handle's config is the
// request's TaskConfig message itself, so Nomad gets back exactly what it
// sent (its id is the task ID after a restore).
func (s *server) StartTask(ctx context.Context, req *driverpb.StartTaskRequest) (*driverpb.StartTaskResponse, error) {
	if req.GetTask() == nil {
		return nil, status.Error(codes.InvalidArgument, "start task request has no task")
	}
	cfg := taskConfigFromProto(req.GetTask())
	h, err := s.d.StartTask(ctx, cfg)
	if err != nil {
		return nil, toStatus(ctx, fmt.Errorf("failed to start task %s: %w", cfg.ID, err))
	}
	if h == nil {
		return nil, status.Errorf(codes.Internal, "driver returned no handle for task %s", cfg.ID)
	}
	handle := handleToProto(h)
	handle.Config = req.GetTask()
	return &driverpb.StartTaskResponse{Handle: handle}, nil
}

// RecoverTask re-attaches after a plugin or agent restart. task_id is never
// set by the client: the ID is handle.config.id.
func (s *server) RecoverTask(ctx context.Context, req *driverpb.RecoverTaskRequest) (*driverpb.RecoverTaskResponse, error) {
	if req.GetHandle().GetConfig() == nil {
		return nil, status.Error(codes.InvalidArgument, "recover task request has no handle config")
	}
	h := handleFromProto(req.GetHandle())
	if h.Config.ID == "" {
		h.Config.ID = req.GetTaskId()
	}
	if err := s.d.RecoverTask(ctx, h); err != nil {
		return nil, toStatus(ctx, fmt.Errorf("failed to recover task %s: %w", h.Config.ID, err))
	}
	return &driverpb.RecoverTaskResponse{}, nil
}

// WaitTask blocks until the task exits. Every answer carries a result:
// clients before 1.11.3/2.0.0 dereference it unconditionally.
func (s *server) WaitTask(ctx context.Context, req *driverpb.WaitTaskRequest) (*driverpb.WaitTaskResponse, error) {
	ch, err := s.d.WaitTask(ctx, req.GetTaskId())
	if err != nil {
		return nil, toStatus(ctx, fmt.Errorf("failed to wait for task %s: %w", req.GetTaskId(), err))
	}
	select {
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	case res, ok := <-ch:
		resp := &driverpb.WaitTaskResponse{Result: exitResultToProto(res)}
		switch {
		case !ok || res == nil:
			resp.Err = "driver ended the wait without an exit result"
		case res.Err != nil:
			resp.Err = res.Err.Error()
		}
		return resp, nil
	}
}

// StopTask is retried by the client on error; a task that is already gone
// counts as stopped.
func (s *server) StopTask(ctx context.Context, req *driverpb.StopTaskRequest) (*driverpb.StopTaskResponse, error) {
	err := s.d.StopTask(ctx, req.GetTaskId(), req.GetTimeout().AsDuration(), req.GetSignal())
	if errors.Is(err, ErrTaskNotFound) {
		s.log.Debug("stop of unknown task treated as done", "task_id", req.GetTaskId())
		err = nil
	}
	if err != nil {
		return nil, toStatus(ctx, fmt.Errorf("failed to stop task %s: %w", req.GetTaskId(), err))
	}
	return &driverpb.StopTaskResponse{}, nil
}

// DestroyTask is idempotent: destroying an unknown task succeeds.
func (s *server) DestroyTask(ctx context.Context, req *driverpb.DestroyTaskRequest) (*driverpb.DestroyTaskResponse, error) {
	err := s.d.DestroyTask(ctx, req.GetTaskId(), req.GetForce())
	if errors.Is(err, ErrTaskNotFound) {
		s.log.Debug("destroy of unknown task treated as done", "task_id", req.GetTaskId())
		err = nil
	}
	if err != nil {
		return nil, toStatus(ctx, fmt.Errorf("failed to destroy task %s: %w", req.GetTaskId(), err))
	}
	return &driverpb.DestroyTaskResponse{}, nil
}

// InspectTask is only used by test harnesses, never by the Nomad client.
func (s *server) InspectTask(ctx context.Context, req *driverpb.InspectTaskRequest) (*driverpb.InspectTaskResponse, error) {
	st, err := s.d.InspectTask(ctx, req.GetTaskId())
	if err != nil {
		return nil, toStatus(ctx, fmt.Errorf("failed to inspect task %s: %w", req.GetTaskId(), err))
	}
	if st == nil {
		return nil, status.Errorf(codes.Internal, "driver returned no status for task %s", req.GetTaskId())
	}
	return &driverpb.InspectTaskResponse{
		Task:   taskStatusToProto(st),
		Driver: &driverpb.TaskDriverStatus{Attributes: st.DriverAttributes},
	}, nil
}

// TaskStats sends the driver's samples until the task exits (the driver
// closes its channel) or the client cancels. Every message carries stats,
// a timestamp and agg_resource_usage.
func (s *server) TaskStats(req *driverpb.TaskStatsRequest, stream driverpb.Driver_TaskStatsServer) error {
	ctx := stream.Context()
	interval := req.GetCollectionInterval().AsDuration()
	if interval <= 0 {
		interval = defaultStatsInterval
	}
	ch, err := s.d.TaskStats(ctx, req.GetTaskId(), interval)
	if err != nil {
		return toStatus(ctx, fmt.Errorf("failed to collect stats of task %s: %w", req.GetTaskId(), err))
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-ch:
			if !ok {
				return nil
			}
			resp := &driverpb.TaskStatsResponse{Stats: taskStatsToProto(req.GetTaskId(), u, s.now)}
			if err := stream.Send(resp); err != nil {
				return err
			}
		}
	}
}

// SignalTask delivers a named signal such as "SIGHUP".
func (s *server) SignalTask(ctx context.Context, req *driverpb.SignalTaskRequest) (*driverpb.SignalTaskResponse, error) {
	if err := s.d.SignalTask(ctx, req.GetTaskId(), req.GetSignal()); err != nil {
		return nil, toStatus(ctx, fmt.Errorf("failed to signal task %s with %s: %w", req.GetTaskId(), req.GetSignal(), err))
	}
	return &driverpb.SignalTaskResponse{}, nil
}

// ExecTask runs a command for script checks. A successful answer always
// carries a result (a missing one crashes the client); when the driver has
// none the call fails instead.
func (s *server) ExecTask(ctx context.Context, req *driverpb.ExecTaskRequest) (*driverpb.ExecTaskResponse, error) {
	res, err := s.d.ExecTask(ctx, req.GetTaskId(), req.GetCommand(), req.GetTimeout().AsDuration())
	if err != nil {
		return nil, toStatus(ctx, fmt.Errorf("failed to exec in task %s: %w", req.GetTaskId(), err))
	}
	if res == nil || res.ExitResult == nil {
		return nil, status.Errorf(codes.Internal, "driver returned no exit result for exec in task %s", req.GetTaskId())
	}
	if res.ExitResult.Err != nil {
		return nil, status.Errorf(codes.Internal, "exec in task %s: %v", req.GetTaskId(), res.ExitResult.Err)
	}
	return &driverpb.ExecTaskResponse{
		Stdout: res.Stdout,
		Stderr: res.Stderr,
		Result: exitResultToProto(res.ExitResult),
	}, nil
}
