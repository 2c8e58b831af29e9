// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package device

import (
	"context"
	"time"

	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
	"github.com/tartnomad/nomad-driver-tart/tart"
)

// Stats sends each slot's use every interval until ctx ends: busy (a
// task's VM), warm (an unclaimed warm-pool VM, which a placed task
// preempts) or free, with the VM's name and pool. The use is read from the
// host (tart.ReadSlotUse), the same state the driver keeps; when tart
// cannot be read, every slot says "unknown" rather than ending the stream.
// The goroutine is owned by ctx.
func (p *Plugin) Stats(ctx context.Context, interval time.Duration) (<-chan *sdk.DeviceStatsBatch, error) {
	ch := make(chan *sdk.DeviceStatsBatch, 1)
	go func() {
		defer close(ch)
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		for {
			select {
			case ch <- p.stats(ctx):
			case <-ctx.Done():
				return
			}
			select {
			case <-ticker.C:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, nil
}

// stats reads the slot use once.
func (p *Plugin) stats(ctx context.Context) *sdk.DeviceStatsBatch {
	cfg := p.currentConfig()
	c := client(cfg)
	var driver *tart.SlotRecord
	if r, ok, _ := tart.ReadSlotRecord(c.Home(), "driver"); ok {
		driver = &r
	}
	now := time.Now()
	g := &sdk.DeviceGroupStats{Vendor: Vendor, Type: Type, Name: Name, Instances: map[string]*sdk.DeviceStats{}}
	hs, err := p.readSlots(ctx, cfg, c, driver)
	for i := range cfg.MaxVMs {
		st := &sdk.DeviceStats{Timestamp: now, Stats: map[string]sdk.StatValue{}}
		switch {
		case err != nil:
			st.Summary = sdk.StringStat("unknown", "slot use could not be read: "+firstLine(err.Error()))
		default:
			s := hs.Slots[i]
			st.Summary = sdk.StringStat(string(s.Use), "slot use: busy (task VM), warm (idle warm-pool VM) or free")
			if s.VM != "" {
				st.Stats["vm"] = sdk.StringStat(s.VM, "VM in the slot")
			}
			if s.Pool != "" {
				st.Stats["pool"] = sdk.StringStat(s.Pool, "warm pool of the VM")
			}
		}
		g.Instances[SlotID(i)] = st
	}
	return &sdk.DeviceStatsBatch{Groups: []*sdk.DeviceGroupStats{g}}
}

// readSlots reads the host's slot use with the slots' MACs.
func (p *Plugin) readSlots(ctx context.Context, cfg Config, c *tart.Client, driver *tart.SlotRecord) (tart.HostSlots, error) {
	slots, err := tart.NewSlots(cfg.MaxVMs, slotSeed(cfg, driver))
	if err != nil {
		return tart.HostSlots{}, err
	}
	rctx, cancel := context.WithTimeout(ctx, cfg.TartTimeout)
	defer cancel()
	return tart.ReadSlotUse(rctx, c, slots)
}
