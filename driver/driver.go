// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

import (
	"context"
	"fmt"
	"os/exec"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk/hclspec"
)

// Driver is the tart task driver. It is safe for concurrent use: Nomad
// calls one long-lived plugin process for all tasks of a node.
type Driver struct {
	logger   hclog.Logger
	lookPath func(string) (string, error)

	mu     sync.Mutex // guards config
	config *PluginConfig
}

var _ sdk.Driver = (*Driver)(nil)

// New returns a driver logging to logger (nil discards).
func New(logger hclog.Logger) *Driver {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Driver{logger: logger.Named(PluginName), lookPath: exec.LookPath}
}

// NewPlugin is New as the constructor sdk.Serve expects.
func NewPlugin(logger hclog.Logger) sdk.Driver { return New(logger) }

// pluginConfig returns the current config, defaults when none was set
// (a reattached process keeps the config it already has).
func (d *Driver) pluginConfig() PluginConfig {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.config == nil {
		c := PluginConfig{}
		_ = c.Validate() // defaults are valid
		return c
	}
	return *d.config
}

// SetConfig decodes and validates the plugin config. It may arrive twice in
// a row with the same bytes and only stores the result.
func (d *Driver) SetConfig(cfg *sdk.PluginConfig) error {
	var c PluginConfig
	if len(cfg.RawConfig) > 0 {
		if err := hclspec.Decode(pluginConfigSpec, cfg.RawConfig, &c); err != nil {
			return fmt.Errorf("failed to decode plugin config: %w", err)
		}
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("invalid plugin config: %w", err)
	}
	d.mu.Lock()
	d.config = &c
	d.mu.Unlock()
	return nil
}

// TaskEvents has no events to send yet; the stream stays open until ctx
// ends (the goroutine is owned by ctx).
func (d *Driver) TaskEvents(ctx context.Context) (<-chan *sdk.TaskEvent, error) {
	ch := make(chan *sdk.TaskEvent)
	go func() {
		<-ctx.Done()
		close(ch)
	}()
	return ch, nil
}

// StartTask is not implemented in the skeleton.
func (d *Driver) StartTask(context.Context, *sdk.TaskConfig) (*sdk.TaskHandle, error) {
	return nil, sdk.ErrNotSupported
}

// RecoverTask is not implemented in the skeleton.
func (d *Driver) RecoverTask(context.Context, *sdk.TaskHandle) error {
	return sdk.ErrNotSupported
}

// WaitTask is not implemented in the skeleton.
func (d *Driver) WaitTask(context.Context, string) (<-chan *sdk.ExitResult, error) {
	return nil, sdk.ErrNotSupported
}

// StopTask is not implemented in the skeleton.
func (d *Driver) StopTask(context.Context, string, time.Duration, string) error {
	return sdk.ErrNotSupported
}

// DestroyTask is not implemented in the skeleton.
func (d *Driver) DestroyTask(context.Context, string, bool) error {
	return sdk.ErrNotSupported
}

// InspectTask is not implemented in the skeleton.
func (d *Driver) InspectTask(context.Context, string) (*sdk.TaskStatus, error) {
	return nil, sdk.ErrNotSupported
}

// TaskStats is not implemented in the skeleton.
func (d *Driver) TaskStats(context.Context, string, time.Duration) (<-chan *sdk.TaskResourceUsage, error) {
	return nil, sdk.ErrNotSupported
}

// SignalTask is not implemented in the skeleton.
func (d *Driver) SignalTask(context.Context, string, string) error {
	return sdk.ErrNotSupported
}

// ExecTask is not implemented in the skeleton.
func (d *Driver) ExecTask(context.Context, string, []string, time.Duration) (*sdk.ExecResult, error) {
	return nil, sdk.ErrNotSupported
}
