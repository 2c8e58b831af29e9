// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"context"
	"fmt"
	"time"

	"github.com/tartnomad/nomad-driver-tart/internal/backoff"
)

// worker keeps one pool filled. It boots VMs only into free slots
// (tryAcquire), never ahead of a waiting task, and backs off after failures.
func (p *Pool) worker(ctx context.Context, ps *poolState) {
	defer p.wg.Done()
	for {
		changed := p.slots.nextChange()
		var wait time.Duration
		p.mu.Lock()
		if d := time.Until(ps.retryAt); d > 0 {
			wait = d
		} else if ps.deficit() > 0 && ctx.Err() == nil && ps.tmpl.warmMayBoot() {
			// In ModeResume templates come first (warm VMs are resumed
			// from them) unless building them fails.
			if slot, ok := p.slots.tryAcquire("pool:" + ps.cfg.Name); ok {
				p.startWarmBoot(ctx, ps, slot)
				p.mu.Unlock()
				continue
			}
		}
		p.mu.Unlock()
		var timer *time.Timer
		var fire <-chan time.Time
		if wait > 0 {
			timer = time.NewTimer(wait)
			fire = timer.C
		}
		select {
		case <-ctx.Done():
		case <-ps.kick:
		case <-changed:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// startWarmBoot registers a booting warm VM and starts its boot; p.mu held.
func (p *Pool) startWarmBoot(ctx context.Context, ps *poolState, slot Slot) {
	name := poolVMName(ps.cfg.Name, slot.Index)
	p.slots.setOwner(slot.Index, name)
	bctx, cancel := context.WithCancel(ctx)
	vm := &VM{Name: name, Slot: slot, Image: ps.cfg.Image, Pool: ps.cfg.Name}
	w := &warmVM{vm: vm, cancel: cancel, unwatch: make(chan struct{}), startedAt: time.Now()}
	ps.booting[name] = w
	p.wg.Add(1)
	go p.bootWarm(bctx, cancel, ps, w)
}

// bootWarm boots one warm VM and puts it in the ready list. w.cancel is
// only touched under p.mu (preempt may call it); cancel is the same func.
func (p *Pool) bootWarm(ctx context.Context, cancel context.CancelFunc, ps *poolState, w *warmVM) {
	defer p.wg.Done()
	defer cancel()
	vm := w.vm
	err := p.bootOrResume(ctx, ps, vm)
	p.mu.Lock()
	delete(ps.booting, vm.Name)
	if err == nil && !p.closed && ctx.Err() == nil {
		w.cancel = nil
		if p.handOver(ps, w) {
			return // p.mu released
		}
		w.elem = ps.ready.PushBack(w)
		ps.succeeded()
		p.mu.Unlock()
		if vm.Run != nil {
			p.wg.Add(1)
			go p.watch(ps, w)
		}
		p.log.Info("warm vm ready", "pool", ps.cfg.Name, "vm_name", vm.Name, "slot", vm.Slot.Index)
		return
	}
	if w.waiter != nil {
		w.waiter <- false // buffered; its Provision starts a VM itself
		w.waiter = nil
	}
	cancelled := ctx.Err() != nil
	var retry time.Duration
	failed := err != nil && !cancelled
	if failed {
		retry = ps.failed(err, p.opts.BackoffMin, p.opts.BackoffMax)
	}
	p.mu.Unlock()
	// Booted too late (pool closed, boot preempted) or failed: nothing of
	// it may stay behind.
	p.discard(vm, "warm boot did not complete")
	p.kickPool(ps)
	if !failed {
		p.log.Debug("warm vm boot cancelled", "pool", ps.cfg.Name, "vm_name", vm.Name)
		return
	}
	p.log.Error("failed to boot warm vm", "pool", ps.cfg.Name, "vm_name", vm.Name, "retry_in", retry, "error", err)
	emit(Event{Type: EventFailed, Pool: ps.cfg.Name, VM: vm.Name, Err: err, RetryIn: retry,
		Message: fmt.Sprintf("Failed to boot warm VM (retrying in %s): %v", retry.Round(time.Second), err)}, p.opts.OnEvent)
}

// watch removes a ready warm VM whose tart run exits (VM crash, guest
// shutdown) and lets the pool replace it.
func (p *Pool) watch(ps *poolState, w *warmVM) {
	defer p.wg.Done()
	select {
	case <-w.unwatch:
		return
	case <-w.vm.Run.Done():
	}
	p.mu.Lock()
	if w.elem == nil {
		p.mu.Unlock()
		return
	}
	ps.ready.Remove(w.elem)
	w.elem = nil
	// A VM that keeps dying counts as a failed boot, so replacements back
	// off too.
	err := w.vm.Run.exitError()
	retry := ps.failed(err, p.opts.BackoffMin, p.opts.BackoffMax)
	p.mu.Unlock()
	p.log.Warn("warm vm stopped unexpectedly", "pool", ps.cfg.Name, "vm_name", w.vm.Name, "retry_in", retry, "error", err)
	emit(Event{Type: EventFailed, Pool: ps.cfg.Name, VM: w.vm.Name, Err: err, RetryIn: retry,
		Message: "Warm VM " + w.vm.Name + " stopped unexpectedly"}, p.opts.OnEvent)
	p.discard(w.vm, "stopped unexpectedly")
	p.kickPool(ps)
}

// discard deletes a VM the pool still owns and frees its slot. It runs on
// a context detached from the caller's (cleanup must happen), bounded by
// the stop timeout.
func (p *Pool) discard(vm *VM, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.StopTimeout+30*time.Second)
	defer cancel()
	// A tart run started moments ago (a boot cancelled right after the
	// spawn) may not hold the VM yet: tart stop would then call the VM
	// stopped and it would come up after the delete fails. Stopping the
	// process this pool started closes that window.
	if vm.Run != nil {
		if err := vm.Run.Stop(ctx, p.opts.StopTimeout); err != nil {
			p.log.Warn("failed to stop tart run of warm vm", "vm_name", vm.Name, "error", err)
		}
	}
	if err := p.client.Destroy(ctx, vm.Name, p.opts.StopTimeout); err != nil {
		p.log.Error("failed to delete warm vm", "vm_name", vm.Name, "error", err)
	} else {
		p.log.Debug("deleted warm vm", "vm_name", vm.Name, "reason", reason)
		emit(Event{Type: EventDeleted, Pool: vm.Pool, VM: vm.Name, Message: "Deleted VM " + vm.Name}, p.opts.OnEvent)
	}
	p.slots.release(vm.Slot.Index)
}

func (p *Pool) kickPool(ps *poolState) {
	select {
	case ps.kick <- struct{}{}:
	default:
	}
}

// preempt gives up one warm VM's slot for a waiting acquire: a ready VM
// (the newest) first, else a booting one. It reports whether it found one.
func (p *Pool) preempt() bool {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return false
	}
	for _, name := range p.order {
		ps := p.pools[name]
		if e := ps.ready.Back(); e != nil {
			w := e.Value.(*warmVM)
			ps.ready.Remove(e)
			w.elem = nil
			close(w.unwatch)
			p.wg.Add(1)
			p.mu.Unlock()
			p.log.Info("preempting warm vm for a waiting task", "pool", name, "vm_name", w.vm.Name)
			emit(Event{Type: EventPreempted, Pool: name, VM: w.vm.Name, Message: "Warm VM " + w.vm.Name + " gave up its slot"}, p.opts.OnEvent)
			go func() {
				defer p.wg.Done()
				p.discard(w.vm, "preempted")
			}()
			return true
		}
	}
	for _, name := range p.order {
		ps := p.pools[name]
		for _, w := range ps.booting {
			if w.cancel != nil && w.waiter == nil {
				w.cancel()
				w.cancel = nil
				p.mu.Unlock()
				p.log.Info("cancelling warm vm boot for a waiting task", "pool", name, "vm_name", w.vm.Name)
				emit(Event{Type: EventPreempted, Pool: name, VM: w.vm.Name, Message: "Booting warm VM " + w.vm.Name + " gave up its slot"}, p.opts.OnEvent)
				return true
			}
		}
	}
	if p.preemptTemplateBuildLocked() {
		p.mu.Unlock()
		return true
	}
	p.mu.Unlock()
	return false
}

// retryState is the backoff of something that boots VMs (a pool's warm
// VMs, a pool's templates): consecutive failures, the last one's error,
// and when the next attempt may start. p.mu guards it.
type retryState struct {
	failures int
	retryAt  time.Time
	lastErr  error
}

// failed records a failure and returns the jittered exponential delay,
// between minDelay and maxDelay, before the next attempt.
func (r *retryState) failed(err error, minDelay, maxDelay time.Duration) time.Duration {
	r.failures++
	r.lastErr = err
	retry := backoff.Exponential{Min: minDelay, Max: maxDelay}.Jittered(r.failures)
	r.retryAt = time.Now().Add(retry)
	return retry
}

// succeeded clears the failures: the next attempt may start at once.
func (r *retryState) succeeded() { *r = retryState{} }
