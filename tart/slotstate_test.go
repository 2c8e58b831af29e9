// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/shoenig/test/must"
)

// TestReadSlotUse_fromHostState builds a TART_HOME as the driver leaves it
// (VM directories with slot MACs and markers) and a tart list answer, and
// checks every slot use is read from them.
func TestReadSlotUse_fromHostState(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	slots, err := NewSlots(3, "host-a")
	must.NoError(t, err)
	mkVM := func(name, mac string, claimed bool) {
		dir := filepath.Join(home, "vms", name)
		must.NoError(t, os.MkdirAll(dir, 0o755))
		b, _ := json.Marshal(map[string]string{"macAddress": mac})
		must.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644))
		if claimed {
			must.NoError(t, os.WriteFile(filepath.Join(dir, ClaimedMarker), []byte("task\n"), 0o600))
		}
	}
	warm := "ntart-pool-macos-2-abcdef"
	claimed := "ntart-pool-macos-0-123456"
	task := TaskVMName("alloc/task/1")
	mkVM(warm, slots.mac(2), false)
	mkVM(claimed, slots.mac(0), true)
	mkVM(task, "aa:bb:cc:dd:ee:ff", false) // no slot MAC: unplaced
	mkVM("ntart-task-stopped", slots.mac(1), false)
	list := []map[string]any{
		{"Source": "local", "Name": warm, "State": "running"},
		{"Source": "local", "Name": claimed, "State": "running"},
		{"Source": "local", "Name": task, "State": "running"},
		{"Source": "local", "Name": "ntart-task-stopped", "State": "stopped"},
		{"Source": "local", "Name": "someone-elses", "State": "running"},
		{"Source": "OCI", "Name": "ghcr.io/x/y:1", "State": "stopped"},
	}
	out, _ := json.Marshal(list)
	r := &fakeRunner{handler: func([]string) fakeResult { return fakeResult{stdout: string(out)} }}
	c := NewClient(withRunner(r), WithHome(home))

	hs, err := ReadSlotUse(t.Context(), c, slots)
	must.NoError(t, err)
	must.Eq(t, []SlotInfo{
		{Index: 0, Use: SlotBusy, VM: claimed, Pool: "macos"},
		{Index: 1, Use: SlotFree},
		{Index: 2, Use: SlotWarm, VM: warm, Pool: "macos"},
	}, hs.Slots)
	must.Eq(t, []string{task}, hs.Unplaced)
	must.Eq(t, 1, hs.Foreign)
}

func TestSlotRecord_roundTrip(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	_, ok, err := ReadSlotRecord(home, "driver")
	must.NoError(t, err)
	must.False(t, ok)
	must.NoError(t, WriteSlotRecord(home, SlotRecord{Who: "driver", MaxVMs: 2, MACSeed: "h", PID: 7}))
	r, ok, err := ReadSlotRecord(home, "driver")
	must.NoError(t, err)
	must.True(t, ok)
	must.Eq(t, 2, r.MaxVMs)
	must.Eq(t, "h", r.MACSeed)
	must.Error(t, WriteSlotRecord(home, SlotRecord{}))
}
