// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoenig/test/must"
)

func TestPool_Start_adoptsAndCleansUp(t *testing.T) {
	checkGoroutines(t)
	m := newMemTart(t)
	slots, _ := NewSlots(3, "test-host")
	m.images[testImage] = true
	warm := "ntart-pool-mac-0-aaaaaa"
	m.addVM(warm, slots.mac(0), true)
	m.markBuiltFor(warm, poolCfg("mac", 1))
	m.addVM("ntart-pool-mac-1-bbbbbb", slots.mac(1), false) // stopped: deleted
	m.addVM("ntart-pool-gone-2-cccccc", slots.mac(2), true) // unknown pool: deleted
	task := TaskVMName("t1")
	m.addVM(task, slots.mac(1), true) // a task VM: keeps slot 1
	claimed := "ntart-pool-mac-2-dddddd"
	m.addVM(claimed, slots.mac(2), true) // claimed by a task: keeps slot 2
	must.NoError(t, os.WriteFile(filepath.Join(m.home, "vms", claimed, ClaimedMarker), []byte("x"), 0o600))
	m.addVM("my-own-vm", "", true)             // not ours: untouched
	m.addVM("ntart-pool-mac-stray", "", false) // not our convention: untouched

	ev := &eventLog{}
	p, err := NewPool(m.client(), slots, []PoolConfig{poolCfg("mac", 1)}, PoolOptions{OnEvent: ev.add, ReadyInterval: time.Millisecond, StopTimeout: time.Second})
	must.NoError(t, err)
	startPool(t, p)

	must.Eq(t, []string{"my-own-vm", "ntart-pool-mac-0-aaaaaa", claimed, "ntart-pool-mac-stray", task}, m.names())
	must.Eq(t, map[int]string{0: warm, 1: task, 2: claimed}, slots.ownerMap())
	must.Len(t, 1, ev.of(EventAdopted))
	must.Eq(t, 1, p.Stats()[0].Ready)
	vm, ok := p.Lookup(task)
	must.True(t, ok)
	must.Eq(t, 1, vm.Slot.Index)

	got, err := p.claim(t.Context(), "x", VMSpec{Pool: "mac"})
	must.NoError(t, err)
	must.Eq(t, warm, got.Name)
	must.NoError(t, p.Release(t.Context(), got))
	must.NoError(t, p.Release(t.Context(), vm))
	must.NoError(t, p.Shutdown(context.Background()))
	// Shutdown leaves the claimed VM (a task's) and foreign VMs alone.
	must.Eq(t, []string{"my-own-vm", claimed, "ntart-pool-mac-stray"}, m.names())
	m.mu.Lock()
	m.vms["my-own-vm"].running = false
	m.vms[claimed].running = false
	m.mu.Unlock()
}

// setAgent makes a memTart VM's agent answer (or not).
func (m *memTart) setAgent(name string, answers bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if answers {
		m.vms[name].execs = 1 << 20
	} else {
		m.vms[name].execs = -1 << 30
	}
}

func TestPool_Start_leavesYoungUnreadyWarmVMAlone(t *testing.T) {
	checkGoroutines(t)
	m := newMemTart(t)
	slots, _ := NewSlots(2, "test-host")
	m.images[testImage] = true
	booting := "ntart-pool-mac-0-aaaaaa" // another process is booting it
	m.addVM(booting, slots.mac(0), true)
	m.markBuiltFor(booting, poolCfg("mac", 1))
	m.setAgent(booting, false)
	old := "ntart-pool-mac-1-bbbbbb" // its booter gave up long ago
	m.addVM(old, slots.mac(1), true)
	m.setAgent(old, false)
	longAgo := time.Now().Add(-time.Hour)
	must.NoError(t, os.Chtimes(filepath.Join(m.home, "vms", old), longAgo, longAgo))
	stopped := "ntart-pool-mac-1-cccccc" // young, but stopped: no one boots it
	m.addVM(stopped, slots.mac(1), false)

	ev := &eventLog{}
	p, err := NewPool(m.client(), slots, []PoolConfig{poolCfg("mac", 1)}, PoolOptions{OnEvent: ev.add,
		ReadyInterval: time.Millisecond, StopTimeout: time.Second, AdoptGracePeriod: time.Minute})
	must.NoError(t, err)
	startPool(t, p)

	must.Eq(t, []string{booting}, m.names())
	must.Eq(t, map[int]string{0: booting}, slots.ownerMap(), must.Sprint("it keeps its slot"))
	must.Eq(t, PoolStats{Name: "mac", Size: 1, Booting: 1, Mode: ModeBoot}, p.Stats()[0])
	// Rechecked while it boots, and counted: no replacement is booted.
	execs := m.count("exec")
	waitFor(t, func() bool { return m.count("exec") > execs+5 })
	must.Eq(t, 0, m.count("clone"))
	must.SliceEmpty(t, ev.of(EventAdopted))

	m.setAgent(booting, true)
	waitFor(t, func() bool { return p.Stats()[0].Ready == 1 })
	must.Len(t, 1, ev.of(EventAdopted))
	must.Eq(t, 0, p.Stats()[0].Booting)
	vm, err := p.claim(t.Context(), "t", VMSpec{Pool: "mac"})
	must.NoError(t, err)
	must.Eq(t, booting, vm.Name)
	must.NoError(t, p.Release(t.Context(), vm))
}

func TestPool_Start_deletesWarmVMLeftAloneAfterGrace(t *testing.T) {
	checkGoroutines(t)
	m := newMemTart(t)
	slots, _ := NewSlots(1, "test-host")
	m.images[testImage] = true
	stuck := "ntart-pool-mac-0-aaaaaa"
	m.addVM(stuck, slots.mac(0), true)
	m.setAgent(stuck, false)

	ev := &eventLog{}
	p, err := NewPool(m.client(), slots, []PoolConfig{poolCfg("mac", 1)}, PoolOptions{OnEvent: ev.add,
		ReadyInterval: time.Millisecond, StopTimeout: time.Second, AdoptGracePeriod: 300 * time.Millisecond})
	must.NoError(t, err)
	startPool(t, p)
	must.Eq(t, []string{stuck}, m.names())

	// Past the grace period it is deleted, and the pool boots its own.
	waitFor(t, func() bool { return p.Stats()[0].Ready == 1 })
	must.SliceNotContains(t, m.names(), stuck)
	must.Len(t, 1, m.names())
	must.SliceNotEmpty(t, ev.of(EventDeleted))
	must.SliceEmpty(t, ev.of(EventAdopted))
}

func TestPool_Start_warmVMLeftAloneGoneOrClaimed(t *testing.T) {
	checkGoroutines(t)
	m := newMemTart(t)
	slots, _ := NewSlots(2, "test-host")
	m.images[testImage] = true
	gone, claimed := "ntart-pool-mac-0-aaaaaa", "ntart-pool-mac-1-bbbbbb"
	for i, n := range []string{gone, claimed} {
		m.addVM(n, slots.mac(i), true)
		m.setAgent(n, false)
	}
	p, err := NewPool(m.client(), slots, []PoolConfig{poolCfg("mac", 2)}, PoolOptions{
		ReadyInterval: time.Millisecond, StopTimeout: time.Second, AdoptGracePeriod: time.Minute})
	must.NoError(t, err)
	startPool(t, p)
	must.Eq(t, 2, p.Stats()[0].Booting)

	// Its booter gave up (deleted it), and claimed the other for a task:
	// the first frees its slot for the pool, the second keeps it as a
	// task's VM and is not adopted.
	must.NoError(t, os.WriteFile(filepath.Join(m.home, "vms", claimed, ClaimedMarker), []byte("task\n"), 0o600))
	m.crash(gone)
	must.NoError(t, m.client().Delete(t.Context(), gone))
	waitFor(t, func() bool { st := p.Stats()[0]; return st.Ready == 1 && st.Booting == 0 })
	owners := slots.ownerMap()
	must.Eq(t, claimed, owners[1])
	must.NotEq(t, gone, owners[0])
	must.Eq(t, 1, m.count("clone"))
	m.crash(claimed)
	must.NoError(t, m.client().Delete(t.Context(), claimed))
}
