// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package harness

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/protobuf/types/known/durationpb"

	basepb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/base"
	devicepb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/device"
	structspb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/structs"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
)

// DeviceHarness plays a Nomad client's device manager against one device
// plugin (reference: nomad-device-protocol.md): PluginInfo (type DEVICE),
// ConfigSchema, SetConfig, then the Fingerprint stream kept open and
// validated as the client does. Reserve and Stats are called on demand.
// Everything is released by t.Cleanup; contract violations noticed in the
// background fail the test there unless acknowledged.
type DeviceHarness struct {
	t        testing.TB
	opts     Options
	launcher launcher
	logw     *testLogWriter
	logger   hclog.Logger

	mu      sync.Mutex
	inst    *deviceInstance
	fps     []DeviceFingerprint // of the current instance only
	changed chan struct{}
	broken  []string
}

// DeviceFingerprint is one message of the device Fingerprint stream.
type DeviceFingerprint struct {
	Groups   []DeviceGroup
	Received time.Time
}

// DeviceGroup is a fingerprinted group with its attributes rendered as the
// node shows them (value and unit, e.g. "16384MiB").
type DeviceGroup struct {
	Vendor, Type, Name string
	Devices            []DeviceInstance
	Attributes         map[string]string
}

// ID is the group's "<vendor>/<type>/<name>".
func (g DeviceGroup) ID() string { return g.Vendor + "/" + g.Type + "/" + g.Name }

// Healthy returns the IDs of the healthy instances, which are the ones the
// scheduler may place on.
func (g DeviceGroup) Healthy() []string {
	var ids []string
	for _, d := range g.Devices {
		if d.Healthy {
			ids = append(ids, d.ID)
		}
	}
	return ids
}

// DeviceInstance is one detected device.
type DeviceInstance struct {
	ID                string
	Healthy           bool
	HealthDescription string
}

// DeviceStats is one Stats message: per group ID, per instance ID.
type DeviceStats map[string]map[string]InstanceStats

// InstanceStats is an instance's summary and named values, rendered as
// strings (a string, bool or number with its unit).
type InstanceStats struct {
	Summary string
	Stats   map[string]string
}

type deviceInstance struct {
	proc   *process
	base   basepb.BasePluginClient
	device devicepb.DevicePluginClient
	info   PluginInfo

	streamCtx    context.Context
	streamCancel context.CancelFunc
	streams      sync.WaitGroup
	once         sync.Once
}

// LaunchDevice starts the device plugin binary at path as Nomad's client
// does and runs the client-start sequence, returning once the first
// fingerprint has arrived.
func LaunchDevice(t testing.TB, path string, opts Options) *DeviceHarness {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatalf("harness: resolve plugin path %q: %v", path, err)
	}
	return startDevice(t, &binaryLauncher{path: abs, args: opts.Args, env: opts.Env}, opts)
}

// InProcessDevice serves device plugins made by newDevice over real gRPC
// inside the test process; Relaunch calls it again.
func InProcessDevice(t testing.TB, newDevice func(hclog.Logger) sdk.DevicePlugin, opts Options) *DeviceHarness {
	t.Helper()
	return startDevice(t, &inProcessLauncher{newServer: func(logger hclog.Logger) (plugin.GRPCPlugin, error) {
		logger = logger.Named("plugin")
		return &sdk.GRPCDevicePlugin{Device: newDevice(logger), Logger: logger}, nil
	}}, opts)
}

func startDevice(t testing.TB, l launcher, opts Options) *DeviceHarness {
	t.Helper()
	opts.setDefaults()
	logw := newTestLogWriter(t)
	h := &DeviceHarness{
		t: t, opts: opts, launcher: l, logw: logw,
		logger:  hclog.New(&hclog.LoggerOptions{Name: "client.device_mgr", Level: opts.LogLevel, Output: logw}),
		changed: make(chan struct{}),
	}
	t.Cleanup(logw.disable)
	t.Cleanup(h.cleanup)
	if err := h.launchInstance(t); err != nil {
		t.Fatalf("harness: %v", err)
	}
	return h
}

func (h *DeviceHarness) launchInstance(t testing.TB) error {
	proc, err := h.launcher.launch(t, h.logger)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	inst := &deviceInstance{proc: proc, base: basepb.NewBasePluginClient(proc.conn),
		device: devicepb.NewDevicePluginClient(proc.conn), streamCtx: ctx, streamCancel: cancel}
	if err := inst.clientStart(h.opts); err != nil {
		_ = inst.shutdown(false) // only a kill reports an error
		return err
	}
	h.mu.Lock()
	h.inst = inst
	h.fps = nil
	h.notifyLocked()
	h.mu.Unlock()
	inst.streams.Add(1)
	go func() {
		defer inst.streams.Done()
		h.readFingerprints(inst)
	}()
	if _, err := h.waitFingerprint(time.Now().Add(h.opts.Timeout), func(*DeviceFingerprint) bool { return true }); err != nil {
		return fmt.Errorf("%w (the client waits for the first device fingerprint before it collects stats; send it at once)", err)
	}
	return nil
}

// clientStart is the device manager's start: PluginInfo (type DEVICE),
// ConfigSchema and SetConfig. Device plugins have no Init.
func (i *deviceInstance) clientStart(opts Options) error {
	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
	defer cancel()
	info, err := checkPluginInfo(ctx, i.base, basepb.PluginType_DEVICE)
	if err != nil {
		return err
	}
	i.info = info
	raw, err := pluginConfig(ctx, i.base, opts.PluginConfig)
	if err != nil {
		return err
	}
	if _, err := i.base.SetConfig(ctx, &basepb.SetConfigRequest{MsgpackConfig: raw, PluginApiVersion: apiVersion}); err != nil {
		return fmt.Errorf("SetConfig: %w", err)
	}
	return nil
}

// readFingerprints reads the stream until the instance ends. The client
// drops every device of the plugin until the agent restarts when the
// stream ends, fails or carries a group that fails validation, so each of
// those is a contract violation.
func (h *DeviceHarness) readFingerprints(inst *deviceInstance) {
	stream, err := inst.device.Fingerprint(inst.streamCtx, &devicepb.FingerprintRequest{})
	for err == nil {
		var resp *devicepb.FingerprintResponse
		if resp, err = stream.Recv(); err != nil {
			break
		}
		fp, verr := newDeviceFingerprint(resp)
		if verr != nil {
			h.violation("device fingerprint fails the client's validation (all devices dropped): %v", verr)
			continue
		}
		h.mu.Lock()
		if h.inst == inst {
			h.fps = append(h.fps, fp)
			h.notifyLocked()
		}
		h.mu.Unlock()
	}
	if inst.streamCtx.Err() == nil && !inst.proc.exited() {
		h.violation("device Fingerprint stream ended while the plugin was running (the client drops all its devices): %v", err)
	}
}

func newDeviceFingerprint(r *devicepb.FingerprintResponse) (DeviceFingerprint, error) {
	fp := DeviceFingerprint{Received: time.Now()}
	var errs []error
	for _, g := range r.GetDeviceGroup() {
		dg := DeviceGroup{Vendor: g.GetVendor(), Type: g.GetDeviceType(), Name: g.GetDeviceName(), Attributes: map[string]string{}}
		if dg.Vendor == "" || dg.Type == "" || dg.Name == "" {
			errs = append(errs, fmt.Errorf("group %q has an empty vendor, type or name", dg.ID()))
		}
		for k, a := range g.GetAttributes() {
			dg.Attributes[k] = renderAttribute(a)
		}
		for _, d := range g.GetDevices() {
			if d.GetID() == "" {
				errs = append(errs, fmt.Errorf("group %q has a device without ID", dg.ID()))
			}
			dg.Devices = append(dg.Devices, DeviceInstance{ID: d.GetID(), Healthy: d.GetHealthy(), HealthDescription: d.GetHealthDescription()})
		}
		fp.Groups = append(fp.Groups, dg)
	}
	return fp, errors.Join(errs...)
}

// PluginInfo returns the running plugin's PluginInfo answer.
func (h *DeviceHarness) PluginInfo(t testing.TB) PluginInfo {
	t.Helper()
	return h.current(t).info
}

// PID is the running plugin's process ID (0 in-process).
func (h *DeviceHarness) PID(t testing.TB) int {
	t.Helper()
	return h.current(t).proc.pid
}

// WaitFingerprint waits for a fingerprint of the running process matching
// match (earlier ones included) and returns it.
func (h *DeviceHarness) WaitFingerprint(t testing.TB, match func(*DeviceFingerprint) bool) DeviceFingerprint {
	t.Helper()
	fp, err := h.waitFingerprint(time.Now().Add(h.opts.Timeout), match)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	return fp
}

func (h *DeviceHarness) waitFingerprint(deadline time.Time, match func(*DeviceFingerprint) bool) (DeviceFingerprint, error) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		h.mu.Lock()
		for i := range h.fps {
			if match(&h.fps[i]) {
				fp := h.fps[i]
				h.mu.Unlock()
				return fp, nil
			}
		}
		changed := h.changed
		n := len(h.fps)
		h.mu.Unlock()
		select {
		case <-changed:
		case <-timer.C:
			return DeviceFingerprint{}, fmt.Errorf("no matching device fingerprint within %s (%d received)", h.opts.Timeout, n)
		}
	}
}

// LastFingerprint returns the latest fingerprint of the running process.
func (h *DeviceHarness) LastFingerprint(t testing.TB) DeviceFingerprint {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.fps) == 0 {
		t.Fatalf("harness: no device fingerprint received")
	}
	return h.fps[len(h.fps)-1]
}

// Reserve calls Reserve as the task runner's device hook does and returns
// the reservation's environment; it fails t if the answer has mounts or
// device nodes, which a driver without mount support refuses.
func (h *DeviceHarness) Reserve(t testing.TB, ids ...string) map[string]string {
	t.Helper()
	env, err := h.TryReserve(ids...)
	if err != nil {
		t.Fatalf("harness: Reserve(%v): %v", ids, err)
	}
	return env
}

// TryReserve is Reserve returning the error (the task's "failed to reserve
// device" prestart failure).
func (h *DeviceHarness) TryReserve(ids ...string) (map[string]string, error) {
	inst, err := h.running()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.Timeout)
	defer cancel()
	resp, err := inst.device.Reserve(ctx, &devicepb.ReserveRequest{DeviceIds: ids})
	if err != nil {
		return nil, err
	}
	res := resp.GetContainerRes()
	if res == nil {
		return nil, errors.New("reserve answered without container_res (the client dereferences it)")
	}
	if len(res.GetMounts()) > 0 || len(res.GetDevices()) > 0 {
		return nil, fmt.Errorf("reservation has %d mounts and %d device nodes; a driver with mount_configs none refuses the task", len(res.GetMounts()), len(res.GetDevices()))
	}
	return maps.Clone(res.GetEnvs()), nil
}

// Stats opens the Stats stream with interval and returns its first n
// messages, checking each has a timestamp per instance.
func (h *DeviceHarness) Stats(t testing.TB, interval time.Duration, n int) []DeviceStats {
	t.Helper()
	inst := h.current(t)
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.Timeout+time.Duration(n)*interval)
	defer cancel()
	stream, err := inst.device.Stats(ctx, &devicepb.StatsRequest{CollectionInterval: durationpb.New(interval)})
	if err != nil {
		t.Fatalf("harness: Stats: %v", err)
	}
	var out []DeviceStats
	for len(out) < n {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("harness: Stats stream after %d messages: %v", len(out), err)
		}
		s := DeviceStats{}
		for _, g := range resp.GetGroups() {
			id := g.GetVendor() + "/" + g.GetType() + "/" + g.GetName()
			s[id] = map[string]InstanceStats{}
			for dev, st := range g.GetInstanceStats() {
				if st.GetTimestamp() == nil {
					t.Fatalf("harness: stats of %s %s have no timestamp", id, dev)
				}
				is := InstanceStats{Summary: renderStat(st.GetSummary()), Stats: map[string]string{}}
				for k, v := range st.GetStats().GetAttributes() {
					is.Stats[k] = renderStat(v)
				}
				s[id][dev] = is
			}
		}
		out = append(out, s)
	}
	return out
}

// KillPlugin SIGKILLs the plugin process (in-process: drops the server).
func (h *DeviceHarness) KillPlugin(t testing.TB) {
	t.Helper()
	if err := h.current(t).shutdown(true); err != nil {
		t.Fatalf("harness: kill device plugin: %v", err)
	}
}

// Relaunch starts a fresh process with the client-start sequence, as the
// device manager does after the plugin died.
func (h *DeviceHarness) Relaunch(t testing.TB) {
	t.Helper()
	if inst, err := h.running(); err == nil && inst != nil {
		t.Fatalf("harness: Relaunch while the device plugin still runs")
	}
	if err := h.launchInstance(t); err != nil {
		t.Fatalf("harness: relaunch device plugin: %v", err)
	}
}

// PluginLogs returns every log line seen so far.
func (h *DeviceHarness) PluginLogs() string { return h.logw.String() }

// ContractViolations returns and acknowledges the violations seen so far.
func (h *DeviceHarness) ContractViolations() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.broken
	h.broken = nil
	return out
}

func (h *DeviceHarness) running() (*deviceInstance, error) {
	h.mu.Lock()
	inst := h.inst
	h.mu.Unlock()
	if inst == nil || inst.streamCtx.Err() != nil || inst.proc.exited() {
		return nil, errors.New("the device plugin is not running (call Relaunch after KillPlugin)")
	}
	return inst, nil
}

func (h *DeviceHarness) current(t testing.TB) *deviceInstance {
	t.Helper()
	inst, err := h.running()
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	return inst
}

func (h *DeviceHarness) violation(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	h.logger.Error("device plugin contract violation", "problem", msg)
	h.mu.Lock()
	h.broken = append(h.broken, msg)
	h.notifyLocked()
	h.mu.Unlock()
}

func (h *DeviceHarness) notifyLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

func (h *DeviceHarness) cleanup() {
	h.mu.Lock()
	inst := h.inst
	h.mu.Unlock()
	if inst != nil {
		_ = inst.shutdown(false) // only a kill reports an error
	}
	h.mu.Lock()
	broken := h.broken
	h.mu.Unlock()
	for _, v := range broken {
		h.t.Errorf("device plugin contract: %s", v)
	}
}

// shutdown ends the process abruptly (SIGKILL) or as go-plugin's Kill.
func (i *deviceInstance) shutdown(kill bool) error {
	var err error
	i.once.Do(func() {
		i.streamCancel()
		if kill {
			err = i.proc.kill()
		} else {
			i.proc.stop()
		}
		i.streams.Wait()
	})
	return err
}

// renderStat renders a StatValue as `nomad node status -verbose` would
// read it: the set value (a fraction as "n / d"), then the unit.
func renderStat(v *structspb.StatValue) string {
	var s string
	switch {
	case v.GetStringVal() != nil:
		s = v.GetStringVal().GetValue()
	case v.GetBoolVal() != nil:
		s = fmt.Sprint(v.GetBoolVal().GetValue())
	case v.GetIntNumeratorVal() != nil:
		s = fmt.Sprint(v.GetIntNumeratorVal().GetValue())
		if v.GetIntDenominatorVal() != nil {
			s += fmt.Sprintf(" / %d", v.GetIntDenominatorVal().GetValue())
		}
	case v.GetFloatNumeratorVal() != nil:
		s = fmt.Sprint(v.GetFloatNumeratorVal().GetValue())
		if v.GetFloatDenominatorVal() != nil {
			s += fmt.Sprintf(" / %v", v.GetFloatDenominatorVal().GetValue())
		}
	}
	if v.GetUnit() != "" {
		s += " " + v.GetUnit()
	}
	return s
}

// WaitPluginLog waits until the log lines contain substr (plugin lines
// travel asynchronously through its stderr).
func (h *DeviceHarness) WaitPluginLog(t testing.TB, substr string) {
	t.Helper()
	waitLog(t, h.logw, h.opts.Timeout, fmt.Sprintf("%q", substr), func(text string) (string, bool) {
		return "", strings.Contains(text, substr)
	})
}
