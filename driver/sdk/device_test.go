// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package sdk_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"github.com/shoenig/test/must"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	basepb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/base"
	devicepb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/device"
	"github.com/tartnomad/nomad-driver-tart/driver/internal/wire"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk/hclspec"
)

// fakeDevice is a scripted sdk.DevicePlugin: fingerprints and stats are
// whatever the test sends on its channels.
type fakeDevice struct {
	fps        chan *sdk.DeviceFingerprint
	stats      chan *sdk.DeviceStatsBatch
	interval   chan time.Duration
	reserveErr error
	fpErr      error
}

func newFakeDevice() *fakeDevice {
	return &fakeDevice{fps: make(chan *sdk.DeviceFingerprint, 4), stats: make(chan *sdk.DeviceStatsBatch, 4), interval: make(chan time.Duration, 1)}
}

func (f *fakeDevice) PluginInfo() sdk.PluginInfo {
	return sdk.PluginInfo{Name: "fakedev", Version: "0.1.0"}
}
func (f *fakeDevice) ConfigSchema() *hclspec.Spec       { return nil }
func (f *fakeDevice) SetConfig(*sdk.PluginConfig) error { return nil }

func (f *fakeDevice) Fingerprint(context.Context) (<-chan *sdk.DeviceFingerprint, error) {
	return f.fps, f.fpErr
}

func (f *fakeDevice) Reserve(_ context.Context, ids []string) (*sdk.DeviceReservation, error) {
	if f.reserveErr != nil {
		return nil, f.reserveErr
	}
	return &sdk.DeviceReservation{Envs: map[string]string{"IDS": ids[0]}}, nil
}

func (f *fakeDevice) Stats(_ context.Context, interval time.Duration) (<-chan *sdk.DeviceStatsBatch, error) {
	f.interval <- interval
	return f.stats, nil
}

func connectDevice(t *testing.T, d sdk.DevicePlugin) *wire.DeviceClient {
	t.Helper()
	client, _ := plugin.TestPluginGRPCConn(t, false, sdk.DevicePluginSet(d, nil))
	t.Cleanup(func() { _ = client.Close() })
	raw, err := client.Dispense(sdk.DevicePluginKey)
	must.NoError(t, err)
	c, ok := raw.(*wire.DeviceClient)
	must.True(t, ok, must.Sprintf("dispensed %T, want *wire.DeviceClient", raw))
	return c
}

func TestDeviceServer_PluginInfo_deviceType(t *testing.T) {
	t.Parallel()
	resp, err := connectDevice(t, newFakeDevice()).Base.PluginInfo(t.Context(), &basepb.PluginInfoRequest{})
	must.NoError(t, err)
	must.Eq(t, basepb.PluginType_DEVICE, resp.GetType())
	must.Eq(t, []string{"v0.1.0"}, resp.GetPluginApiVersions())
	must.Eq(t, "fakedev", resp.GetName())
}

// An invalid fingerprint would make the client drop every device of the
// plugin for good: it is not sent, and the stream goes on with the next.
func TestDeviceServer_Fingerprint_skipsInvalidAndNeverEnds(t *testing.T) {
	t.Parallel()
	d := newFakeDevice()
	c := connectDevice(t, d)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	stream, err := c.Device.Fingerprint(ctx, &devicepb.FingerprintRequest{})
	must.NoError(t, err)

	d.fps <- &sdk.DeviceFingerprint{Groups: []*sdk.DeviceGroup{{Vendor: "v", Type: "", Name: "n"}}}
	d.fps <- &sdk.DeviceFingerprint{Groups: []*sdk.DeviceGroup{{Vendor: "v", Type: "t", Name: "n",
		Devices: []*sdk.Device{{ID: "a", Healthy: true}, {ID: "a"}}}}}
	d.fps <- &sdk.DeviceFingerprint{Groups: []*sdk.DeviceGroup{{Vendor: "tart", Type: "vm", Name: "slot",
		Devices:    []*sdk.Device{{ID: "slot-0", Healthy: true}, {ID: "slot-1", HealthDescription: "tart missing"}},
		Attributes: map[string]any{"memory": sdk.Attr{Value: int64(16384), Unit: "MiB"}, "os": "15.1"}}}}
	got, err := stream.Recv()
	must.NoError(t, err)
	must.SliceLen(t, 1, got.GetDeviceGroup())
	g := got.GetDeviceGroup()[0]
	must.Eq(t, "vm", g.GetDeviceType())
	must.Eq(t, "slot-0", g.GetDevices()[0].GetID())
	must.True(t, g.GetDevices()[0].GetHealthy())
	must.Eq(t, "tart missing", g.GetDevices()[1].GetHealthDescription())
	must.Eq(t, int64(16384), g.GetAttributes()["memory"].GetIntVal())
	must.Eq(t, "MiB", g.GetAttributes()["memory"].GetUnit())
	must.Eq(t, "15.1", g.GetAttributes()["os"].GetStringVal())

	// The plugin closing its channel does not end the stream.
	close(d.fps)
	rctx, rcancel := context.WithCancel(ctx) // not a deadline, as in the next test
	defer rcancel()
	rtimer := time.AfterFunc(200*time.Millisecond, rcancel)
	defer rtimer.Stop()
	s2, err := c.Device.Fingerprint(rctx, &devicepb.FingerprintRequest{})
	must.NoError(t, err)
	_, err = s2.Recv()
	must.Error(t, err)
	must.Error(t, rctx.Err(), must.Sprintf("stream ended with %v before the client cancelled", err))
}

func TestDeviceServer_Fingerprint_startErrorKeepsStreamOpen(t *testing.T) {
	t.Parallel()
	d := newFakeDevice()
	d.fpErr = errors.New("boom")
	// A cancel, not a deadline: gRPC sends a deadline to the server, whose
	// copy may fire first and end the stream a moment before ctx.Err() is
	// set here.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	timer := time.AfterFunc(200*time.Millisecond, cancel)
	defer timer.Stop()
	stream, err := connectDevice(t, d).Device.Fingerprint(ctx, &devicepb.FingerprintRequest{})
	must.NoError(t, err)
	_, err = stream.Recv()
	must.Error(t, err)
	must.Error(t, ctx.Err(), must.Sprintf("stream ended with %v before the client cancelled", err))
}

func TestDeviceServer_Reserve(t *testing.T) {
	t.Parallel()
	d := newFakeDevice()
	c := connectDevice(t, d)
	resp, err := c.Device.Reserve(t.Context(), &devicepb.ReserveRequest{DeviceIds: []string{"slot-1"}})
	must.NoError(t, err)
	must.Eq(t, map[string]string{"IDS": "slot-1"}, resp.GetContainerRes().GetEnvs())
	must.SliceEmpty(t, resp.GetContainerRes().GetMounts())

	_, err = c.Device.Reserve(t.Context(), &devicepb.ReserveRequest{})
	must.Eq(t, codes.InvalidArgument, status.Code(err))

	d.reserveErr = errors.New("slot-9 does not exist")
	_, err = c.Device.Reserve(t.Context(), &devicepb.ReserveRequest{DeviceIds: []string{"slot-9"}})
	must.ErrorContains(t, err, "slot-9 does not exist")
}

func TestDeviceServer_Stats(t *testing.T) {
	t.Parallel()
	d := newFakeDevice()
	c := connectDevice(t, d)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	stream, err := c.Device.Stats(ctx, &devicepb.StatsRequest{CollectionInterval: durationpb.New(3 * time.Second)})
	must.NoError(t, err)
	d.stats <- &sdk.DeviceStatsBatch{Groups: []*sdk.DeviceGroupStats{{Vendor: "tart", Type: "vm", Name: "slot",
		Instances: map[string]*sdk.DeviceStats{"slot-0": {Summary: sdk.StringStat("busy", "slot state"),
			Stats: map[string]sdk.StatValue{"vm": sdk.StringStat("ntart-task-x", "vm name"), "warm": sdk.BoolStat(false, "")}}}}}}
	resp, err := stream.Recv()
	must.NoError(t, err)
	must.Eq(t, 3*time.Second, <-d.interval)
	st := resp.GetGroups()[0].GetInstanceStats()["slot-0"]
	must.Eq(t, "busy", st.GetSummary().GetStringVal().GetValue())
	must.Eq(t, "slot state", st.GetSummary().GetDesc())
	must.Eq(t, "ntart-task-x", st.GetStats().GetAttributes()["vm"].GetStringVal().GetValue())
	must.False(t, st.GetStats().GetAttributes()["warm"].GetBoolVal().GetValue())
	must.NotNil(t, st.GetStats().GetAttributes()["warm"].GetBoolVal())
	must.NotNil(t, st.GetTimestamp(), must.Sprint("a zero timestamp is filled in"))
	must.Nil(t, st.GetSummary().GetIntNumeratorVal())
}
