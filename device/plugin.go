// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package device

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk/hclspec"
	"github.com/tartnomad/nomad-driver-tart/tart"
)

// Plugin is the tart slot device plugin. It is safe for concurrent use.
type Plugin struct {
	logger hclog.Logger
	// lookPath resolves tart_path (exec.LookPath; replaced in tests).
	lookPath func(string) (string, error)

	// hostOnce reads the host attributes once: they do not change while
	// the plugin runs, and each read runs commands.
	hostOnce sync.Once
	host     map[string]any

	mu     sync.Mutex
	config *Config
}

var _ sdk.DevicePlugin = (*Plugin)(nil)

// New returns a plugin with default config until SetConfig.
func New(logger hclog.Logger) *Plugin {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Plugin{logger: logger, lookPath: exec.LookPath}
}

// NewPlugin has the signature sdk.ServeDevice takes.
func NewPlugin(logger hclog.Logger) sdk.DevicePlugin { return New(logger) }

// SetConfig decodes and validates the plugin config; it only stores it.
func (p *Plugin) SetConfig(cfg *sdk.PluginConfig) error {
	var c Config
	if len(cfg.RawConfig) > 0 {
		if err := hclspec.Decode(configSpec, cfg.RawConfig, &c); err != nil {
			return fmt.Errorf("failed to decode plugin config: %w", err)
		}
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("invalid plugin config: %w", err)
	}
	p.mu.Lock()
	p.config = &c
	p.mu.Unlock()
	return nil
}

// currentConfig returns the config, defaults when none was set (a
// reattached process keeps the one it has).
func (p *Plugin) currentConfig() Config {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.config == nil {
		var c Config
		_ = c.Validate() // defaults are valid
		return c
	}
	return *p.config
}

// Reserve answers with the slot IDs in EnvSlotIDs. There is nothing to
// set up on the host: the scheduler's accounting is the reservation, and
// the driver starts the VM. Unknown IDs are refused, naming them.
func (p *Plugin) Reserve(_ context.Context, ids []string) (*sdk.DeviceReservation, error) {
	cfg := p.currentConfig()
	for _, id := range ids {
		if _, err := slotIndex(id, cfg.MaxVMs); err != nil {
			return nil, err
		}
	}
	p.logger.Debug("reserved vm slots", "slot_ids", strings.Join(ids, ","))
	return &sdk.DeviceReservation{Envs: map[string]string{EnvSlotIDs: strings.Join(ids, ",")}}, nil
}

// slotIndex parses an instance ID of a host with max slots.
func slotIndex(id string, max int) (int, error) {
	n, err := strconv.Atoi(strings.TrimPrefix(id, SlotIDPrefix))
	if err != nil || !strings.HasPrefix(id, SlotIDPrefix) || n < 0 || n >= max {
		return 0, fmt.Errorf("device ID %q is not a VM slot of this host (slot-0 .. slot-%d)", id, max-1)
	}
	return n, nil
}

// client is a tart client for cfg.
func client(cfg Config) *tart.Client {
	opts := []tart.Option{tart.WithBinary(cfg.TartPath)}
	if cfg.TartHome != "" {
		opts = append(opts, tart.WithHome(cfg.TartHome))
	}
	return tart.NewClient(opts...)
}

// slotSeed is the MAC seed slots are derived from: the config's, else the
// driver's published one, else the host name (the driver's default).
func slotSeed(cfg Config, driver *tart.SlotRecord) string {
	switch {
	case cfg.MACSeed != "":
		return cfg.MACSeed
	case driver != nil && driver.MACSeed != "":
		return driver.MACSeed
	}
	h, _ := os.Hostname()
	return h
}
