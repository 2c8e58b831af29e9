// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package device

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"time"

	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
	"github.com/tartnomad/nomad-driver-tart/tart"
)

// Fingerprint sends the slot group at once, then again whenever a check
// (every health_check_interval) changes it, until ctx ends. It never
// ends early and never fails: tart missing or not answering makes every
// instance unhealthy with a description instead (Nomad's client would
// drop the plugin's devices for good otherwise). The goroutine is owned
// by ctx.
func (p *Plugin) Fingerprint(ctx context.Context) (<-chan *sdk.DeviceFingerprint, error) {
	ch := make(chan *sdk.DeviceFingerprint, 1)
	go func() {
		defer close(ch)
		var last *sdk.DeviceFingerprint
		var lastProblem string
		for {
			cfg := p.currentConfig()
			fp, problem := p.check(ctx, cfg)
			if problem != lastProblem {
				if problem != "" {
					p.logger.Warn("vm slots are not all usable", "problem", problem)
				} else {
					p.logger.Info("vm slots are usable", "max_vms", cfg.MaxVMs)
				}
				lastProblem = problem
			}
			if last == nil || !reflect.DeepEqual(last, fp) {
				select {
				case ch <- fp:
					last = fp
				case <-ctx.Done():
					return
				}
			}
			timer := time.NewTimer(cfg.HealthCheckInterval)
			select {
			case <-timer.C:
			case <-ctx.Done():
				timer.Stop()
				return
			}
		}
	}()
	return ch, nil
}

// check builds the device group for cfg and returns the problem that
// makes instances unhealthy or the driver disagree ("" when none). The
// texts are stable between calls: every change is a node update.
func (p *Plugin) check(ctx context.Context, cfg Config) (*sdk.DeviceFingerprint, string) {
	c := client(cfg)
	p.hostOnce.Do(func() { p.host = hostAttributes(ctx, cfg.TartTimeout) })
	attrs := maps.Clone(p.host)
	attrs["max_vms"] = int64(cfg.MaxVMs)
	ver, tartErr := p.tartVersion(ctx, cfg)
	if tartErr == nil {
		attrs["tart_version"] = ver
	}
	driver, mismatch := p.compareDriver(c.Home(), cfg)
	if driver != nil {
		attrs["driver_max_vms"] = int64(driver.MaxVMs)
	}
	p.publish(c.Home(), cfg, driver)

	group := &sdk.DeviceGroup{Vendor: Vendor, Type: Type, Name: Name, Attributes: attrs}
	problem := mismatch
	for i := range cfg.MaxVMs {
		d := &sdk.Device{ID: SlotID(i), Healthy: true}
		switch {
		case tartErr != nil:
			d.Healthy, d.HealthDescription = false, tartErr.Error()
		case driver != nil && i >= driver.MaxVMs:
			d.Healthy, d.HealthDescription = false, mismatch
		case mismatch != "":
			d.HealthDescription = mismatch
		}
		group.Devices = append(group.Devices, d)
	}
	if tartErr != nil {
		problem = tartErr.Error()
	}
	return &sdk.DeviceFingerprint{Groups: []*sdk.DeviceGroup{group}}, problem
}

// errTart is the class of tart problems that make every slot unhealthy.
var errTart = errors.New("tart is not usable")

// tartVersion checks tart: found, and answering --version in time.
func (p *Plugin) tartVersion(ctx context.Context, cfg Config) (string, error) {
	path, err := p.lookPath(cfg.TartPath)
	if err != nil {
		return "", fmt.Errorf("tart binary %q not found: %w", cfg.TartPath, errTart)
	}
	vctx, cancel := context.WithTimeout(ctx, cfg.TartTimeout)
	defer cancel()
	out, err := tart.NewClient(tart.WithBinary(path)).Version(vctx)
	switch {
	case vctx.Err() != nil && ctx.Err() == nil:
		return "", fmt.Errorf("tart binary %q did not answer --version within %s: %w", path, cfg.TartTimeout, errTart)
	case err != nil:
		return "", fmt.Errorf("tart binary %q fails: %s: %w", path, firstLine(err.Error()), errTart)
	}
	return firstLine(out), nil
}

// compareDriver reads the driver's published slot record and describes a
// max_vms difference ("" when they agree or the driver never ran here).
func (p *Plugin) compareDriver(home string, cfg Config) (*tart.SlotRecord, string) {
	r, ok, err := tart.ReadSlotRecord(home, "driver")
	if err != nil {
		p.logger.Warn("failed to read the driver's slot record", "tart_home", home, "error", err)
		return nil, ""
	}
	if !ok {
		return nil, ""
	}
	switch {
	case r.MaxVMs < cfg.MaxVMs:
		return &r, fmt.Sprintf("max_vms mismatch: nomad-driver-tart has %d slots, nomad-device-tart %d; slots from slot-%d on do not exist in the driver and are unhealthy (set the same max_vms in both plugin blocks)", r.MaxVMs, cfg.MaxVMs, r.MaxVMs)
	case r.MaxVMs > cfg.MaxVMs:
		return &r, fmt.Sprintf("max_vms mismatch: nomad-driver-tart has %d slots, nomad-device-tart %d; the scheduler places at most %d VM tasks here (set the same max_vms in both plugin blocks)", r.MaxVMs, cfg.MaxVMs, cfg.MaxVMs)
	}
	return &r, ""
}

// publish writes this plugin's slot record for the driver's own check.
// It is rewritten only when it changes.
func (p *Plugin) publish(home string, cfg Config, driver *tart.SlotRecord) {
	seed := slotSeed(cfg, driver)
	if r, ok, _ := tart.ReadSlotRecord(home, "device"); ok && r.MaxVMs == cfg.MaxVMs && r.MACSeed == seed && r.PID == os.Getpid() {
		return
	}
	err := tart.WriteSlotRecord(home, tart.SlotRecord{Who: "device", MaxVMs: cfg.MaxVMs, MACSeed: seed, PID: os.Getpid(), Written: time.Now()})
	if err != nil {
		p.logger.Warn("failed to publish the device's slot record", "tart_home", home, "error", err)
	}
}
