// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package harness

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/shoenig/test/must"
	"google.golang.org/grpc"

	basepb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/base"
	driverpb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/drivers"
	hclspecpb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/hclspec"
)

// rudeDriver speaks the wire protocol directly (the SDK would not let a
// driver make these mistakes) and breaks the client's expectations.
type rudeDriver struct {
	basepb.UnimplementedBasePluginServer
	driverpb.UnimplementedDriverServer
}

func (rudeDriver) PluginInfo(context.Context, *basepb.PluginInfoRequest) (*basepb.PluginInfoResponse, error) {
	return &basepb.PluginInfoResponse{Type: basepb.PluginType_DRIVER, PluginApiVersions: []string{"v0.1.0"}, PluginVersion: "1.0.0", Name: "rude"}, nil
}

func (rudeDriver) ConfigSchema(context.Context, *basepb.ConfigSchemaRequest) (*basepb.ConfigSchemaResponse, error) {
	return &basepb.ConfigSchemaResponse{}, nil // no plugin config accepted
}

func (rudeDriver) SetConfig(context.Context, *basepb.SetConfigRequest) (*basepb.SetConfigResponse, error) {
	return &basepb.SetConfigResponse{}, nil
}

// Fingerprint sends one message, then returns: Nomad would re-open it in a
// tight loop.
func (rudeDriver) Fingerprint(_ *driverpb.FingerprintRequest, s driverpb.Driver_FingerprintServer) error {
	return s.Send(&driverpb.FingerprintResponse{Health: driverpb.FingerprintResponse_HEALTHY})
}

// TaskEvents sends an event Nomad cannot route, then stays open.
func (rudeDriver) TaskEvents(_ *driverpb.TaskEventsRequest, s driverpb.Driver_TaskEventsServer) error {
	if err := s.Send(&driverpb.DriverTaskEvent{Message: "nobody's event"}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

func (rudeDriver) TaskConfigSchema(context.Context, *driverpb.TaskConfigSchemaRequest) (*driverpb.TaskConfigSchemaResponse, error) {
	return &driverpb.TaskConfigSchemaResponse{Spec: &hclspecpb.Spec{Block: &hclspecpb.Spec_Object{Object: &hclspecpb.Object{
		Attributes: map[string]*hclspecpb.Spec{"x": {Block: &hclspecpb.Spec_Attr{Attr: &hclspecpb.Attr{Type: "string"}}}},
	}}}}, nil
}

func (rudeDriver) Capabilities(context.Context, *driverpb.CapabilitiesRequest) (*driverpb.CapabilitiesResponse, error) {
	return &driverpb.CapabilitiesResponse{Capabilities: &driverpb.DriverCapabilities{}}, nil
}

// StartTask echoes a handle for another task.
func (rudeDriver) StartTask(_ context.Context, req *driverpb.StartTaskRequest) (*driverpb.StartTaskResponse, error) {
	cfg := req.GetTask()
	other := &driverpb.TaskConfig{Id: cfg.GetId() + "-other", Name: cfg.GetName(), AllocId: cfg.GetAllocId()}
	return &driverpb.StartTaskResponse{Handle: &driverpb.TaskHandle{Version: 1, Config: other}}, nil
}

// WaitTask answers without a result.
func (rudeDriver) WaitTask(context.Context, *driverpb.WaitTaskRequest) (*driverpb.WaitTaskResponse, error) {
	return &driverpb.WaitTaskResponse{}, nil
}

func (rudeDriver) DestroyTask(context.Context, *driverpb.DestroyTaskRequest) (*driverpb.DestroyTaskResponse, error) {
	return &driverpb.DestroyTaskResponse{}, nil
}

type rudePlugin struct{ plugin.NetRPCUnsupportedPlugin }

func (rudePlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	basepb.RegisterBasePluginServer(s, rudeDriver{})
	driverpb.RegisterDriverServer(s, rudeDriver{})
	return nil
}

func (rudePlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, nil
}

func TestHarness_contractViolations(t *testing.T) {
	h := start(t, &inProcessLauncher{newServer: func(hclog.Logger) (plugin.GRPCPlugin, error) {
		return rudePlugin{}, nil
	}}, Options{})

	_, err := h.TryStartTask(TaskSpec{Config: `x = "y"`})
	must.ErrorContains(t, err, "driver contract: StartTask handle: handle.config.id")

	var taskID string
	for id := range h.tasks {
		taskID = id // kept for cleanup despite the broken handle
	}
	must.NotEq(t, "", taskID)
	_, err = h.TryWaitTask(t.Context(), taskID)
	must.ErrorContains(t, err, "WaitTaskResponse.result is unset")

	// The background checks: the stream that ended and the event.
	var got []string
	deadline := time.After(10 * time.Second)
	for len(got) < 2 {
		h.mu.Lock()
		changed := h.changed
		h.mu.Unlock()
		got = append(got, h.ContractViolations()...)
		if len(got) >= 2 {
			break
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("violations so far: %q", got)
		}
	}
	joined := strings.Join(got, "\n")
	must.StrContains(t, joined, "Fingerprint stream ended while the plugin was running")
	must.StrContains(t, joined, `task event "nobody's event" lacks alloc_id or task_name`)
}
