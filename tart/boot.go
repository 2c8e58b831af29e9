// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// boot pulls (if needed), clones, configures, runs and waits for vm, and
// keeps Health up to date.
func (p *Pool) boot(ctx context.Context, vm *VM, spec VMSpec, onEvent EventFunc) error {
	start := time.Now()
	err := p.bootSteps(ctx, vm, spec, onEvent)
	switch {
	case err == nil:
		p.mu.Lock()
		p.health = nil
		if ps := p.pools[vm.Pool]; ps != nil {
			observe(&ps.est.boot, time.Since(start))
		}
		p.mu.Unlock()
	case errors.Is(err, ErrVMLimit):
		p.checkQuotaLeak(vm.Name)
	}
	return err
}

// checkQuotaLeak marks the host unhealthy when tart refuses a VM for the
// system limit although fewer than DefaultMaxVMs VMs run in TART_HOME: a
// leaked Virtualization.framework quota (only a host reboot clears it) or
// VMs of other users and tools. Retrying would not help.
func (p *Pool) checkQuotaLeak(vmName string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	vms, err := p.client.List(ctx)
	if err != nil {
		return
	}
	running := 0
	for _, v := range vms {
		if v.IsLocal() && v.IsRunning() && v.Name != vmName {
			running++
		}
	}
	if running >= DefaultMaxVMs {
		return
	}
	herr := fmt.Errorf("%w although only %d vm(s) run in %s: VMs of other users or tools, or a leaked macOS VM quota (reboot the host)",
		ErrVMLimit, running, p.client.Home())
	p.log.Error("host refuses vms below the limit", "running", running, "error", herr)
	p.mu.Lock()
	p.health = herr
	p.mu.Unlock()
}

// Health returns nil, or an error (matching ErrVMLimit) when the last boot
// was refused for the host's VM limit while fewer than two VMs ran: the
// host needs attention (fingerprint it unhealthy). The next successful boot
// clears it.
func (p *Pool) Health() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.health
}

// bootSteps is boot without the health bookkeeping.
func (p *Pool) bootSteps(ctx context.Context, vm *VM, spec VMSpec, onEvent EventFunc) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, p.opts.BootTimeout)
	defer cancel()
	po := p.opts.Pull
	po.Progress = func(pr PullProgress) {
		if pr.Phase == PullDisk || pr.Phase == PullStarted || pr.Phase == PullCached {
			prog := pr
			emit(Event{Type: EventPulling, Pool: vm.Pool, VM: vm.Name, Pull: &prog, Message: pr.String()}, onEvent)
		}
	}
	pulled, err := p.ensureImage(ctx, spec.Image, po)
	if err != nil {
		return err
	}
	if pulled {
		emit(Event{Type: EventPulled, Pool: vm.Pool, VM: vm.Name, Message: "Pulled image " + spec.Image}, onEvent)
	}
	if err := p.client.Clone(ctx, spec.Image, vm.Name); err != nil {
		return err
	}
	if vm.Pool != "" {
		// Recorded before tart run, so every warm VM that can answer its
		// agent has the record: a later Start compares it with the pool's
		// config then (see adoptWarm).
		if err := writeBuiltFor(p.client.VMDir(vm.Name), builtForPool(PoolConfig{Name: vm.Pool, VMSpec: spec})); err != nil {
			return fmt.Errorf("record spec of warm vm %s: %w", vm.Name, err)
		}
	}
	if err := p.client.Set(ctx, vm.Name, spec.set()); err != nil {
		return err
	}
	if err := p.client.setMACAddress(vm.Name, vm.Slot.MAC); err != nil {
		return err
	}
	emit(Event{Type: EventBooting, Pool: vm.Pool, VM: vm.Name, Message: "Booting VM " + vm.Name}, onEvent)
	if err := p.runUntilReady(ctx, vm, spec.Run); err != nil {
		return err
	}
	d := time.Since(start)
	emit(Event{Type: EventReady, Pool: vm.Pool, VM: vm.Name, Duration: d,
		Message: fmt.Sprintf("VM %s ready in %.1fs", vm.Name, d.Seconds())}, onEvent)
	return nil
}

// runUntilReady runs vm with ro (detached unless the pool is Attached),
// records its run handle and waits for its agent; a cold boot and a
// resume share it.
func (p *Pool) runUntilReady(ctx context.Context, vm *VM, ro RunOptions) error {
	ro.Detached = !p.opts.Attached
	h, err := p.client.Run(ctx, vm.Name, ro)
	if err != nil {
		return err
	}
	vm.Run = h
	if err := p.client.WaitReady(ctx, vm.Name, ReadyOptions{Command: p.opts.ReadyCommand, Interval: p.opts.ReadyInterval, Run: h}); err != nil {
		return err
	}
	vm.ReadyAt = time.Now()
	return nil
}

// ensureImage runs Client.EnsureImage with one caller per image at a time.
func (p *Pool) ensureImage(ctx context.Context, image string, po PullOptions) (bool, error) {
	p.pullMu.Lock()
	sem, ok := p.pulling[image]
	if !ok {
		sem = make(chan struct{}, 1)
		p.pulling[image] = sem
	}
	p.pullMu.Unlock()
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return false, fmt.Errorf("ensure image %s: %w", image, ctx.Err())
	}
	defer func() { <-sem }()
	return p.client.EnsureImage(ctx, image, po)
}
