// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/shoenig/test/must"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	driverpb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/drivers"
	"github.com/tartnomad/nomad-driver-tart/driver/internal/wire"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
)

// fullTaskConfig sets every TaskConfig field, including ones the native
// type does not model, to check the handle echoes all of them.
func fullTaskConfig() *driverpb.TaskConfig {
	return &driverpb.TaskConfig{
		Id: "alloc1/web/abcd1234", Name: "web", MsgpackDriverConfig: []byte{0x81, 0xa1, 0x61, 0x01},
		Env: map[string]string{"NOMAD_TASK_DIR": "/local"}, DeviceEnv: map[string]string{"GPU": "0"},
		Resources: &driverpb.Resources{
			AllocatedResources: &driverpb.AllocatedTaskResources{
				Cpu:      &driverpb.AllocatedCpuResources{CpuShares: 500},
				Memory:   &driverpb.AllocatedMemoryResources{MemoryMb: 256, MemoryMaxMb: 512},
				Networks: []*driverpb.NetworkResource{{Device: "en0", Mbits: 10}},
			},
			LinuxResources: &driverpb.LinuxResources{CpuShares: 500, MemoryLimitBytes: 512 << 20,
				CpusetCpus: "0,1", PercentTicks: 0.25, CpusetCgroup: "/nomad.slice/x.scope"},
			Ports: []*driverpb.PortMapping{{Label: "http", Value: 25000, To: 8080, HostIp: "10.0.0.1"}},
		},
		Mounts:  []*driverpb.Mount{{TaskPath: "/data", HostPath: "/srv", Readonly: true, PropagationMode: "private", RequestName: "vol"}},
		Devices: []*driverpb.Device{{TaskPath: "/dev/x", HostPath: "/dev/y", CgroupPermissions: "rw"}},
		User:    "runner", AllocDir: "/alloc1", StdoutPath: "/alloc1/alloc/logs/.web.stdout.fifo",
		StderrPath: "/alloc1/alloc/logs/.web.stderr.fifo", TaskGroupName: "g", JobName: "j", AllocId: "alloc1",
		NetworkIsolationSpec: &driverpb.NetworkIsolationSpec{Mode: driverpb.NetworkIsolationSpec_GROUP, Path: "/ns",
			HostsConfig: &driverpb.HostsConfig{Hostname: "h", Address: "10.0.0.2"}},
		Dns:   &driverpb.DNSConfig{Servers: []string{"1.1.1.1"}},
		JobId: "j", Namespace: "default", NodeName: "mac1", NodeId: "n1", ParentJobId: "p",
	}
}

func TestServer_StartTask_echoesTaskConfig(t *testing.T) {
	t.Parallel()
	d := newFakeDriver()
	d.handle = &sdk.TaskHandle{Version: 0, DriverState: []byte(`{"vm":"x"}`)}
	req := fullTaskConfig()

	resp, err := connect(t, d).Driver.StartTask(t.Context(), &driverpb.StartTaskRequest{Task: req})
	must.NoError(t, err)
	h := resp.GetHandle()
	must.True(t, proto.Equal(req, h.GetConfig()), must.Sprintf("handle config %v", h.GetConfig()))
	must.Eq(t, int32(1), h.GetVersion())
	must.Eq(t, driverpb.TaskState_RUNNING, h.GetState())
	must.Eq(t, []byte(`{"vm":"x"}`), h.GetDriverState())

	got := d.gotStart
	must.Eq(t, "alloc1/web/abcd1234", got.ID)
	must.Eq(t, "web", got.Name)
	must.Eq(t, "g", got.TaskGroup)
	must.Eq(t, "mac1", got.NodeName)
	must.Eq(t, []byte{0x81, 0xa1, 0x61, 0x01}, got.RawDriverConfig)
	must.Eq(t, "/alloc1/web", got.TaskDir())
	must.Eq(t, &sdk.Resources{CPUShares: 500, MemoryMB: 256, MemoryMaxMB: 512, MemoryLimitBytes: 512 << 20,
		CPUSetCPUs: "0,1", PercentTicks: 0.25,
		Ports: []sdk.PortMapping{{Label: "http", Value: 25000, To: 8080, HostIP: "10.0.0.1"}}}, got.Resources)
	must.Eq(t, []sdk.Mount{{TaskPath: "/data", HostPath: "/srv", Readonly: true, PropagationMode: "private"}}, got.Mounts)
}

func TestServer_StartTask_errors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		err         error
		code        codes.Code
		recoverable bool
	}{
		{name: "recoverable", err: sdk.NewRecoverableError(errors.New("no vm slot free")), code: codes.FailedPrecondition, recoverable: true},
		{name: "wrapped recoverable", err: fmt.Errorf("pool: %w", sdk.NewRecoverableError(errors.New("busy"))), code: codes.FailedPrecondition, recoverable: true},
		{name: "plain", err: errors.New("image not found"), code: codes.Unknown},
		{name: "not supported", err: sdk.ErrNotSupported, code: codes.Unimplemented},
		{name: "driver context canceled", err: context.Canceled, code: codes.Aborted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newFakeDriver()
			d.err = tc.err
			_, err := connect(t, d).Driver.StartTask(t.Context(), &driverpb.StartTaskRequest{Task: fullTaskConfig()})
			st := status.Convert(err)
			must.Eq(t, tc.code, st.Code())
			must.StrContains(t, st.Message(), tc.err.Error())
			must.Eq(t, tc.recoverable, sdk.IsRecoverableStatus(err))
			if tc.recoverable {
				// The client resolves the detail by its full name.
				must.Eq(t, "type.googleapis.com/hashicorp.nomad.plugins.shared.structs.RecoverableError",
					st.Proto().GetDetails()[0].GetTypeUrl())
			}
		})
	}
}

func TestServer_StartTask_noHandle(t *testing.T) {
	t.Parallel()
	c := connect(t, newFakeDriver()) // handle nil, err nil
	_, err := c.Driver.StartTask(t.Context(), &driverpb.StartTaskRequest{Task: fullTaskConfig()})
	must.Eq(t, codes.Internal, status.Code(err))
	_, err = c.Driver.StartTask(t.Context(), &driverpb.StartTaskRequest{})
	must.Eq(t, codes.InvalidArgument, status.Code(err))
}

func TestServer_RecoverTask_usesHandleConfigID(t *testing.T) {
	t.Parallel()
	d := newFakeDriver()
	c := connect(t, d)
	cfg := fullTaskConfig()
	cfg.MsgpackDriverConfig = nil // as after a client restart

	_, err := c.Driver.RecoverTask(t.Context(), &driverpb.RecoverTaskRequest{Handle: &driverpb.TaskHandle{
		Version: 3, Config: cfg, State: driverpb.TaskState_RUNNING, DriverState: []byte("state"),
	}})
	must.NoError(t, err)
	h := d.gotRecover
	must.Eq(t, "alloc1/web/abcd1234", h.Config.ID)
	must.Eq(t, 3, h.Version)
	must.Eq(t, sdk.TaskStateRunning, h.State)
	must.Eq(t, []byte("state"), h.DriverState)
	must.SliceEmpty(t, h.Config.RawDriverConfig)
	// The recovered config still echoes exactly.
	must.True(t, proto.Equal(cfg, sdk.TaskConfigToProto(h.Config)))

	d.err = fmt.Errorf("vm gone: %w", sdk.ErrTaskNotFound)
	_, err = c.Driver.RecoverTask(t.Context(), &driverpb.RecoverTaskRequest{Handle: &driverpb.TaskHandle{Config: cfg}})
	must.Eq(t, codes.NotFound, status.Code(err))
	_, err = c.Driver.RecoverTask(t.Context(), &driverpb.RecoverTaskRequest{TaskId: "x"})
	must.Eq(t, codes.InvalidArgument, status.Code(err))
}

func TestServer_WaitTask_alwaysSetsResult(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		send    *sdk.ExitResult
		close   bool
		want    *driverpb.ExitResult
		wantErr string
	}{
		{name: "exit", send: &sdk.ExitResult{ExitCode: 3, Signal: 9, OOMKilled: true},
			want: &driverpb.ExitResult{ExitCode: 3, Signal: 9, OomKilled: true}},
		{name: "driver error", send: &sdk.ExitResult{Err: errors.New("vm vanished")},
			want: &driverpb.ExitResult{}, wantErr: "vm vanished"},
		{name: "nil result", send: nil, want: &driverpb.ExitResult{}, wantErr: "without an exit result"},
		{name: "closed channel", close: true, want: &driverpb.ExitResult{}, wantErr: "without an exit result"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newFakeDriver()
			d.waitCh = make(chan *sdk.ExitResult, 1)
			if tc.close {
				close(d.waitCh)
			} else {
				d.waitCh <- tc.send
			}
			resp, err := connect(t, d).Driver.WaitTask(t.Context(), &driverpb.WaitTaskRequest{TaskId: "t1"})
			must.NoError(t, err)
			must.NotNil(t, resp.GetResult())
			must.True(t, proto.Equal(tc.want, resp.GetResult()), must.Sprintf("got %v", resp.GetResult()))
			if tc.wantErr == "" {
				must.Eq(t, "", resp.GetErr())
			} else {
				must.StrContains(t, resp.GetErr(), tc.wantErr)
			}
			must.Eq(t, "t1", d.gotTaskID)
		})
	}
}

func TestServer_WaitTask_unknownTaskAndCancel(t *testing.T) {
	t.Parallel()
	d := newFakeDriver()
	d.err = sdk.ErrTaskNotFound
	_, err := connect(t, d).Driver.WaitTask(t.Context(), &driverpb.WaitTaskRequest{TaskId: "nope"})
	must.Eq(t, codes.NotFound, status.Code(err))

	d2 := newFakeDriver()
	d2.waitCh = make(chan *sdk.ExitResult) // never exits
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err = connect(t, d2).Driver.WaitTask(ctx, &driverpb.WaitTaskRequest{TaskId: "t1"})
	must.Eq(t, codes.DeadlineExceeded, status.Code(err))
}

func TestServer_StopDestroy_goneTaskIsDone(t *testing.T) {
	t.Parallel()
	d := newFakeDriver()
	c := connect(t, d)

	_, err := c.Driver.StopTask(t.Context(), &driverpb.StopTaskRequest{
		TaskId: "t1", Timeout: durationpb.New(7 * time.Second), Signal: "SIGTERM"})
	must.NoError(t, err)
	must.Eq(t, "t1", d.gotTaskID)
	must.Eq(t, 7*time.Second, d.gotTimeout)
	must.Eq(t, "SIGTERM", d.gotSignal)

	_, err = c.Driver.DestroyTask(t.Context(), &driverpb.DestroyTaskRequest{TaskId: "t2", Force: true})
	must.NoError(t, err)
	must.Eq(t, "t2", d.gotTaskID)
	must.True(t, d.gotForce)

	d.err = fmt.Errorf("vm x: %w", sdk.ErrTaskNotFound)
	_, err = c.Driver.StopTask(t.Context(), &driverpb.StopTaskRequest{TaskId: "t1"})
	must.NoError(t, err)
	_, err = c.Driver.DestroyTask(t.Context(), &driverpb.DestroyTaskRequest{TaskId: "t1", Force: true})
	must.NoError(t, err)

	d.err = errors.New("tart stop failed")
	_, err = c.Driver.StopTask(t.Context(), &driverpb.StopTaskRequest{TaskId: "t1"})
	must.Eq(t, codes.Unknown, status.Code(err))
	_, err = c.Driver.DestroyTask(t.Context(), &driverpb.DestroyTaskRequest{TaskId: "t1"})
	must.Eq(t, codes.Unknown, status.Code(err))
}

func TestServer_InspectTask_timestamps(t *testing.T) {
	t.Parallel()
	d := newFakeDriver()
	started := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	d.status = &sdk.TaskStatus{ID: "t1", Name: "web", State: sdk.TaskStateRunning, StartedAt: started,
		DriverAttributes: map[string]string{"vm": "x"}}
	resp, err := connect(t, d).Driver.InspectTask(t.Context(), &driverpb.InspectTaskRequest{TaskId: "t1"})
	must.NoError(t, err)
	task := resp.GetTask()
	must.Eq(t, "t1", task.GetId())
	must.Eq(t, driverpb.TaskState_RUNNING, task.GetState())
	must.Eq(t, started, task.GetStartedAt().AsTime())
	must.NotNil(t, task.GetCompletedAt()) // Nomad's converter needs both
	must.Nil(t, task.GetResult())
	must.Eq(t, map[string]string{"vm": "x"}, resp.GetDriver().GetAttributes())
}

func TestServer_TaskStats_alwaysSetsStats(t *testing.T) {
	t.Parallel()
	d := newFakeDriver()
	d.stats = make(chan *sdk.TaskResourceUsage, 2)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	d.stats <- &sdk.TaskResourceUsage{
		Timestamp: at,
		CPU:       sdk.CPUUsage{Percent: 12.5, TotalTicks: 300, Measured: []string{sdk.MeasuredPercent, sdk.MeasuredTotalTicks, "bogus"}},
		Memory:    sdk.MemoryUsage{RSS: 100, Usage: 200, Swap: 5, Measured: []string{sdk.MeasuredRSS, sdk.MeasuredUsage, sdk.MeasuredSwap}},
	}
	d.stats <- nil // a driver with nothing measured
	close(d.stats) // task exited

	stream, err := connect(t, d).Driver.TaskStats(t.Context(), &driverpb.TaskStatsRequest{
		TaskId: "t1", CollectionInterval: durationpb.New(2 * time.Second)})
	must.NoError(t, err)

	first, err := stream.Recv()
	must.NoError(t, err)
	s := first.GetStats()
	must.Eq(t, at, s.GetTimestamp().AsTime())
	must.Eq(t, "t1", s.GetId())
	cpu, mem := s.GetAggResourceUsage().GetCpu(), s.GetAggResourceUsage().GetMemory()
	must.Eq(t, 12.5, cpu.GetPercent())
	must.Eq(t, []driverpb.CPUUsage_Fields{driverpb.CPUUsage_PERCENT, driverpb.CPUUsage_TOTAL_TICKS}, cpu.GetMeasuredFields())
	must.Eq(t, uint64(200), mem.GetUsage())
	must.Eq(t, []driverpb.MemoryUsage_Fields{driverpb.MemoryUsage_RSS, driverpb.MemoryUsage_USAGE, driverpb.MemoryUsage_SWAP},
		mem.GetMeasuredFields())

	second, err := stream.Recv()
	must.NoError(t, err)
	must.NotNil(t, second.GetStats().GetAggResourceUsage())
	must.True(t, second.GetStats().GetTimestamp().IsValid() && second.GetStats().GetTimestamp().GetSeconds() > 0)

	_, err = stream.Recv()
	must.ErrorIs(t, err, io.EOF)
	must.Eq(t, 2*time.Second, d.gotInterval)
}

func TestServer_SignalTask(t *testing.T) {
	t.Parallel()
	d := newFakeDriver()
	c := connect(t, d)
	_, err := c.Driver.SignalTask(t.Context(), &driverpb.SignalTaskRequest{TaskId: "t1", Signal: "SIGHUP"})
	must.NoError(t, err)
	must.Eq(t, "SIGHUP", d.gotSignal)

	d.err = sdk.ErrNotSupported
	_, err = c.Driver.SignalTask(t.Context(), &driverpb.SignalTaskRequest{TaskId: "t1", Signal: "SIGHUP"})
	must.Eq(t, codes.Unimplemented, status.Code(err))
}

// TestServer_secretsStayOut runs failing and succeeding RPCs for a task
// whose environment holds a secret and checks it shows up in neither the
// adapter's log nor any error text.
func TestServer_secretsStayOut(t *testing.T) {
	t.Parallel()
	const secret = "jit-config-c2VjcmV0"
	var logs testutil.SyncBuffer
	d := newFakeDriver()
	d.err = fmt.Errorf("task gone: %w", sdk.ErrTaskNotFound)
	logger := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Trace, JSONFormat: true})
	client, _ := plugin.TestPluginGRPCConn(t, false, plugin.PluginSet{sdk.PluginKey: &sdk.GRPCPlugin{Driver: d, Logger: logger}})
	t.Cleanup(func() { _ = client.Close() })
	raw, err := client.Dispense(sdk.PluginKey)
	must.NoError(t, err)
	c := raw.(*wire.Client)

	task := fullTaskConfig()
	task.Env["ACTIONS_RUNNER_INPUT_JITCONFIG"] = secret
	var errs []string
	_, err = c.Driver.StartTask(t.Context(), &driverpb.StartTaskRequest{Task: task})
	errs = append(errs, status.Convert(err).Message())
	_, err = c.Driver.RecoverTask(t.Context(), &driverpb.RecoverTaskRequest{Handle: &driverpb.TaskHandle{Config: task}})
	errs = append(errs, status.Convert(err).Message())
	_, err = c.Driver.StopTask(t.Context(), &driverpb.StopTaskRequest{TaskId: task.GetId()})
	must.NoError(t, err) // logged at debug
	_, err = c.Driver.DestroyTask(t.Context(), &driverpb.DestroyTaskRequest{TaskId: task.GetId()})
	must.NoError(t, err)

	must.StrContains(t, logs.String(), "stop of unknown task treated as done") // the log is captured
	must.StrNotContains(t, logs.String(), secret)
	for _, e := range errs {
		must.StrContains(t, e, task.GetId())
		must.StrNotContains(t, e, secret)
	}
}
