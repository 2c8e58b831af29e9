// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// StartPath says how a VM handed out by a Pool came to be running.
type StartPath string

// Start paths, as task events, attributes and metrics name them.
const (
	// PathWarm: a warm VM of a pool, ready or waited for while it booted.
	PathWarm StartPath = "warm"
	// PathResumed: a clone of the slot's suspended template, resumed.
	PathResumed StartPath = "resumed"
	// PathCold: cloned from the image and booted for the caller.
	PathCold StartPath = "cold"
)

// estimates are a pool's expected boot and resume times: the options'
// first guesses, then a moving average of what was measured. p.mu held.
type estimates struct {
	boot, resume time.Duration
}

// observe folds a measured duration into est (weight 1/2: recent runs
// count most, one outlier does not decide alone).
func observe(est *time.Duration, d time.Duration) {
	*est = (*est + d) / 2
}

// findPool returns the pool for spec, or an error saying why none fits;
// p.mu held.
func (p *Pool) findPool(spec VMSpec) (*poolState, error) {
	if spec.Pool != "" {
		ps := p.pools[spec.Pool]
		if ps == nil {
			return nil, fmt.Errorf("pool %q is not configured", spec.Pool)
		}
		if err := ps.cfg.Fits(spec); err != nil {
			return nil, fmt.Errorf("pool %s does not fit: %w", spec.Pool, err)
		}
		return ps, nil
	}
	for _, name := range p.order {
		if p.pools[name].cfg.Fits(spec) == nil {
			return p.pools[name], nil
		}
	}
	return nil, fmt.Errorf("no pool matches image %q", spec.Image)
}

// Fits returns nil when a warm VM of this pool can serve spec, else an
// error naming the first difference. The image must be the same reference
// (when spec names one), each non-zero resource of spec must equal the
// pool's, and the boot-time run options (shared dirs, network) must be
// identical, because tart fixes them when the VM boots. spec.Pool is not
// looked at.
func (c PoolConfig) Fits(spec VMSpec) error {
	switch {
	case spec.Image != "" && spec.Image != c.Image:
		return fmt.Errorf("image %q is not the pool's %q", spec.Image, c.Image)
	case spec.CPU != 0 && spec.CPU != c.CPU:
		return fmt.Errorf("cpu %d is not the pool's %d", spec.CPU, c.CPU)
	case spec.MemoryMiB != 0 && spec.MemoryMiB != c.MemoryMiB:
		return fmt.Errorf("memory %d MiB is not the pool's %d", spec.MemoryMiB, c.MemoryMiB)
	case spec.DiskSizeGB != 0 && spec.DiskSizeGB != c.DiskSizeGB:
		return fmt.Errorf("disk size %d GB is not the pool's %d", spec.DiskSizeGB, c.DiskSizeGB)
	}
	want, err := spec.Run.Args("x")
	if err != nil {
		return fmt.Errorf("run options: %w", err)
	}
	if have, _ := c.Run.Args("x"); !slices.Equal(have, want) {
		if !slices.Equal(spec.Run.Dirs, c.Run.Dirs) {
			return errors.New("shared directories are fixed at boot and differ from the pool's")
		}
		return errors.New("network and other run options are fixed at boot and differ from the pool's")
	}
	return nil
}

// ProvisionOptions are the caller's hooks into Provision.
type ProvisionOptions struct {
	// OnEvent receives the provisioning's events (the pool's OnEvent gets
	// them too).
	OnEvent EventFunc
	// BeforeColdStart runs before a VM is booted from the image (a cold
	// start, also after a failed resume), e.g. to apply a pull policy; its
	// error ends the provisioning.
	BeforeColdStart func(ctx context.Context) error
	// SlotWait, when positive, bounds the wait for a slot instead of
	// PoolOptions.SlotWaitTimeout: a caller that knows a slot is due to
	// it (a scheduler reservation) waits only for a preempted warm VM to
	// give its slot up.
	SlotWait time.Duration
}

// claim hands out a ready warm VM matching spec in O(1), or errPoolEmpty.
// The VM's directory gets the ClaimedMarker holding owner (a task or runner
// name, for humans and ClaimedBy); the slot stays registered under the VM
// name, as for every VM. The pool starts booting a replacement when a slot
// is free. The caller owns the VM and must Release it.
func (p *Pool) claim(ctx context.Context, owner string, spec VMSpec) (*VM, error) {
	start := time.Now()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrPoolClosed
	}
	ps, err := p.findPool(spec)
	if err != nil {
		p.mu.Unlock()
		return nil, fmt.Errorf("claim warm vm: %w: %w", err, errPoolEmpty)
	}
	w := p.takeReadyLocked(ps)
	p.mu.Unlock()
	if w == nil {
		p.kickPool(ps)
		return nil, fmt.Errorf("claim warm vm from pool %s: %w", ps.cfg.Name, errPoolEmpty)
	}
	return p.finishClaim(ps, w.vm, owner, start, false, nil)
}

// takeReadyLocked removes the oldest ready warm VM of ps from the pool;
// p.mu held.
func (p *Pool) takeReadyLocked(ps *poolState) *warmVM {
	e := ps.ready.Front()
	if e == nil {
		return nil
	}
	w := e.Value.(*warmVM)
	ps.ready.Remove(e)
	w.elem = nil
	close(w.unwatch)
	return w
}

// finishClaim marks a warm VM taken from the pool as the owner's and
// reports it; waitedForBoot says the caller waited for its boot (false
// for a ready one), which only changes the event's message.
func (p *Pool) finishClaim(ps *poolState, vm *VM, owner string, start time.Time, waitedForBoot bool, onEvent EventFunc) (*VM, error) {
	p.kickPool(ps)
	vm.Warm, vm.Path = true, PathWarm
	if err := os.WriteFile(filepath.Join(p.client.VMDir(vm.Name), ClaimedMarker), []byte(owner+"\n"), 0o600); err != nil {
		// Without the marker a restarted pool could delete the task's VM.
		p.log.Error("failed to mark warm vm as claimed", "vm_name", vm.Name, "error", err)
		p.discard(vm, "claim marker could not be written")
		return nil, fmt.Errorf("claim warm vm %s: write marker: %w", vm.Name, err)
	}
	vm.Waited = time.Since(start)
	msg := fmt.Sprintf("Claimed warm VM %s in %.1fs (ready; path warm)", vm.Name, vm.Waited.Seconds())
	if waitedForBoot {
		msg = fmt.Sprintf("Claimed warm VM %s in %.1fs (waited for its boot; path warm)", vm.Name, vm.Waited.Seconds())
	}
	p.log.Info("claimed warm vm", "pool", ps.cfg.Name, "vm_name", vm.Name, "owner", owner, "duration", vm.Waited)
	emit(Event{Type: EventClaimed, Pool: ps.cfg.Name, VM: vm.Name, Duration: vm.Waited, Path: PathWarm, Message: msg}, onEvent, p.opts.OnEvent)
	return vm, nil
}

// Provision returns a running, ready VM for owner (see ProvisionWith).
func (p *Pool) Provision(ctx context.Context, name, owner string, spec VMSpec, onEvent EventFunc) (*VM, error) {
	return p.ProvisionWith(ctx, name, owner, spec, ProvisionOptions{OnEvent: onEvent})
}

// ProvisionWith returns a running, ready VM for owner: the one that will
// be ready first.
//  1. A ready warm VM of the pool that fits spec (PathWarm).
//  2. Else a warm VM of that pool still booting, when its expected ready
//     time beats starting a VM now (a resume or a cold boot, plus the wait
//     for a slot when none is free): the caller waits for it (PathWarm).
//     If its boot fails, go on with 3.
//  3. Else a VM named name in a slot (waiting for one, at most
//     PoolOptions.SlotWaitTimeout or ProvisionOptions.SlotWait; a wait
//     that ends without one fails with ErrNoSlot): in a
//     ModeResume pool a clone of the slot's template, resumed
//     (PathResumed); otherwise, or when the slot has no template or the
//     resume fails (the template is then rebuilt in the background), a
//     cold boot from the image (PathCold).
//
// VM.Path and VM.Waited say which and how long it took; the events say
// why. On failure nothing is left behind.
func (p *Pool) ProvisionWith(ctx context.Context, name, owner string, spec VMSpec, o ProvisionOptions) (*VM, error) {
	start := time.Now()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrPoolClosed
	}
	ps, _ := p.findPool(spec)
	var ready, booting *warmVM
	var wake chan bool
	var why string
	if ps != nil {
		if ready = p.takeReadyLocked(ps); ready == nil {
			booting, why = p.soonestBootingLocked(ps, start)
			if booting != nil {
				wake = make(chan bool, 1)
				booting.waiter = wake
			}
		}
	}
	p.mu.Unlock()
	switch {
	case ready != nil:
		return p.finishClaim(ps, ready.vm, owner, start, false, o.OnEvent)
	case booting != nil:
		emit(Event{Type: EventWaitingWarm, Pool: ps.cfg.Name, VM: booting.vm.Name, Message: why}, o.OnEvent, p.opts.OnEvent)
		if p.awaitBooting(ctx, ps, booting, wake) {
			return p.finishClaim(ps, booting.vm, owner, start, true, o.OnEvent)
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("wait for booting warm vm %s: %w", booting.vm.Name, err)
		}
		emit(Event{Type: EventWaitingWarm, Pool: ps.cfg.Name, VM: booting.vm.Name,
			Message: "Warm VM " + booting.vm.Name + " did not finish booting: starting a VM instead"}, o.OnEvent, p.opts.OnEvent)
	}
	wait := p.opts.SlotWaitTimeout
	if o.SlotWait > 0 {
		wait = o.SlotWait
	}
	return p.startFresh(ctx, name, spec, ps, o, wait, start)
}

// soonestBootingLocked returns the unreserved booting warm VM of ps that
// is expected ready first, if it beats starting a VM now, and a sentence
// saying so; p.mu held. A boot overdue by more than a whole expected boot
// is not counted on (something holds it up).
func (p *Pool) soonestBootingLocked(ps *poolState, now time.Time) (*warmVM, string) {
	var best *warmVM
	var left time.Duration
	for _, w := range ps.booting {
		if w.cancel == nil || w.waiter != nil || w.startedAt.IsZero() {
			continue // left alone at Start, or already reserved
		}
		r := w.startedAt.Add(ps.est.boot).Sub(now)
		if r < -ps.est.boot {
			continue
		}
		if best == nil || r < left {
			best, left = w, r
		}
	}
	if best == nil {
		return nil, ""
	}
	left = max(left, 0)
	alt, altName := ps.est.boot, "a cold start"
	if r, _ := ps.tmpl.counts(); r > 0 {
		alt, altName = ps.est.resume, "a resume"
	}
	if p.slots.Available() > 0 && p.slots.waiting() == 0 {
		if left > alt {
			return nil, ""
		}
		return best, fmt.Sprintf("Waiting for warm VM %s: booting, expected ready in %.0fs (%s would take about %.0fs)",
			best.vm.Name, left.Seconds(), altName, alt.Seconds())
	}
	return best, fmt.Sprintf("Waiting for warm VM %s: booting, expected ready in %.0fs (every VM slot is taken; %s would also wait for one)",
		best.vm.Name, left.Seconds(), altName)
}

// awaitBooting waits for the booting warm VM w that this Provision
// reserved. It reports whether the VM is now the caller's. If ctx ends
// first the reservation is dropped (a VM handed over meanwhile goes back
// to the pool).
func (p *Pool) awaitBooting(ctx context.Context, ps *poolState, w *warmVM, wake chan bool) bool {
	select {
	case ok := <-wake:
		return ok
	case <-ctx.Done():
	}
	p.mu.Lock()
	if w.waiter == wake {
		w.waiter = nil // still booting: it joins the pool when ready
		p.mu.Unlock()
		return false
	}
	p.mu.Unlock()
	if <-wake {
		p.returnReady(ps, w)
	}
	return false
}

// handOver gives a warm VM that just became ready to the Provision that
// reserved it, if any; p.mu held, and released when it reports true.
func (p *Pool) handOver(ps *poolState, w *warmVM) bool {
	if w.waiter == nil {
		return false
	}
	wake := w.waiter
	w.waiter = nil
	ps.succeeded()
	p.mu.Unlock()
	p.log.Info("warm vm ready for the task waiting for it", "pool", ps.cfg.Name, "vm_name", w.vm.Name)
	wake <- true
	return true
}

// returnReady puts a ready warm VM back into its pool (or deletes it when
// the pool has closed).
func (p *Pool) returnReady(ps *poolState, w *warmVM) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.discard(w.vm, "pool closed")
		return
	}
	w.unwatch = make(chan struct{})
	w.elem = ps.ready.PushBack(w)
	p.mu.Unlock()
	if w.vm.Run != nil {
		p.wg.Add(1)
		go p.watch(ps, w)
	}
}

// startVM cold-starts VM name from spec: it waits for a slot (preempting an
// idle warm VM if all slots are taken), pulls the image if needed, clones,
// sets resources and the slot's MAC, boots detached and waits for the guest
// agent. If no slot frees up within SlotWaitTimeout (or before ctx ends)
// the error matches ErrNoSlot. On failure nothing is left behind (VM
// deleted, slot freed).
func (p *Pool) startVM(ctx context.Context, name string, spec VMSpec, onEvent EventFunc) (*VM, error) {
	return p.startVMWithin(ctx, name, spec, onEvent, p.opts.SlotWaitTimeout)
}

// startVMWithin is startVM with its own bound of the slot wait instead of
// SlotWaitTimeout (zero waits as long as ctx allows): a caller that knows a
// slot is due to it (a scheduler reservation) waits only for a preempted
// warm VM to give its slot up.
func (p *Pool) startVMWithin(ctx context.Context, name string, spec VMSpec, onEvent EventFunc, slotWait time.Duration) (*VM, error) {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return nil, ErrPoolClosed
	}
	return p.startFresh(ctx, name, spec, nil, ProvisionOptions{OnEvent: onEvent}, slotWait, time.Now())
}

// startFresh starts VM name in a slot (waiting at most slotWait for one,
// zero: as long as ctx allows): resumed from the slot's template when ps
// is a ModeResume pool that has one, else cold-booted.
func (p *Pool) startFresh(ctx context.Context, name string, spec VMSpec, ps *poolState, o ProvisionOptions, slotWait time.Duration, start time.Time) (*VM, error) {
	if err := validName(name); err != nil {
		return nil, fmt.Errorf("start vm: %w", err)
	}
	// tart clone would silently replace an existing VM, even a running one.
	if _, err := os.Stat(p.client.VMDir(name)); err == nil {
		return nil, fmt.Errorf("start vm %s: a vm of that name already exists", name)
	}
	events := func(e Event) { emit(e, o.OnEvent, p.opts.OnEvent) }
	resumable := false
	if ps != nil {
		p.mu.Lock()
		r, _ := ps.tmpl.counts()
		p.mu.Unlock()
		resumable = r > 0
	}
	if !resumable && o.BeforeColdStart != nil {
		if err := o.BeforeColdStart(ctx); err != nil {
			return nil, err
		}
	}
	slot, ok := p.tryAcquireResumable(ps, name)
	if !ok {
		slot, ok = p.slots.tryAcquire(name)
	}
	if !ok {
		events(Event{Type: EventWaitingSlot, VM: name,
			Message: fmt.Sprintf("Waiting for a VM slot (%d of %d in use)", p.slots.Max()-p.slots.Available(), p.slots.Max())})
		var err error
		if slot, err = p.acquireSlot(ctx, name, slotWait); err != nil {
			return nil, fmt.Errorf("start vm %s: %w", name, err)
		}
	}
	vm := &VM{Name: name, Slot: slot, Image: spec.Image}
	why := "no warm VM of a pool fits"
	if ps != nil {
		why = "no warm VM of pool " + ps.cfg.Name + " is ready or booting sooner"
		vm.Pool = ps.cfg.Name
	}
	if ps != nil && ps.tmpl != nil {
		var resumed bool
		var err error
		if resumed, why, err = p.tryResume(ctx, ps, vm, events); resumed || err != nil {
			if err != nil {
				p.discard(vm, "resume cancelled")
				return nil, fmt.Errorf("start vm %s: %w", name, err)
			}
			vm.Path, vm.Waited = PathResumed, time.Since(start)
			return vm, nil
		}
		if resumable && o.BeforeColdStart != nil {
			if err := o.BeforeColdStart(ctx); err != nil {
				p.discard(vm, "cold start refused")
				return nil, err
			}
		}
	}
	events(Event{Type: EventColdStart, Pool: vm.Pool, VM: name, Message: "Cold start: " + why})
	coldEvents := func(e Event) {
		if e.Type == EventReady {
			e.Path = PathCold
			e.Message += " (path cold)"
		}
		events(e)
	}
	if err := p.boot(ctx, vm, spec, coldEvents); err != nil {
		p.discard(vm, "cold start failed")
		emit(Event{Type: EventFailed, VM: name, Err: err, Message: "Failed to start VM: " + err.Error()}, o.OnEvent, p.opts.OnEvent)
		return nil, fmt.Errorf("start vm %s: %w", name, err)
	}
	vm.Path, vm.Waited = PathCold, time.Since(start)
	return vm, nil
}

// acquireSlot waits for a slot for name, at most wait when set. Its error
// matches ErrNoSlot.
func (p *Pool) acquireSlot(ctx context.Context, name string, wait time.Duration) (Slot, error) {
	if wait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, wait)
		defer cancel()
	}
	return p.slots.acquire(ctx, name)
}
