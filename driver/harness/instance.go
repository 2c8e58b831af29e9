// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	basepb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/base"
	driverpb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/drivers"
)

// apiVersion is the only driver API version Nomad has ever accepted.
const apiVersion = "v0.1.0"

// PluginInfo is what the plugin answered to BasePlugin/PluginInfo.
type PluginInfo struct {
	Name        string
	Version     string
	APIVersions []string
}

// instance is one plugin process as the client's driver manager sees it.
type instance struct {
	h      *Harness
	proc   *process
	base   basepb.BasePluginClient
	driver driverpb.DriverClient
	info   PluginInfo

	streamCtx    context.Context
	streamCancel context.CancelFunc
	streams      sync.WaitGroup

	mu     sync.Mutex
	isDead bool
}

func newInstance(proc *process, h *Harness) *instance {
	ctx, cancel := context.WithCancel(context.Background())
	return &instance{
		h:            h,
		proc:         proc,
		base:         basepb.NewBasePluginClient(proc.conn),
		driver:       driverpb.NewDriverClient(proc.conn),
		streamCtx:    ctx,
		streamCancel: cancel,
	}
}

func (i *instance) dead() bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.isDead || i.proc.exited()
}

// semver is the shape Nomad's version parser accepts for plugin_version.
var semver = regexp.MustCompile(`^v?\d+(\.\d+){0,2}(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// checkPluginInfo calls PluginInfo and applies the checks that make
// Nomad's plugin loader refuse to start the agent; want is the plugin type
// the loader expects (DRIVER from a driver block, DEVICE from a device).
func checkPluginInfo(ctx context.Context, base basepb.BasePluginClient, want basepb.PluginType) (PluginInfo, error) {
	resp, err := base.PluginInfo(ctx, &basepb.PluginInfoRequest{})
	if err != nil {
		return PluginInfo{}, fmt.Errorf("PluginInfo: %w", err)
	}
	var problems []error
	if resp.GetType() != want {
		problems = append(problems, fmt.Errorf("type is %v, want %v", resp.GetType(), want))
	}
	if !slices.Contains(resp.GetPluginApiVersions(), apiVersion) {
		problems = append(problems, fmt.Errorf("plugin_api_versions %q lack %q", resp.GetPluginApiVersions(), apiVersion))
	}
	if !semver.MatchString(resp.GetPluginVersion()) {
		problems = append(problems, fmt.Errorf("plugin_version %q is not a semantic version", resp.GetPluginVersion()))
	}
	if resp.GetName() == "" {
		problems = append(problems, errors.New("name is empty"))
	}
	if err := errors.Join(problems...); err != nil {
		return PluginInfo{}, fmt.Errorf("PluginInfo answer would stop the Nomad agent: %w", err)
	}
	return PluginInfo{Name: resp.GetName(), Version: resp.GetPluginVersion(), APIVersions: resp.GetPluginApiVersions()}, nil
}

// pluginConfig fetches ConfigSchema and encodes the agent's config block
// with it, as the plugin loader does.
func pluginConfig(ctx context.Context, base basepb.BasePluginClient, body string) ([]byte, error) {
	resp, err := base.ConfigSchema(ctx, &basepb.ConfigSchemaRequest{})
	if err != nil {
		return nil, fmt.Errorf("ConfigSchema: %w", err)
	}
	raw, err := encodePluginConfig(resp.GetSpec(), body)
	if err != nil {
		return nil, fmt.Errorf("plugin config does not decode against ConfigSchema (the agent would refuse to start): %w", err)
	}
	return raw, nil
}

// pluginInfo checks the driver's PluginInfo answer and keeps it.
func (i *instance) pluginInfo(ctx context.Context) error {
	info, err := checkPluginInfo(ctx, i.base, basepb.PluginType_DRIVER)
	if err != nil {
		return err
	}
	i.info = info
	return nil
}

// clientStart runs the long-lived process's start sequence (reference 3.1.A):
// PluginInfo, ConfigSchema, SetConfig with nomad_config, Init. The streams
// are opened by openStreams.
func (i *instance) clientStart(opts Options) error {
	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
	defer cancel()
	if err := i.pluginInfo(ctx); err != nil {
		return err
	}
	raw, err := pluginConfig(ctx, i.base, opts.PluginConfig)
	if err != nil {
		return err
	}
	_, err = i.base.SetConfig(ctx, &basepb.SetConfigRequest{
		MsgpackConfig:    raw,
		PluginApiVersion: apiVersion,
		NomadConfig: &basepb.NomadConfig{Driver: &basepb.NomadDriverConfig{
			ClientMinPort: opts.ClientMinPort,
			ClientMaxPort: opts.ClientMaxPort,
		}},
	})
	if err != nil {
		return fmt.Errorf("SetConfig (long-lived process): %w", err)
	}
	if _, err := i.driver.Init(ctx, &driverpb.InitRequest{}); err != nil && status.Code(err) != codes.Unimplemented {
		return fmt.Errorf("plugin Init: %w (any error but Unimplemented makes the client kill the plugin)", err)
	}
	return nil
}

// agentStartProcesses replays the discovery and validation processes of an
// agent start (reference 1.4 #1 and #2), each in its own plugin process.
func (h *Harness) agentStartProcesses() error {
	disc, err := h.launcher.launch(h.t, h.logger)
	if err != nil {
		return fmt.Errorf("discovery process: %w", err)
	}
	inst := newInstance(disc, h)
	ctx, cancel := h.ctx()
	defer cancel()
	if err := inst.pluginInfo(ctx); err != nil {
		_ = inst.shutdown(false)
		return fmt.Errorf("discovery process: %w", err)
	}
	raw, err := pluginConfig(ctx, inst.base, h.opts.PluginConfig)
	_ = inst.shutdown(false)
	if err != nil {
		return fmt.Errorf("discovery process: %w", err)
	}
	val, err := h.launcher.launch(h.t, h.logger)
	if err != nil {
		return fmt.Errorf("validation process: %w", err)
	}
	inst = newInstance(val, h)
	defer func() { _ = inst.shutdown(false) }()
	for n := 1; n <= 2; n++ {
		req := &basepb.SetConfigRequest{MsgpackConfig: raw, PluginApiVersion: apiVersion}
		if _, err := inst.base.SetConfig(ctx, req); err != nil {
			return fmt.Errorf("validation process: SetConfig #%d (without nomad_config): %w", n, err)
		}
	}
	return nil
}

// openStreams opens Fingerprint and TaskEvents and reads them in the
// background until the instance ends.
func (i *instance) openStreams() {
	i.streams.Add(2)
	go func() {
		defer i.streams.Done()
		i.readFingerprints()
	}()
	go func() {
		defer i.streams.Done()
		i.readEvents()
	}()
}

func (i *instance) readFingerprints() {
	stream, err := i.driver.Fingerprint(i.streamCtx, &driverpb.FingerprintRequest{})
	readStream(i, "Fingerprint", stream, err, func(resp *driverpb.FingerprintResponse) {
		i.h.addFingerprint(newFingerprint(resp))
	})
}

func (i *instance) readEvents() {
	stream, err := i.driver.TaskEvents(i.streamCtx, &driverpb.TaskEventsRequest{})
	readStream(i, "TaskEvents", stream, err, i.h.addEvent)
}

// readStream hands every message of a server stream opened with openErr to
// add until the stream fails, then reports the failure (streamFailed).
func readStream[T any](i *instance, name string, stream interface{ Recv() (T, error) }, openErr error, add func(T)) {
	if openErr != nil {
		i.streamFailed(name, openErr)
		return
	}
	for {
		msg, err := stream.Recv()
		if err != nil {
			i.streamFailed(name, err)
			return
		}
		add(msg)
	}
}

// streamFailed reports a stream that ended while the plugin was meant to be
// running: Nomad re-opens such streams at once, in a tight loop.
func (i *instance) streamFailed(name string, err error) {
	if i.dead() || i.streamCtx.Err() != nil {
		return
	}
	if errors.Is(err, io.EOF) {
		i.h.violation("%s stream ended while the plugin was running (Nomad re-opens it at once, in a loop); keep it open until the context ends", name)
		return
	}
	i.h.violation("%s stream failed while the plugin was running: %v (Nomad marks the driver unhealthy and re-opens it at once)", name, err)
}

// shutdown ends the process: abruptly (SIGKILL) or as a graceful client
// shutdown (Driver/Shutdown, then go-plugin Kill).
func (i *instance) shutdown(kill bool) error {
	i.mu.Lock()
	already := i.isDead
	i.isDead = true
	i.mu.Unlock()
	if already {
		return nil
	}
	var err error
	if kill {
		i.streamCancel()
		err = i.proc.kill()
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if _, serr := i.driver.Shutdown(ctx, &driverpb.ShutdownRequest{}); serr != nil && status.Code(serr) != codes.Unimplemented {
			i.h.logger.Warn("driver Shutdown failed", "error", serr)
		}
		cancel()
		i.streamCancel()
		i.proc.stop()
	}
	i.streams.Wait()
	return err
}
