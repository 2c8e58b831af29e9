// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver_test

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/shoenig/test/must"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tartnomad/nomad-driver-tart/driver"
	basepb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/base"
	driverpb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/drivers"
	"github.com/tartnomad/nomad-driver-tart/driver/internal/wire"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/version"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.CleanupBuilds()
	os.Exit(code)
}

// fakeTartDir returns a directory holding a `tart` script that answers
// --version like tart 2.32.1.
func fakeTartDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	must.NoError(t, os.WriteFile(filepath.Join(dir, "tart"), []byte("#!/bin/sh\necho 2.32.1\n"), 0o755))
	return dir
}

// launch starts the plugin binary the way Nomad's client does (handshake,
// gRPC only) with path as its PATH, and returns the dispensed stubs.
func launch(t testing.TB, bin, path string) *wire.Client {
	t.Helper()
	return launchWithStderr(t, bin, path, io.Discard)
}

// launchWithStderr is launch, copying the plugin's raw stderr lines to
// stderr (as go-plugin's client reads them).
func launchWithStderr(t testing.TB, bin, path string, stderr io.Writer) *wire.Client {
	t.Helper()
	return dispense(t, newPluginClient(t, bin, path, stderr))
}

// newPluginClient configures (but does not start) a go-plugin client for
// the binary; the process is killed at cleanup at the latest.
func newPluginClient(t testing.TB, bin, path string, stderr io.Writer) *plugin.Client {
	t.Helper()
	cmd := exec.Command(bin)
	// A HOME of its own: the plugin keeps task state under ~/.tart.
	cmd.Env = []string{"PATH=" + path, "HOME=" + t.TempDir()}
	return newPluginClientCmd(t, cmd, stderr)
}

// newPluginClientCmd is newPluginClient for a prepared command.
func newPluginClientCmd(t testing.TB, cmd *exec.Cmd, stderr io.Writer) *plugin.Client {
	t.Helper()
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		Plugins:          sdk.PluginSet(nil, nil),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           hclog.NewNullLogger(),
		SkipHostEnv:      true, // PATH must be ours alone
		Stderr:           stderr,
	})
	t.Cleanup(client.Kill)
	return client
}

// dispense starts the process, completes the handshake and returns the
// generated stubs.
func dispense(t testing.TB, client *plugin.Client) *wire.Client {
	t.Helper()
	rpc, err := client.Client()
	must.NoError(t, err)
	raw, err := rpc.Dispense(sdk.PluginKey)
	must.NoError(t, err)
	return raw.(*wire.Client)
}

func TestPlugin_Binary_version(t *testing.T) {
	t.Parallel()
	bin := testutil.BuildBinary(t, "./cmd/nomad-driver-tart")
	out, err := exec.Command(bin, "--version").Output()
	must.NoError(t, err)
	must.Eq(t, version.Full("nomad-driver-tart"), strings.TrimSpace(string(out)))
}

func TestPlugin_Binary_handshakeAndDiscovery(t *testing.T) {
	t.Parallel()
	bin := testutil.BuildBinary(t, "./cmd/nomad-driver-tart")
	c := launch(t, bin, fakeTartDir(t))
	ctx := t.Context()

	info, err := c.Base.PluginInfo(ctx, &basepb.PluginInfoRequest{})
	must.NoError(t, err)
	must.Eq(t, "tart", info.GetName())
	must.Eq(t, basepb.PluginType_DRIVER, info.GetType())
	must.Eq(t, []string{"v0.1.0"}, info.GetPluginApiVersions())
	must.Eq(t, version.String(), info.GetPluginVersion())

	schema, err := c.Base.ConfigSchema(ctx, &basepb.ConfigSchemaRequest{})
	must.NoError(t, err)
	must.MapContainsKeys(t, schema.GetSpec().GetObject().GetAttributes(), []string{"tart_path", "max_vms"})

	_, err = c.Base.SetConfig(ctx, &basepb.SetConfigRequest{PluginApiVersion: "v0.1.0"})
	must.NoError(t, err)
	_, err = c.Driver.Init(ctx, &driverpb.InitRequest{})
	must.Eq(t, codes.Unimplemented, status.Code(err))

	task, err := c.Driver.TaskConfigSchema(ctx, &driverpb.TaskConfigSchemaRequest{})
	must.NoError(t, err)
	must.True(t, task.GetSpec().GetObject().GetAttributes()["image"].GetAttr().GetRequired())

	caps, err := c.Driver.Capabilities(ctx, &driverpb.CapabilitiesRequest{})
	must.NoError(t, err)
	must.Eq(t, driverpb.DriverCapabilities_IMAGE, caps.GetCapabilities().GetFsIsolation())

	fpCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.Driver.Fingerprint(fpCtx, &driverpb.FingerprintRequest{})
	must.NoError(t, err)
	fp, err := stream.Recv()
	must.NoError(t, err)
	must.Eq(t, driverpb.FingerprintResponse_HEALTHY, fp.GetHealth())
	must.Eq(t, "2.32.1", fp.GetAttributes()["driver.tart.version"].GetStringVal())

	_, err = c.Driver.StartTask(ctx, &driverpb.StartTaskRequest{Task: &driverpb.TaskConfig{Id: "a/t/1"}})
	must.Eq(t, codes.Unknown, status.Code(err))
	must.StrContains(t, status.Convert(err).Message(), "invalid task config: image must not be empty; command must not be empty (the program run in the guest)")
}

func TestPlugin_Binary_noTart(t *testing.T) {
	t.Parallel()
	bin := testutil.BuildBinary(t, "./cmd/nomad-driver-tart")
	c := launch(t, bin, t.TempDir()) // PATH without tart
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stream, err := c.Driver.Fingerprint(ctx, &driverpb.FingerprintRequest{})
	must.NoError(t, err)
	fp, err := stream.Recv()
	must.NoError(t, err)
	must.Eq(t, driverpb.FingerprintResponse_UNDETECTED, fp.GetHealth())
	must.Eq(t, `tart binary "tart" not found`, fp.GetHealthDescription())
}

// BenchmarkPlugin_LaunchToFirstFingerprint measures what a Nomad client
// waits for at agent start: process launch, handshake, and the first
// Fingerprint message, next to the same first fingerprint over an
// in-process connection.
func BenchmarkPlugin_LaunchToFirstFingerprint(b *testing.B) {
	bin := testutil.BuildBinary(b, "./cmd/nomad-driver-tart")
	path := fakeTartDir(b)
	firstFingerprint := func(c *wire.Client) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		stream, err := c.Driver.Fingerprint(ctx, &driverpb.FingerprintRequest{})
		must.NoError(b, err)
		_, err = stream.Recv()
		must.NoError(b, err)
	}
	var launched, inProcess time.Duration
	for i := 0; i < b.N; i++ {
		pc := newPluginClient(b, bin, path, io.Discard)
		start := time.Now()
		firstFingerprint(dispense(b, pc))
		launched += time.Since(start)
		pc.Kill()

		start = time.Now()
		d := driverForBench(b, path)
		client, _ := plugin.TestPluginGRPCConn(b, false, sdk.PluginSet(d, nil))
		raw, err := client.Dispense(sdk.PluginKey)
		must.NoError(b, err)
		firstFingerprint(raw.(*wire.Client))
		inProcess += time.Since(start)
		_ = client.Close()
	}
	n := float64(b.N)
	b.ReportMetric(float64(launched.Milliseconds())/n, "launch_ms/op")
	b.ReportMetric(float64(inProcess.Microseconds())/1000/n, "inprocess_ms/op")
	b.ReportMetric(launched.Seconds()/inProcess.Seconds(), "launch/inprocess")
}

func driverForBench(b *testing.B, path string) sdk.Driver {
	b.Helper()
	return driver.New(nil).WithTartPath(filepath.Join(path, "tart"))
}

// TestPlugin_Binary_logsJSONOnStderr checks the logger is created before
// plugin.Serve takes over the standard streams: the driver's warning about
// a broken tart reaches stderr as an hclog JSON record Nomad can re-emit.
func TestPlugin_Binary_logsJSONOnStderr(t *testing.T) {
	t.Parallel()
	bin := testutil.BuildBinary(t, "./cmd/nomad-driver-tart")
	dir := t.TempDir()
	must.NoError(t, os.WriteFile(filepath.Join(dir, "tart"), []byte("#!/bin/sh\necho broken >&2\nexit 3\n"), 0o755))
	var stderr testutil.SyncBuffer
	c := launchWithStderr(t, bin, dir, &stderr)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stream, err := c.Driver.Fingerprint(ctx, &driverpb.FingerprintRequest{})
	must.NoError(t, err)
	fp, err := stream.Recv()
	must.NoError(t, err)
	must.Eq(t, driverpb.FingerprintResponse_UNHEALTHY, fp.GetHealth())

	// go-plugin copies stderr asynchronously: poll until the record arrives.
	var record map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for record == nil && time.Now().Before(deadline) {
		for _, line := range strings.Split(stderr.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["@message"] == "failed to run tart --version" {
				record = m
			}
		}
		if record == nil {
			time.Sleep(10 * time.Millisecond) // poll interval, not a wait for an outcome
		}
	}
	must.NotNil(t, record, must.Sprintf("no JSON warning on stderr:\n%s", stderr.String()))
	must.Eq(t, "warn", record["@level"])
	must.StrContains(t, record["error"].(string), "broken")
}

// TestPlugin_Binary_refusesWithoutHome starts the plugin with neither HOME
// nor TART_HOME, as Nomad may: it used to fall back to a relative .tart and
// wrote task state under its working directory (driver/.tart in the source
// tree when a test did this). Now the fingerprint says which variable to
// set and nothing is created.
func TestPlugin_Binary_refusesWithoutHome(t *testing.T) {
	t.Parallel()
	bin := testutil.BuildBinary(t, "./cmd/nomad-driver-tart")
	cwd := t.TempDir()
	cmd := exec.Command(bin)
	cmd.Env = []string{"PATH=" + fakeTartDir(t)}
	cmd.Dir = cwd
	c := dispense(t, newPluginClientCmd(t, cmd, io.Discard))
	ctx := t.Context()
	_, err := c.Base.SetConfig(ctx, &basepb.SetConfigRequest{PluginApiVersion: "v0.1.0"})
	must.NoError(t, err)
	fpCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.Driver.Fingerprint(fpCtx, &driverpb.FingerprintRequest{})
	must.NoError(t, err)
	fp, err := stream.Recv()
	must.NoError(t, err)
	must.Eq(t, driverpb.FingerprintResponse_UNHEALTHY, fp.GetHealth())
	must.StrContains(t, fp.GetHealthDescription(), "set TART_HOME")
	_, err = c.Driver.StartTask(ctx, &driverpb.StartTaskRequest{Task: &driverpb.TaskConfig{Id: "a/t/1",
		MsgpackDriverConfig: nil}})
	must.Error(t, err)
	entries, err := os.ReadDir(cwd)
	must.NoError(t, err)
	must.SliceEmpty(t, entries, must.Sprint("nothing written under the working directory"))
}
