// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/shoenig/test/must"
)

// resumePool starts a pool of one ModeResume pool ("mac", size warm VMs)
// in max slots on faketart with the given knobs.
func resumePool(t *testing.T, max, size int, knobs ...string) (*ftEnv, *Pool, *eventLog) {
	t.Helper()
	e := newFT(t, knobs...)
	c := e.client()
	slots, err := NewSlots(max, "resume-host")
	must.NoError(t, err)
	ev := &eventLog{}
	p, err := NewPool(c, slots, []PoolConfig{{Name: "mac", Size: size, Mode: ModeResume,
		ResumeCommand: []string{"sh", "-c", "echo synced > clock-synced"}, VMSpec: VMSpec{Image: ftImage}}},
		PoolOptions{OnEvent: ev.add, ReadyInterval: 20 * time.Millisecond, StopTimeout: 5 * time.Second,
			BackoffMin: 50 * time.Millisecond, BootTimeout: 30 * time.Second})
	must.NoError(t, err)
	must.NoError(t, p.Start(t.Context()))
	t.Cleanup(func() { must.NoError(t, p.Shutdown(context.Background())) })
	return e, p, ev
}

func vmState(t *testing.T, c *Client, name string) string {
	t.Helper()
	d, err := c.Get(t.Context(), name)
	must.NoError(t, err)
	return d.State
}

// TestIntegration_Pool_resumeFromTemplates: a resume pool builds one
// suspended template per slot with that slot's MAC; a start clones the
// slot's template and resumes it (not a boot: the boot delay is far longer
// than the wait), runs the resume command, and the template stays
// suspended for the next start. Templates hold no slot.
func TestIntegration_Pool_resumeFromTemplates(t *testing.T) {
	e, p, ev := resumePool(t, 2, 0, "FAKETART_BOOT_DELAY=300ms", "FAKETART_RESUME_DELAY=20ms")
	c := e.client()
	waitFor(t, func() bool { return p.Stats()[0].TemplatesReady == 2 })
	must.Eq(t, 2, p.Slots().Available())
	must.Eq(t, ModeResume, p.Stats()[0].Mode)

	vm, err := p.Provision(t.Context(), TaskVMName("r1"), "task-r1", VMSpec{Image: ftImage}, nil)
	must.NoError(t, err)
	must.Eq(t, PathResumed, vm.Path)
	must.Eq(t, "mac", vm.Pool)
	must.Eq(t, StateRunning, vmState(t, c, vm.Name))
	mac, err := c.macAddress(vm.Name)
	must.NoError(t, err)
	must.Eq(t, p.Slots().mac(vm.Slot.Index), mac)
	code, err := c.Exec(t.Context(), vm.Name, []string{"cat", "clock-synced"}, ExecOptions{})
	must.NoError(t, err)
	must.Eq(t, 0, code, must.Sprint("the resume command ran in the guest before the hand-over"))
	must.Len(t, 1, ev.of(EventResumed))
	must.StrContains(t, ev.of(EventResumed)[0].Message, "path resumed")

	// Both templates are still suspended; a second start resumes in the
	// other slot.
	vm2, err := p.Provision(t.Context(), TaskVMName("r2"), "task-r2", VMSpec{Image: ftImage}, nil)
	must.NoError(t, err)
	must.Eq(t, PathResumed, vm2.Path)
	must.NotEq(t, vm.Slot.Index, vm2.Slot.Index)
	must.Eq(t, 2, p.Stats()[0].TemplatesReady)
	must.NoError(t, p.Release(t.Context(), vm))
	must.NoError(t, p.Release(t.Context(), vm2))
	vms, err := c.List(t.Context())
	must.NoError(t, err)
	templates := 0
	for _, v := range vms {
		if n, _ := ParseVMName(v.Name); n.Kind == KindTemplate {
			templates++
			must.Eq(t, StateSuspended, v.State)
		}
	}
	must.Eq(t, 2, templates)
}

// TestIntegration_Pool_resumeFailureColdBootsAndRebuilds: a refused
// restore makes that start cold-boot (its events say why) and the
// template is rebuilt in the background.
func TestIntegration_Pool_resumeFailureColdBootsAndRebuilds(t *testing.T) {
	_, p, ev := resumePool(t, 1, 0, "FAKETART_FAIL_RESUME=first:1")
	waitFor(t, func() bool { return p.Stats()[0].TemplatesReady == 1 })
	vm, err := p.Provision(t.Context(), TaskVMName("f1"), "task-f1", VMSpec{Image: ftImage}, nil)
	must.NoError(t, err)
	must.Eq(t, PathCold, vm.Path)
	must.Len(t, 1, ev.of(EventResumeFail))
	cold := ev.of(EventColdStart)
	must.Len(t, 1, cold)
	must.StrContains(t, cold[0].Message, "failed")
	must.StrContains(t, cold[0].Message, "rebuilt in the background")
	must.NoError(t, p.Release(t.Context(), vm))
	// Rebuilt once the slot is free; the next start resumes.
	waitFor(t, func() bool { return p.Stats()[0].TemplatesReady == 1 })
	vm, err = p.Provision(t.Context(), TaskVMName("f2"), "task-f2", VMSpec{Image: ftImage}, nil)
	must.NoError(t, err)
	must.Eq(t, PathResumed, vm.Path)
	must.NoError(t, p.Release(t.Context(), vm))
}

// TestIntegration_Pool_templatesRebuiltAfterConfigOrTartChange: a
// restarted pool adopts templates built for its config and tart version
// and deletes (then rebuilds) the others.
func TestIntegration_Pool_templatesRebuiltAfterConfigOrTartChange(t *testing.T) {
	e := newFT(t)
	slots, err := NewSlots(1, "restart-host")
	must.NoError(t, err)
	start := func(cpu int, version string) (*Pool, *eventLog) {
		ev := &eventLog{}
		c := NewClient(WithBinary(e.bin), WithHome(e.home), WithEnv(append(e.env, "FAKETART_VERSION="+version)...))
		s, err := NewSlots(1, "restart-host")
		must.NoError(t, err)
		p, err := NewPool(c, s, []PoolConfig{{Name: "mac", Mode: ModeResume, VMSpec: VMSpec{Image: ftImage, CPU: cpu}}},
			PoolOptions{OnEvent: ev.add, ReadyInterval: 20 * time.Millisecond, StopTimeout: 5 * time.Second, BackoffMin: 50 * time.Millisecond})
		must.NoError(t, err)
		must.NoError(t, p.Start(t.Context()))
		waitFor(t, func() bool { return p.Stats()[0].TemplatesReady == 1 })
		return p, ev
	}
	_ = slots
	p, _ := start(4, "2.32.1")
	must.NoError(t, p.Detach(t.Context()))
	// Same config and version: adopted, nothing built.
	p, ev := start(4, "2.32.1")
	must.Len(t, 0, ev.of(EventBooting))
	must.NoError(t, p.Detach(t.Context()))
	for _, tc := range []struct {
		name    string
		cpu     int
		version string
		reason  string
	}{
		{"shape", 2, "2.32.1", "cpu"},
		{"tart_version", 2, "2.33.0", "tart 2.32.1"},
	} {
		p, ev = start(tc.cpu, tc.version)
		var deleted []string
		for _, x := range ev.of(EventTemplate) {
			if strings.HasPrefix(x.Message, "Deleted template") {
				deleted = append(deleted, x.Message)
			}
		}
		must.Len(t, 1, deleted, must.Sprint(tc.name))
		must.StrContains(t, deleted[0], tc.reason)
		must.NoError(t, p.Detach(t.Context()))
	}
	// Shutdown deletes the templates (newFT's cleanup checks nothing is
	// left).
	p, _ = start(2, "2.33.0")
	must.NoError(t, p.Shutdown(t.Context()))
}

// TestIntegration_Pool_provisionWaitsForSoonerBootingWarmVM: with the
// pool's refill VM booting and a free slot, a start takes the refill VM
// (expected ready sooner than a cold boot started now) instead of booting
// another VM; its events say so.
func TestIntegration_Pool_provisionWaitsForSoonerBootingWarmVM(t *testing.T) {
	e := newFT(t, "FAKETART_BOOT_DELAY=2s")
	slots, err := NewSlots(2, "soon-host")
	must.NoError(t, err)
	ev := &eventLog{}
	p, err := NewPool(e.client(), slots, []PoolConfig{{Name: "mac", Size: 1, VMSpec: VMSpec{Image: ftImage}}},
		PoolOptions{OnEvent: ev.add, ReadyInterval: 20 * time.Millisecond, StopTimeout: 5 * time.Second, ExpectedBoot: 2 * time.Second})
	must.NoError(t, err)
	must.NoError(t, p.Start(t.Context()))
	t.Cleanup(func() { must.NoError(t, p.Shutdown(context.Background())) })
	waitFor(t, func() bool { return p.Stats()[0].Booting == 1 })
	vm, err := p.Provision(t.Context(), TaskVMName("s1"), "task-s1", VMSpec{Image: ftImage}, nil)
	must.NoError(t, err)
	must.Eq(t, PathWarm, vm.Path)
	must.StrHasPrefix(t, "ntart-pool-mac-", vm.Name)
	must.Len(t, 1, ev.of(EventWaitingWarm))
	must.StrContains(t, ev.of(EventWaitingWarm)[0].Message, "expected ready in")
	must.Len(t, 0, ev.of(EventColdStart))
	claimed := ev.of(EventClaimed)
	must.Len(t, 1, claimed)
	must.StrContains(t, claimed[0].Message, "waited for its boot")
	must.NoError(t, p.Release(t.Context(), vm))
}

// soonPool is a boot-mode pool of one warm VM in max slots, started.
func soonPool(t *testing.T, max int, opts PoolOptions, knobs ...string) (*Pool, *eventLog) {
	t.Helper()
	e := newFT(t, knobs...)
	slots, err := NewSlots(max, "soon-host")
	must.NoError(t, err)
	ev := &eventLog{}
	opts.OnEvent, opts.ReadyInterval, opts.StopTimeout = ev.add, 20*time.Millisecond, 5*time.Second
	if opts.BackoffMin == 0 {
		opts.BackoffMin = time.Minute // a failed refill is not retried during the test
	}
	p, err := NewPool(e.client(), slots, []PoolConfig{{Name: "mac", Size: 1, VMSpec: VMSpec{Image: ftImage}}}, opts)
	must.NoError(t, err)
	must.NoError(t, p.Start(t.Context()))
	t.Cleanup(func() { must.NoError(t, p.Shutdown(context.Background())) })
	return p, ev
}

// TestIntegration_Pool_provisionWaitingForBootEnds covers the ways a wait
// for a booting warm VM ends without it: the caller gives up (the VM then
// joins the pool when ready) and the boot fails (the caller cold-starts).
func TestIntegration_Pool_provisionWaitingForBootEnds(t *testing.T) {
	t.Run("caller_gives_up", func(t *testing.T) {
		p, _ := soonPool(t, 2, PoolOptions{ExpectedBoot: 2 * time.Second}, "FAKETART_BOOT_DELAY=2s")
		waitFor(t, func() bool { return p.Stats()[0].Booting == 1 })
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		_, err := p.Provision(ctx, TaskVMName("g1"), "task-g1", VMSpec{Image: ftImage}, nil)
		must.ErrorIs(t, err, context.DeadlineExceeded)
		waitFor(t, func() bool { return p.Stats()[0].Ready == 1 })
		must.Eq(t, 1, p.Slots().Available(), must.Sprint("no VM but the warm one holds a slot"))
	})
	t.Run("boot_fails", func(t *testing.T) {
		// The warm boot's tart run fails a second after its spawn, so the
		// Provision below has reserved it by then.
		p, ev := soonPool(t, 2, PoolOptions{ExpectedBoot: 2 * time.Second}, "FAKETART_BOOT_DELAY=100ms",
			"FAKETART_RUN_START_DELAY=1s", "FAKETART_FAIL_RUN=first:1")
		waitFor(t, func() bool { return p.Stats()[0].Booting == 1 })
		vm, err := p.Provision(t.Context(), TaskVMName("b1"), "task-b1", VMSpec{Image: ftImage}, nil)
		must.NoError(t, err)
		must.Eq(t, PathCold, vm.Path)
		must.Len(t, 2, ev.of(EventWaitingWarm))
		must.StrContains(t, ev.of(EventWaitingWarm)[1].Message, "did not finish booting")
		must.NoError(t, p.Release(t.Context(), vm))
	})
}

// TestIntegration_Pool_reservedBootIsNotPreempted: a cold start waiting for
// the only slot does not cancel a warm boot that a Provision is waiting
// for; that Provision gets the VM.
func TestIntegration_Pool_reservedBootIsNotPreempted(t *testing.T) {
	p, ev := soonPool(t, 1, PoolOptions{ExpectedBoot: 3 * time.Second}, "FAKETART_BOOT_DELAY=3s")
	waitFor(t, func() bool { return p.Stats()[0].Booting == 1 })
	got := make(chan *VM, 1)
	go func() {
		vm, err := p.Provision(t.Context(), TaskVMName("w1"), "task-w1", VMSpec{Image: ftImage}, nil)
		if err != nil {
			t.Errorf("provision: %v", err)
		}
		got <- vm
	}()
	waitFor(t, func() bool { return len(ev.of(EventWaitingWarm)) == 1 })
	// A cold start of another shape needs the only slot.
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err := p.startVM(ctx, TaskVMName("c1"), VMSpec{Image: ftImage, CPU: 2}, nil)
	must.ErrorIs(t, err, ErrNoSlot)
	vm := <-got
	must.NotNil(t, vm)
	must.Eq(t, PathWarm, vm.Path)
	must.Len(t, 0, ev.of(EventPreempted))
	must.NoError(t, p.Release(t.Context(), vm))
}

// TestIntegration_Pool_waitingTaskCancelsTemplateBuild: a start that finds
// every slot taken by template builds cancels one, takes its slot and
// cold-boots (no template for it yet); the template is built afterwards.
func TestIntegration_Pool_waitingTaskCancelsTemplateBuild(t *testing.T) {
	_, p, ev := resumePool(t, 1, 0, "FAKETART_BOOT_DELAY=2s")
	waitFor(t, func() bool { return p.Stats()[0].TemplatesBuilding == 1 })
	vm, err := p.Provision(t.Context(), TaskVMName("p1"), "task-p1", VMSpec{Image: ftImage}, nil)
	must.NoError(t, err)
	must.Eq(t, PathCold, vm.Path)
	cold := ev.of(EventColdStart)
	must.Len(t, 1, cold)
	must.StrContains(t, cold[0].Message, "no template ready for slot 0")
	must.NoError(t, p.Release(t.Context(), vm))
	waitFor(t, func() bool { return p.Stats()[0].TemplatesReady == 1 })
}

// TestIntegration_Pool_templateBuildFailureBacksOff: a failed template
// build is reported and retried after the backoff.
func TestIntegration_Pool_templateBuildFailureBacksOff(t *testing.T) {
	_, p, ev := resumePool(t, 1, 0, "FAKETART_FAIL_RUN=first:1")
	waitFor(t, func() bool { return p.Stats()[0].TemplatesReady == 1 })
	failed := ev.of(EventFailed)
	must.Len(t, 1, failed)
	must.StrContains(t, failed[0].Message, "Failed to build template (retrying in")
}

// TestIntegration_Pool_startPrefersSlotWithTemplate: with slot 0 free
// but without a template (its rebuild backing off after a failure) and
// slot 1 free with one, a start takes slot 1 and resumes instead of
// booting in the first free slot.
func TestIntegration_Pool_startPrefersSlotWithTemplate(t *testing.T) {
	e, p, _ := resumePool(t, 2, 0)
	waitFor(t, func() bool { return p.Stats()[0].TemplatesReady == 2 })
	p.mu.Lock()
	ps := p.pools["mac"]
	gone := ps.tmpl.slots[0].name
	ps.tmpl.retryAt = time.Now().Add(time.Hour) // as after a failed build
	p.mu.Unlock()
	p.templateFailed(ps, 0, gone)
	waitFor(t, func() bool {
		_, err := e.client().Get(t.Context(), gone)
		return err != nil
	})
	must.Eq(t, 2, p.Slots().Available())
	vm, err := p.Provision(t.Context(), TaskVMName("pref"), "task-pref", VMSpec{Image: ftImage}, nil)
	must.NoError(t, err)
	must.Eq(t, PathResumed, vm.Path)
	must.Eq(t, 1, vm.Slot.Index)
	must.NoError(t, p.Release(t.Context(), vm))
}
