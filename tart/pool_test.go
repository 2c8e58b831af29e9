// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/shoenig/test/must"
)

const testImage = "ghcr.io/test/macos:latest"

type eventLog struct {
	mu sync.Mutex
	ev []Event
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	l.ev = append(l.ev, e)
	l.mu.Unlock()
}

func (l *eventLog) of(t EventType) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Event
	for _, e := range l.ev {
		if e.Type == t {
			out = append(out, e)
		}
	}
	return out
}

// checkGoroutines fails the test if goroutines started during it are still
// around at cleanup (after everything else was cleaned up).
func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				t.Errorf("goroutines leaked: %d > %d\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func testPool(t *testing.T, m *memTart, max int, pools []PoolConfig) (*Pool, *eventLog) {
	t.Helper()
	slots, err := NewSlots(max, "test-host")
	must.NoError(t, err)
	ev := &eventLog{}
	p, err := NewPool(m.client(), slots, pools, PoolOptions{
		OnEvent: ev.add, ReadyInterval: time.Millisecond, BackoffMin: 20 * time.Millisecond,
		BackoffMax: 80 * time.Millisecond, StopTimeout: time.Second, BootTimeout: 10 * time.Second,
	})
	must.NoError(t, err)
	return p, ev
}

func startPool(t *testing.T, p *Pool) {
	t.Helper()
	must.NoError(t, p.Start(t.Context()))
	t.Cleanup(func() {
		must.NoError(t, p.Shutdown(context.Background()))
	})
}

func poolCfg(name string, size int) PoolConfig {
	return PoolConfig{Name: name, Size: size, VMSpec: VMSpec{Image: testImage, CPU: 4, MemoryMiB: 8192}}
}

func TestNewPool_validation(t *testing.T) {
	t.Parallel()
	m := newMemTart(t)
	slots, _ := NewSlots(2, "x")
	_, err := NewPool(m.client(), slots, []PoolConfig{
		{Name: "a/b", Size: 1, VMSpec: VMSpec{Image: "i"}},
		{Name: "ok", Size: -1},
		{Name: "ok", Size: 1, VMSpec: VMSpec{Image: "i"}},
		{Name: "net", Size: 1, VMSpec: VMSpec{Image: "i", Run: RunOptions{Network: Network{Mode: NetworkBridged}}}},
	}, PoolOptions{})
	must.ErrorContains(t, err, "pools[0].name")
	must.ErrorContains(t, err, "pools[1].image")
	must.ErrorContains(t, err, "pools[1].size")
	must.ErrorContains(t, err, `pools[2].name: duplicate pool "ok"`)
	must.ErrorContains(t, err, "pools[3].network")
	_, err = NewPool(nil, slots, nil, PoolOptions{})
	must.Error(t, err)
}

func TestPool_fillClaimRelease(t *testing.T) {
	checkGoroutines(t)
	m := newMemTart(t)
	p, ev := testPool(t, m, 2, []PoolConfig{poolCfg("mac", 2)})
	startPool(t, p)

	waitFor(t, func() bool { return p.Stats()[0].Ready == 2 })
	must.Eq(t, 2, len(m.running()))
	must.Eq(t, 0, p.Slots().Available())
	must.Eq(t, 1, m.count("pull"), must.Sprint("image pulled once, then cached"))
	must.SliceNotEmpty(t, ev.of(EventPulling))

	// Every warm VM runs with its slot's MAC.
	for _, name := range m.running() {
		mac, err := m.client().macAddress(name)
		must.NoError(t, err)
		slot, ok := p.Slots().ownerSlot(name)
		must.True(t, ok)
		must.Eq(t, slot.MAC, mac)
	}

	vm, err := p.claim(t.Context(), "task-1", VMSpec{Image: testImage})
	must.NoError(t, err)
	must.True(t, vm.Warm)
	must.Eq(t, "mac", vm.Pool)
	must.Eq(t, vm.Name, p.Slots().ownerMap()[vm.Slot.Index])
	owner, ok := p.ClaimedBy(vm.Name)
	must.True(t, ok)
	must.Eq(t, "task-1", owner)
	looked, ok := p.Lookup(vm.Name)
	must.True(t, ok)
	must.Eq(t, vm.Slot, looked.Slot)
	_, err = os.Stat(filepath.Join(m.home, "vms", vm.Name, ClaimedMarker))
	must.NoError(t, err)
	must.Len(t, 1, ev.of(EventClaimed))
	must.StrContains(t, ev.of(EventClaimed)[0].Message, "Claimed warm VM "+vm.Name+" in ")

	// Both slots are busy: the pool cannot refill until the task releases.
	must.Eq(t, 1, p.Stats()[0].Ready)
	must.NoError(t, p.Release(t.Context(), vm))
	must.SliceNotContains(t, m.names(), vm.Name)
	waitFor(t, func() bool { return p.Stats()[0].Ready == 2 })

	// A spec with other resources matches no pool.
	_, err = p.claim(t.Context(), "t", VMSpec{Image: testImage, CPU: 2})
	must.ErrorIs(t, err, errPoolEmpty)
	_, err = p.claim(t.Context(), "t", VMSpec{Image: "other"})
	must.ErrorIs(t, err, errPoolEmpty)
}

func TestPoolConfig_Fits(t *testing.T) {
	t.Parallel()
	pc := poolCfg("mac", 1)
	dirs := RunOptions{Dirs: []DirShare{{Path: "/src", ReadOnly: true}}}
	for _, tc := range []struct {
		name string
		spec VMSpec
		want string // "" fits
	}{
		{name: "same shape", spec: VMSpec{Image: testImage, CPU: 4, MemoryMiB: 8192}},
		{name: "zero resources take the pool's", spec: VMSpec{Image: testImage}},
		{name: "only a pool name", spec: VMSpec{Pool: "other"}},
		{name: "other image", spec: VMSpec{Image: "ghcr.io/test/linux:latest"}, want: "image"},
		{name: "more cpu", spec: VMSpec{Image: testImage, CPU: 8}, want: "cpu 8 is not the pool's 4"},
		{name: "less memory", spec: VMSpec{Image: testImage, MemoryMiB: 4096}, want: "memory 4096 MiB"},
		{name: "disk size", spec: VMSpec{Image: testImage, DiskSizeGB: 100}, want: "disk size 100 GB"},
		{name: "shared dirs", spec: VMSpec{Image: testImage, Run: dirs}, want: "shared directories"},
		{name: "softnet", spec: VMSpec{Image: testImage, Run: RunOptions{Network: Network{Mode: NetworkSoftnet}}}, want: "network"},
		{name: "explicit nat", spec: VMSpec{Image: testImage, Run: RunOptions{Network: Network{Mode: NetworkNAT}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := pc.Fits(tc.spec)
			if tc.want == "" {
				must.NoError(t, err)
				return
			}
			must.ErrorContains(t, err, tc.want)
		})
	}
}

func TestPool_Claim_byNameOnlyWhenTheSpecFits(t *testing.T) {
	checkGoroutines(t)
	m := newMemTart(t)
	p, _ := testPool(t, m, 2, []PoolConfig{poolCfg("mac", 1)})
	startPool(t, p)
	waitFor(t, func() bool { return p.Stats()[0].Ready == 1 })

	// A named pool whose VMs lack the task's shares or resources is no
	// match: the caller cold-starts instead of getting a VM without them.
	shares := VMSpec{Pool: "mac", Image: testImage, Run: RunOptions{Dirs: []DirShare{{Path: t.TempDir()}}}}
	_, err := p.claim(t.Context(), "t1", shares)
	must.ErrorIs(t, err, errPoolEmpty)
	must.ErrorContains(t, err, "pool mac does not fit: shared directories")
	_, err = p.claim(t.Context(), "t1", VMSpec{Pool: "mac", Image: testImage, CPU: 8})
	must.ErrorContains(t, err, "cpu 8 is not the pool's 4")
	_, err = p.claim(t.Context(), "t1", VMSpec{Pool: "nope"})
	must.ErrorIs(t, err, errPoolEmpty)
	must.ErrorContains(t, err, `pool "nope" is not configured`)
	must.Eq(t, 1, p.Stats()[0].Ready, must.Sprint("nothing claimed"))

	vm, err := p.Provision(t.Context(), TaskVMName("t2"), "t2", VMSpec{Pool: "mac", Image: testImage, CPU: 2}, nil)
	must.NoError(t, err)
	must.False(t, vm.Warm)
	must.Eq(t, "ntart-task-t2", vm.Name)
	must.NoError(t, p.Release(t.Context(), vm))

	vm, err = p.claim(t.Context(), "t3", VMSpec{Pool: "mac", Image: testImage})
	must.NoError(t, err)
	must.True(t, vm.Warm)
	must.NoError(t, p.Release(t.Context(), vm))
}

func TestPool_StartVM_preemptsWarmVM(t *testing.T) {
	checkGoroutines(t)
	m := newMemTart(t)
	p, ev := testPool(t, m, 2, []PoolConfig{poolCfg("mac", 2)})
	startPool(t, p)
	waitFor(t, func() bool { return p.Stats()[0].Ready == 2 })

	// A task that cannot use the pool's VMs needs a slot: a warm VM gives
	// its slot up.
	var taskEvents eventLog
	vm, err := p.startVM(t.Context(), TaskVMName("t1"), VMSpec{Image: testImage, CPU: 2}, taskEvents.add)
	must.NoError(t, err)
	must.False(t, vm.Warm)
	must.Len(t, 1, ev.of(EventPreempted))
	must.Len(t, 1, taskEvents.of(EventWaitingSlot))
	must.Len(t, 1, taskEvents.of(EventBooting))
	must.Len(t, 1, taskEvents.of(EventReady))
	must.Eq(t, 2, len(m.running()))
	must.Eq(t, 1, p.Stats()[0].Ready)
	mac, _ := m.client().macAddress(vm.Name)
	must.Eq(t, vm.Slot.MAC, mac)

	must.NoError(t, p.Release(t.Context(), vm))
	waitFor(t, func() bool { return p.Stats()[0].Ready == 2 })
}

func TestPool_StartVM_slotWaitTimeout(t *testing.T) {
	checkGoroutines(t)
	m := newMemTart(t)
	slots, _ := NewSlots(1, "test-host")
	p, err := NewPool(m.client(), slots, nil, PoolOptions{ReadyInterval: time.Millisecond, StopTimeout: time.Second,
		SlotWaitTimeout: 50 * time.Millisecond})
	must.NoError(t, err)
	startPool(t, p)
	busy, err := p.startVM(t.Context(), TaskVMName("busy"), VMSpec{Image: testImage}, nil)
	must.NoError(t, err)

	// No warm VM to preempt: the wait times out with ErrNoSlot although
	// the caller's context is still live, and nothing is cloned.
	var evs eventLog
	_, err = p.startVM(t.Context(), TaskVMName("late"), VMSpec{Image: testImage}, evs.add)
	must.ErrorIs(t, err, ErrNoSlot)
	must.ErrorIs(t, err, context.DeadlineExceeded)
	must.NoError(t, t.Context().Err())
	must.Len(t, 1, evs.of(EventWaitingSlot))
	must.Eq(t, []string{busy.Name}, m.names())

	// A context that ends while waiting is ErrNoSlot too (and Canceled).
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = p.Provision(ctx, TaskVMName("gone"), "gone", VMSpec{Image: testImage}, nil)
	must.ErrorIs(t, err, ErrNoSlot)
	must.ErrorIs(t, err, context.Canceled)

	// A context error after the slot was taken is not ErrNoSlot.
	must.NoError(t, p.Release(t.Context(), busy))
	m.mu.Lock()
	m.agentAfter = 1 << 30
	m.mu.Unlock()
	bctx, bcancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer bcancel()
	_, err = p.startVM(bctx, TaskVMName("slow"), VMSpec{Image: testImage}, nil)
	must.ErrorIs(t, err, context.DeadlineExceeded)
	must.False(t, errors.Is(err, ErrNoSlot), must.Sprint(err))
	must.SliceEmpty(t, m.names())
	must.Eq(t, 1, slots.Available())
}

func TestPool_Provision_coldWhenEmpty(t *testing.T) {
	checkGoroutines(t)
	m := newMemTart(t)
	p, _ := testPool(t, m, 2, nil)
	startPool(t, p)
	var evs eventLog
	vm, err := p.Provision(t.Context(), TaskVMName("a"), "a", VMSpec{Image: testImage}, evs.add)
	must.NoError(t, err)
	must.Eq(t, "ntart-task-a", vm.Name)
	must.SliceNotEmpty(t, evs.of(EventPulling))
	must.Len(t, 1, evs.of(EventPulled))
	must.NoError(t, p.Release(t.Context(), vm))
	must.SliceEmpty(t, m.names())
	must.Eq(t, 2, p.Slots().Available())
}

func TestPool_StartVM_failureCleansUp(t *testing.T) {
	checkGoroutines(t)
	m := newMemTart(t)
	m.setFail("run", "The number of VMs exceeds the system limit (other running VMs: x)")
	p, _ := testPool(t, m, 2, nil)
	startPool(t, p)
	_, err := p.startVM(t.Context(), TaskVMName("a"), VMSpec{Image: testImage}, nil)
	must.ErrorIs(t, err, ErrVMLimit)
	must.SliceEmpty(t, m.names())
	must.Eq(t, 2, p.Slots().Available())
}

func TestPool_bootFailureBacksOff(t *testing.T) {
	checkGoroutines(t)
	m := newMemTart(t)
	m.setFail("clone", "Error: disk full")
	p, ev := testPool(t, m, 1, []PoolConfig{poolCfg("mac", 1)})
	startPool(t, p)
	waitFor(t, func() bool { return len(ev.of(EventFailed)) >= 3 })
	fails := ev.of(EventFailed)
	must.StrContains(t, fails[0].Err.Error(), "disk full")
	// Exponential: each retry waits at least the doubled minimum.
	must.GreaterEq(t, 20*time.Millisecond, fails[0].RetryIn)
	must.GreaterEq(t, 40*time.Millisecond, fails[1].RetryIn)
	must.GreaterEq(t, 80*time.Millisecond, fails[2].RetryIn)
	must.Eq(t, 3, p.Stats()[0].Failures)
	must.Eq(t, 1, p.Slots().Available(), must.Sprint("failed boot frees its slot"))
	must.SliceEmpty(t, m.names())

	m.setFail("clone", "")
	waitFor(t, func() bool { return p.Stats()[0].Ready == 1 })
	must.Eq(t, 0, p.Stats()[0].Failures)
}

func TestPool_crashedWarmVMIsReplaced(t *testing.T) {
	checkGoroutines(t)
	m := newMemTart(t)
	p, ev := testPool(t, m, 1, []PoolConfig{poolCfg("mac", 1)})
	startPool(t, p)
	waitFor(t, func() bool { return p.Stats()[0].Ready == 1 })
	first := m.running()[0]
	m.crash(first)
	waitFor(t, func() bool {
		r := m.running()
		return len(r) == 1 && r[0] != first && p.Stats()[0].Ready == 1
	})
	must.SliceNotContains(t, m.names(), first)
	must.SliceNotEmpty(t, ev.of(EventFailed))
}

func TestPool_Shutdown_deletesWarmVMs(t *testing.T) {
	checkGoroutines(t)
	m := newMemTart(t)
	m.agentAfter = 1 << 30 // never ready: a boot is in flight at shutdown
	p, _ := testPool(t, m, 2, []PoolConfig{poolCfg("slow", 1), poolCfg("fast", 1)})
	must.NoError(t, p.Start(t.Context()))
	waitFor(t, func() bool { return len(m.running()) == 2 })
	must.NoError(t, p.Shutdown(context.Background()))
	must.SliceEmpty(t, m.names())
	must.Eq(t, 2, p.Slots().Available())
	_, err := p.claim(t.Context(), "x", VMSpec{Pool: "fast"})
	must.ErrorIs(t, err, ErrPoolClosed)
	must.NoError(t, p.Shutdown(context.Background()), must.Sprint("idempotent"))
}

func TestPool_Detach_leavesReadyVMsForTheNextPool(t *testing.T) {
	checkGoroutines(t)
	m := newMemTart(t)
	p, _ := testPool(t, m, 2, []PoolConfig{poolCfg("mac", 2)})
	must.NoError(t, p.Start(t.Context()))
	waitFor(t, func() bool { return p.Stats()[0].Ready == 2 })
	ready := m.running()

	must.NoError(t, p.Detach(context.Background()))
	must.Eq(t, ready, m.running(), must.Sprint("ready warm vms keep running"))
	_, err := p.claim(t.Context(), "x", VMSpec{Pool: "mac"})
	must.ErrorIs(t, err, ErrPoolClosed)
	_, err = p.startVM(t.Context(), TaskVMName("a"), VMSpec{Image: testImage}, nil)
	must.ErrorIs(t, err, ErrPoolClosed)
	must.NoError(t, p.Shutdown(context.Background()), must.Sprint("a no-op after Detach"))
	must.Eq(t, ready, m.running())
	must.Eq(t, 2, m.count("clone"))

	// The next process's pool adopts both without booting anything.
	next, ev := testPool(t, m, 2, []PoolConfig{poolCfg("mac", 2)})
	startPool(t, next)
	must.Len(t, 2, ev.of(EventAdopted))
	must.Eq(t, 2, next.Stats()[0].Ready)
	must.Eq(t, 2, m.count("clone"))
}

func TestPool_Detach_deletesBootsInProgress(t *testing.T) {
	checkGoroutines(t)
	m := newMemTart(t)
	m.agentAfter = 1 << 30 // never ready: the boot is in flight at Detach
	p, _ := testPool(t, m, 1, []PoolConfig{poolCfg("mac", 1)})
	must.NoError(t, p.Start(t.Context()))
	waitFor(t, func() bool { return len(m.running()) == 1 })
	must.NoError(t, p.Detach(context.Background()))
	must.SliceEmpty(t, m.names())
	must.Eq(t, 1, p.Slots().Available())
}

// TestPool_Shutdown_stopsBootBeforeTartRunTookTheVM cancels a boot whose
// tart run was spawned but does not hold the VM yet, so tart stop calls it
// stopped: the pool must stop the process it started, or the VM comes up
// after the delete is refused and is left running.
func TestPool_Shutdown_stopsBootBeforeTartRunTookTheVM(t *testing.T) {
	checkGoroutines(t)
	m := newMemTart(t)
	m.slowRun = true
	p, _ := testPool(t, m, 1, []PoolConfig{poolCfg("mac", 1)})
	must.NoError(t, p.Start(t.Context()))
	waitFor(t, func() bool { return m.count("run") == 1 })
	must.NoError(t, p.Shutdown(context.Background()))
	must.SliceEmpty(t, m.names())
	must.SliceEmpty(t, m.running())
	must.Eq(t, 1, p.Slots().Available())
}

func TestPool_noEventCallback(t *testing.T) {
	checkGoroutines(t)
	m := newMemTart(t)
	slots, _ := NewSlots(1, "x")
	p, err := NewPool(m.client(), slots, []PoolConfig{poolCfg("mac", 1)}, PoolOptions{ReadyInterval: time.Millisecond})
	must.NoError(t, err)
	startPool(t, p)
	waitFor(t, func() bool { return p.Stats()[0].Ready == 1 })
	vm, err := p.Provision(t.Context(), TaskVMName("a"), "a", VMSpec{Pool: "mac"}, nil)
	must.NoError(t, err)
	must.NoError(t, p.Release(t.Context(), vm))
}

func TestPool_StartVM_refusesExistingName(t *testing.T) {
	checkGoroutines(t)
	m := newMemTart(t)
	m.addVM("ntart-task-a", "", false)
	p, _ := testPool(t, m, 1, nil)
	startPool(t, p)
	_, err := p.startVM(t.Context(), "ntart-task-a", VMSpec{Image: testImage}, nil)
	must.ErrorContains(t, err, "already exists")
	must.Eq(t, 1, p.Slots().Available())
	m.mu.Lock()
	delete(m.vms, "ntart-task-a")
	m.mu.Unlock()
}

func TestPool_agentNeverReadyTimesOut(t *testing.T) {
	checkGoroutines(t)
	m := newMemTart(t)
	m.agentAfter = 1 << 30
	slots, _ := NewSlots(1, "x")
	ev := &eventLog{}
	p, err := NewPool(m.client(), slots, []PoolConfig{poolCfg("mac", 1)}, PoolOptions{OnEvent: ev.add,
		ReadyInterval: time.Millisecond, BootTimeout: 100 * time.Millisecond, BackoffMin: time.Hour, StopTimeout: time.Second})
	must.NoError(t, err)
	startPool(t, p)
	waitFor(t, func() bool { return len(ev.of(EventFailed)) == 1 })
	f := ev.of(EventFailed)[0]
	must.ErrorIs(t, f.Err, context.DeadlineExceeded)
	must.ErrorIs(t, f.Err, ErrAgentNotReady)
	must.GreaterEq(t, time.Hour, f.RetryIn)
	waitFor(t, func() bool { return len(m.names()) == 0 && slots.Available() == 1 })
	st := p.Stats()[0]
	must.Eq(t, 1, st.Failures)
	must.Eq(t, 0, st.Booting)
	must.ErrorIs(t, st.LastError, ErrAgentNotReady)
}

func TestPool_Health_quotaLeak(t *testing.T) {
	checkGoroutines(t)
	m := newMemTart(t)
	m.setFail("run", "The number of VMs exceeds the system limit")
	p, _ := testPool(t, m, 2, nil)
	startPool(t, p)
	must.NoError(t, p.Health())
	_, err := p.startVM(t.Context(), TaskVMName("a"), VMSpec{Image: testImage}, nil)
	must.ErrorIs(t, err, ErrVMLimit)
	h := p.Health()
	must.ErrorIs(t, h, ErrVMLimit)
	must.ErrorContains(t, h, "only 0 vm(s) run")

	m.setFail("run", "")
	vm, err := p.startVM(t.Context(), TaskVMName("b"), VMSpec{Image: testImage}, nil)
	must.NoError(t, err)
	must.NoError(t, p.Health())
	must.NoError(t, p.Release(t.Context(), vm))
}
