// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package sdk_test

import (
	"context"
	"errors"
	"testing"

	"github.com/shoenig/test/must"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	basepb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/base"
	driverpb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/drivers"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk/hclspec"
)

func TestServer_PluginInfo_driverType(t *testing.T) {
	t.Parallel()
	c := connect(t, newFakeDriver())

	resp, err := c.Base.PluginInfo(t.Context(), &basepb.PluginInfoRequest{})
	must.NoError(t, err)
	must.Eq(t, basepb.PluginType_DRIVER, resp.GetType())
	must.Eq(t, []string{"v0.1.0"}, resp.GetPluginApiVersions())
	must.Eq(t, "1.2.3", resp.GetPluginVersion())
	must.Eq(t, "fake", resp.GetName())
}

func TestServer_PluginInfo_invalid(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, plugin, version string }{
		{name: "empty name", plugin: "", version: "1.0.0"},
		{name: "not semver", plugin: "fake", version: "one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newFakeDriver()
			d.info = sdk.PluginInfo{Name: tc.plugin, Version: tc.version}
			_, err := connect(t, d).Base.PluginInfo(t.Context(), &basepb.PluginInfoRequest{})
			must.Eq(t, codes.Internal, status.Code(err))
		})
	}
}

func TestServer_ConfigSchema(t *testing.T) {
	t.Parallel()
	t.Run("none", func(t *testing.T) {
		t.Parallel()
		resp, err := connect(t, newFakeDriver()).Base.ConfigSchema(t.Context(), &basepb.ConfigSchemaRequest{})
		must.NoError(t, err)
		must.Nil(t, resp.GetSpec())
	})
	t.Run("object", func(t *testing.T) {
		t.Parallel()
		d := newFakeDriver()
		d.configSchema = d.taskSchema
		resp, err := connect(t, d).Base.ConfigSchema(t.Context(), &basepb.ConfigSchemaRequest{})
		must.NoError(t, err)
		attr := resp.GetSpec().GetObject().GetAttributes()["image"].GetAttr()
		must.Eq(t, "image", attr.GetName())
		must.Eq(t, "string", attr.GetType())
		must.True(t, attr.GetRequired())
	})
	t.Run("invalid", func(t *testing.T) {
		t.Parallel()
		d := newFakeDriver()
		d.configSchema = &hclspec.Spec{Kind: hclspec.KindDefault} // would crash a Nomad agent
		_, err := connect(t, d).Base.ConfigSchema(t.Context(), &basepb.ConfigSchemaRequest{})
		must.Eq(t, codes.Internal, status.Code(err))
	})
}

func TestServer_SetConfig(t *testing.T) {
	t.Parallel()
	d := newFakeDriver()
	c := connect(t, d)

	_, err := c.Base.SetConfig(t.Context(), &basepb.SetConfigRequest{
		MsgpackConfig:    []byte{0x80},
		PluginApiVersion: "v0.1.0",
		NomadConfig: &basepb.NomadConfig{Driver: &basepb.NomadDriverConfig{
			ClientMinPort: 14000, ClientMaxPort: 14512,
		}},
	})
	must.NoError(t, err)
	must.Eq(t, &sdk.PluginConfig{
		RawConfig:  []byte{0x80},
		Agent:      &sdk.AgentConfig{ClientMaxPort: 14512, ClientMinPort: 14000},
		APIVersion: "v0.1.0",
	}, d.gotConfig)

	// The validation calls carry no nomad_config.
	_, err = c.Base.SetConfig(t.Context(), &basepb.SetConfigRequest{MsgpackConfig: []byte{0x80}})
	must.NoError(t, err)
	must.Nil(t, d.gotConfig.Agent)

	d.err = errors.New("max_vms: must be at least 1")
	_, err = c.Base.SetConfig(t.Context(), &basepb.SetConfigRequest{})
	must.Eq(t, codes.Unknown, status.Code(err))
	must.StrContains(t, status.Convert(err).Message(), "max_vms: must be at least 1")
}

func TestServer_InitShutdown_optional(t *testing.T) {
	t.Parallel()
	t.Run("unimplemented", func(t *testing.T) {
		t.Parallel()
		c := connect(t, newFakeDriver())
		_, err := c.Driver.Init(t.Context(), &driverpb.InitRequest{})
		must.Eq(t, codes.Unimplemented, status.Code(err))
		_, err = c.Driver.Shutdown(t.Context(), &driverpb.ShutdownRequest{})
		must.Eq(t, codes.Unimplemented, status.Code(err))
	})
	t.Run("implemented", func(t *testing.T) {
		t.Parallel()
		d := &fullDriver{fakeDriver: newFakeDriver()}
		c := connect(t, d)
		_, err := c.Driver.Init(t.Context(), &driverpb.InitRequest{})
		must.NoError(t, err)
		_, err = c.Driver.Shutdown(t.Context(), &driverpb.ShutdownRequest{})
		must.NoError(t, err)
		must.Eq(t, 1, d.initCalls)
		must.Eq(t, 1, d.shutdownCalls)
	})
}

func TestServer_TaskConfigSchema(t *testing.T) {
	t.Parallel()
	resp, err := connect(t, newFakeDriver()).Driver.TaskConfigSchema(t.Context(), &driverpb.TaskConfigSchemaRequest{})
	must.NoError(t, err)
	must.NotNil(t, resp.GetSpec().GetObject().GetAttributes()["image"].GetAttr())

	d := newFakeDriver()
	d.taskSchema = nil // Nomad fails every task without a schema
	_, err = connect(t, d).Driver.TaskConfigSchema(t.Context(), &driverpb.TaskConfigSchemaRequest{})
	must.Eq(t, codes.Internal, status.Code(err))
}

func TestServer_Capabilities(t *testing.T) {
	t.Parallel()
	d := newFakeDriver()
	d.caps = &sdk.Capabilities{
		SendSignals:          true,
		Exec:                 true,
		FSIsolation:          sdk.FSIsolationImage,
		NetIsolationModes:    []sdk.NetworkIsolationMode{sdk.NetIsolationHost, sdk.NetIsolationGroup},
		MountConfigs:         sdk.MountConfigSupportNone,
		DisableLogCollection: true,
		DynamicWorkloadUsers: true,
	}
	resp, err := connect(t, d).Driver.Capabilities(t.Context(), &driverpb.CapabilitiesRequest{})
	must.NoError(t, err)
	want := &driverpb.DriverCapabilities{
		SendSignals: true,
		Exec:        true,
		FsIsolation: driverpb.DriverCapabilities_IMAGE,
		NetworkIsolationModes: []driverpb.NetworkIsolationSpec_NetworkIsolationMode{
			driverpb.NetworkIsolationSpec_HOST, driverpb.NetworkIsolationSpec_GROUP,
		},
		MountConfigs:         driverpb.DriverCapabilities_NO_MOUNTS,
		DisableLogCollection: true,
		DynamicWorkloadUsers: true,
	}
	must.True(t, proto.Equal(want, resp.GetCapabilities()), must.Sprintf("got %v", resp.GetCapabilities()))
}

func TestServer_Fingerprint_streamStaysOpen(t *testing.T) {
	t.Parallel()
	d := newFakeDriver()
	d.fingerprints = make(chan *sdk.Fingerprint, 1)
	d.fingerprints <- &sdk.Fingerprint{
		Health:            sdk.HealthStateHealthy,
		HealthDescription: "Healthy",
		Attributes: map[string]any{
			"driver.fake.version": "1.2.3", "driver.fake.slots": 2,
			"driver.fake.load": 0.5, "driver.fake.pool": true,
		},
	}
	close(d.fingerprints) // the driver is done; the stream must not end
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	stream, err := connect(t, d).Driver.Fingerprint(ctx, &driverpb.FingerprintRequest{})
	must.NoError(t, err)
	fp, err := stream.Recv()
	must.NoError(t, err)
	must.Eq(t, driverpb.FingerprintResponse_HEALTHY, fp.GetHealth())
	must.Eq(t, "Healthy", fp.GetHealthDescription())
	attrs := fp.GetAttributes()
	must.Eq(t, "1.2.3", attrs["driver.fake.version"].GetStringVal())
	must.Eq(t, int64(2), attrs["driver.fake.slots"].GetIntVal())
	must.Eq(t, 0.5, attrs["driver.fake.load"].GetFloatVal())
	must.True(t, attrs["driver.fake.pool"].GetBoolVal())

	cancel()
	_, err = stream.Recv()
	must.Eq(t, codes.Canceled, status.Code(err), must.Sprintf("stream ended by the server: %v", err))
}

func TestServer_TaskEvents(t *testing.T) {
	t.Parallel()
	d := newFakeDriver()
	d.events = make(chan *sdk.TaskEvent, 1)
	d.events <- &sdk.TaskEvent{TaskID: "t1", AllocID: "a1", TaskName: "web", Message: "Downloading image",
		Annotations: map[string]string{"image": "macos"}}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	stream, err := connect(t, d).Driver.TaskEvents(ctx, &driverpb.TaskEventsRequest{})
	must.NoError(t, err)
	ev, err := stream.Recv()
	must.NoError(t, err)
	must.Eq(t, "a1", ev.GetAllocId())
	must.Eq(t, "web", ev.GetTaskName())
	must.Eq(t, "t1", ev.GetTaskId())
	must.Eq(t, "Downloading image", ev.GetMessage())
	must.Eq(t, map[string]string{"image": "macos"}, ev.GetAnnotations())
	must.True(t, ev.GetTimestamp().IsValid() && ev.GetTimestamp().GetSeconds() > 0)

	cancel()
	_, err = stream.Recv()
	must.Eq(t, codes.Canceled, status.Code(err))
}

func TestServer_Networks_unimplemented(t *testing.T) {
	t.Parallel()
	c := connect(t, newFakeDriver())
	_, err := c.Driver.CreateNetwork(t.Context(), &driverpb.CreateNetworkRequest{AllocId: "a"})
	must.Eq(t, codes.Unimplemented, status.Code(err))
	_, err = c.Driver.DestroyNetwork(t.Context(), &driverpb.DestroyNetworkRequest{AllocId: "a"})
	must.Eq(t, codes.Unimplemented, status.Code(err))
}
