// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package sdk

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/mod/semver"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	basepb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/base"
	driverpb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/drivers"
	"github.com/tartnomad/nomad-driver-tart/driver/internal/wire"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk/hclspec"
)

// pluginAPIVersion is the only driver (and device) API version any Nomad
// release accepts.
const pluginAPIVersion = "v0.1.0"

// server serves a Driver as Nomad's BasePlugin and Driver gRPC services.
// It holds no state of its own beyond the driver, so every handler is as
// safe for concurrent use as the driver is.
type server struct {
	baseServer
	driverpb.UnimplementedDriverServer

	d   Driver
	log hclog.Logger
	now func() time.Time
}

var (
	_ basepb.BasePluginServer = (*server)(nil)
	_ driverpb.DriverServer   = (*server)(nil)
)

func newServer(d Driver, log hclog.Logger) *server {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &server{baseServer: baseServer{p: d, typ: basepb.PluginType_DRIVER}, d: d, log: log, now: time.Now}
}

// basePlugin is the part of every plugin contract the BasePlugin service
// serves.
type basePlugin interface {
	PluginInfo() PluginInfo
	ConfigSchema() *hclspec.Spec
	SetConfig(cfg *PluginConfig) error
}

// baseServer serves BasePlugin for a plugin of type typ.
type baseServer struct {
	basepb.UnimplementedBasePluginServer

	p   basePlugin
	typ basepb.PluginType
}

// PluginInfo is called at every agent start; an error or an unparsable
// version aborts the agent, so both are checked here with a clear message.
func (s *baseServer) PluginInfo(context.Context, *basepb.PluginInfoRequest) (*basepb.PluginInfoResponse, error) {
	info := s.p.PluginInfo()
	if info.Name == "" {
		return nil, status.Error(codes.Internal, "plugin reports an empty plugin name")
	}
	if !semver.IsValid("v" + info.Version) {
		return nil, status.Errorf(codes.Internal, "plugin version %q is not a semantic version", info.Version)
	}
	return &basepb.PluginInfoResponse{
		Type:              s.typ,
		PluginApiVersions: []string{pluginAPIVersion},
		PluginVersion:     info.Version,
		Name:              info.Name,
	}, nil
}

// ConfigSchema may answer with no spec: then Nomad accepts no plugin config.
func (s *baseServer) ConfigSchema(context.Context, *basepb.ConfigSchemaRequest) (*basepb.ConfigSchemaResponse, error) {
	spec, err := wire.SpecToProto(s.p.ConfigSchema())
	if err != nil {
		return nil, status.Errorf(codes.Internal, "invalid plugin config schema: %v", err)
	}
	return &basepb.ConfigSchemaResponse{Spec: spec}, nil
}

// SetConfig arrives up to three times per agent start with the same bytes;
// the plugin must be idempotent.
func (s *baseServer) SetConfig(ctx context.Context, req *basepb.SetConfigRequest) (*basepb.SetConfigResponse, error) {
	if err := s.p.SetConfig(pluginConfigFromProto(req)); err != nil {
		return nil, toStatus(ctx, fmt.Errorf("failed to set plugin config: %w", err))
	}
	return &basepb.SetConfigResponse{}, nil
}

// Init is called by clients >= 2.0.4; Unimplemented counts as success.
func (s *server) Init(ctx context.Context, _ *driverpb.InitRequest) (*driverpb.InitResponse, error) {
	in, ok := s.d.(Initializer)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "driver has no Init")
	}
	if err := in.Init(ctx); err != nil {
		return nil, toStatus(ctx, fmt.Errorf("failed to initialise driver: %w", err))
	}
	return &driverpb.InitResponse{}, nil
}

// Shutdown is a best-effort notice (clients >= 2.0.4, 2 s deadline) before
// the plugin is killed; tasks keep running.
func (s *server) Shutdown(ctx context.Context, _ *driverpb.ShutdownRequest) (*driverpb.ShutdownResponse, error) {
	sd, ok := s.d.(Shutdowner)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "driver has no Shutdown")
	}
	if err := sd.Shutdown(ctx); err != nil {
		return nil, toStatus(ctx, fmt.Errorf("failed to shut down driver: %w", err))
	}
	return &driverpb.ShutdownResponse{}, nil
}

// TaskConfigSchema is required: without a spec every task fails to start.
func (s *server) TaskConfigSchema(context.Context, *driverpb.TaskConfigSchemaRequest) (*driverpb.TaskConfigSchemaResponse, error) {
	spec, err := wire.SpecToProto(s.d.TaskConfigSchema())
	if err != nil {
		return nil, status.Errorf(codes.Internal, "invalid task config schema: %v", err)
	}
	if spec == nil {
		return nil, status.Error(codes.Internal, "driver has no task config schema")
	}
	return &driverpb.TaskConfigSchemaResponse{Spec: spec}, nil
}

// Capabilities is called often and must be constant.
func (s *server) Capabilities(context.Context, *driverpb.CapabilitiesRequest) (*driverpb.CapabilitiesResponse, error) {
	return &driverpb.CapabilitiesResponse{Capabilities: capabilitiesToProto(s.d.Capabilities())}, nil
}

// Fingerprint forwards the driver's fingerprints and stays open until the
// client cancels: a stream that ends makes the client re-open it at once.
func (s *server) Fingerprint(_ *driverpb.FingerprintRequest, stream driverpb.Driver_FingerprintServer) error {
	ctx := stream.Context()
	ch, err := s.d.Fingerprint(ctx)
	if err != nil {
		return toStatus(ctx, fmt.Errorf("failed to start fingerprinting: %w", err))
	}
	return forward(ctx, ch, func(f *Fingerprint) error {
		if f == nil {
			return nil
		}
		return stream.Send(fingerprintToProto(f))
	})
}

// TaskEvents forwards driver events for all tasks and stays open until the
// client cancels.
func (s *server) TaskEvents(_ *driverpb.TaskEventsRequest, stream driverpb.Driver_TaskEventsServer) error {
	ctx := stream.Context()
	ch, err := s.d.TaskEvents(ctx)
	if err != nil {
		return toStatus(ctx, fmt.Errorf("failed to start task events: %w", err))
	}
	return forward(ctx, ch, func(e *TaskEvent) error {
		if e == nil {
			return nil
		}
		return stream.Send(taskEventToProto(e, s.now))
	})
}

// forward sends every value of ch until ctx ends. A channel the driver
// closes early does not end the stream: it then waits for ctx, so the
// client never re-opens the call in a tight loop.
func forward[T any](ctx context.Context, ch <-chan T, send func(T) error) error {
	for ch != nil {
		select {
		case <-ctx.Done():
			return nil
		case v, ok := <-ch:
			if !ok {
				ch = nil
				continue
			}
			if err := send(v); err != nil {
				return err
			}
		}
	}
	<-ctx.Done()
	return nil
}

// CreateNetwork is only called for drivers with must_create_network.
func (s *server) CreateNetwork(context.Context, *driverpb.CreateNetworkRequest) (*driverpb.CreateNetworkResponse, error) {
	return nil, status.Error(codes.Unimplemented, "driver does not create networks")
}

// DestroyNetwork is only called for drivers with must_create_network.
func (s *server) DestroyNetwork(context.Context, *driverpb.DestroyNetworkRequest) (*driverpb.DestroyNetworkResponse, error) {
	return nil, status.Error(codes.Unimplemented, "driver does not create networks")
}
