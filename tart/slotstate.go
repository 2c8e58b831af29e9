// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/tartnomad/nomad-driver-tart/internal/atomicfile"
)

// SlotUse is what a VM slot is used for at one moment.
type SlotUse string

// Slot uses, as read from the host by ReadSlotUse.
const (
	// SlotFree holds no VM of ours.
	SlotFree SlotUse = "free"
	// SlotWarm holds an unclaimed warm-pool VM (booting or ready): a task
	// that needs the slot preempts it.
	SlotWarm SlotUse = "warm"
	// SlotBusy holds a task's VM (cold-started or a claimed warm VM).
	SlotBusy SlotUse = "busy"
)

// SlotInfo is the use of one slot and the VM in it.
type SlotInfo struct {
	Index int
	Use   SlotUse
	VM    string // "" when free
	Pool  string // the warm pool of a pool VM
}

// HostSlots is what ReadSlotUse found: one SlotInfo per slot index and the
// running VMs of ours whose slot could not be told (no slot MAC, or an
// index beyond the slots: another process with a larger max_vms).
type HostSlots struct {
	Slots    []SlotInfo
	Unplaced []string
	// Foreign counts running VMs in TART_HOME not named by our convention:
	// they count against Apple's VM limit but hold none of our slots.
	Foreign int
}

// ReadSlotUse reads the slot use of a host from the state every process
// on it shares: the running VMs in TART_HOME (tart list), each one's MAC
// address (the slot's, derived from slots' seed) or, for a pool VM, the
// slot in its name, and the ClaimedMarker of claimed warm VMs. It keeps no
// bookkeeping of its own, so it agrees with the process that owns the
// slots (the driver) as far as the host shows it. A VM that is cloned but
// not yet running is not seen.
func ReadSlotUse(ctx context.Context, c *Client, slots *Slots) (HostSlots, error) {
	vms, err := c.List(ctx)
	if err != nil {
		return HostSlots{}, fmt.Errorf("read slot use: %w", err)
	}
	hs := HostSlots{Slots: make([]SlotInfo, slots.Max())}
	for i := range hs.Slots {
		hs.Slots[i] = SlotInfo{Index: i, Use: SlotFree}
	}
	for _, v := range vms {
		if !v.IsLocal() || !v.IsRunning() {
			continue
		}
		n, ours := ParseVMName(v.Name)
		if !ours {
			hs.Foreign++
			continue
		}
		idx, ok := -1, false
		if mac, err := c.macAddress(v.Name); err == nil {
			idx, ok = slots.slotForMAC(mac)
		}
		if !ok && n.Kind == KindPool && n.Slot < slots.Max() {
			idx, ok = n.Slot, true
		}
		if !ok || hs.Slots[idx].Use != SlotFree {
			hs.Unplaced = append(hs.Unplaced, v.Name)
			continue
		}
		use := SlotBusy
		if n.Kind == KindPool {
			if _, err := os.Stat(filepath.Join(c.VMDir(v.Name), ClaimedMarker)); errors.Is(err, fs.ErrNotExist) {
				use = SlotWarm
			}
		}
		hs.Slots[idx] = SlotInfo{Index: idx, Use: use, VM: v.Name, Pool: n.Pool}
	}
	return hs, nil
}

// SlotRecord is what a process that works with a host's VM slots
// publishes about its view of them in TART_HOME, so that the other one
// (the task driver and the slot device plugin) can check they agree.
type SlotRecord struct {
	// Who wrote it: "driver" or "device".
	Who     string `json:"who"`
	MaxVMs  int    `json:"max_vms"`
	MACSeed string `json:"mac_seed"`
	PID     int    `json:"pid"`
	// Written is when the record was last written.
	Written time.Time `json:"written"`
}

// slotRecordFile is the record of who in TART_HOME.
func slotRecordFile(home, who string) string {
	return filepath.Join(home, "ntart-slots."+who+".json")
}

// WriteSlotRecord replaces the record of r.Who in TART_HOME home.
func WriteSlotRecord(home string, r SlotRecord) error {
	if r.Who == "" {
		return errors.New("write slot record: who is empty")
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode slot record: %w", err)
	}
	if err := os.MkdirAll(home, 0o755); err != nil {
		return fmt.Errorf("write slot record: %w", err)
	}
	if err := atomicfile.Write(slotRecordFile(home, r.Who), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write slot record: %w", err)
	}
	return nil
}

// ReadSlotRecord reads the record of who in TART_HOME home; ok is false
// when there is none (that process never ran on this TART_HOME).
func ReadSlotRecord(home, who string) (r SlotRecord, ok bool, err error) {
	b, err := os.ReadFile(slotRecordFile(home, who))
	if errors.Is(err, fs.ErrNotExist) {
		return SlotRecord{}, false, nil
	}
	if err != nil {
		return SlotRecord{}, false, fmt.Errorf("read slot record: %w", err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return SlotRecord{}, false, fmt.Errorf("decode slot record %s: %w", slotRecordFile(home, who), err)
	}
	return r, true, nil
}
