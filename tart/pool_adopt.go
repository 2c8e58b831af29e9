// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// foreignVM is an unclaimed warm VM found at Start. One that runs but does
// not answer yet is left alone for recheck: perhaps another, still-alive
// process is booting it.
type foreignVM struct {
	v   VMInfo
	n   VMName
	ps  *poolState // nil for a pool not configured here
	w   *warmVM    // in ps.booting while left alone (so the pool counts it)
	has bool       // its slot is held here under its name
}

// adopt implements Start's startup reconciliation. It returns the warm
// VMs it left alone for recheck.
func (p *Pool) adopt(ctx context.Context) ([]*foreignVM, error) {
	vms, err := p.client.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list vms: %w", err)
	}
	var warm []*foreignVM
	// Busy VMs first, so that their slots are known before warm VMs are
	// adopted.
	for _, v := range vms {
		if !v.IsLocal() {
			continue
		}
		n, ok := ParseVMName(v.Name)
		if !ok {
			continue
		}
		if _, known := p.pools[n.Pool]; (n.Kind == KindPool && !known && p.opts.KeepUnknownPools) || n.Kind == KindTemplate {
			continue // templates: adoptTemplates
		}
		if n.Kind == KindTask || p.isClaimed(v.Name) {
			if v.IsRunning() {
				p.restoreSlot(v.Name, n)
			}
			continue
		}
		warm = append(warm, &foreignVM{v: v, n: n, ps: p.pools[n.Pool]})
	}
	var pending []*foreignVM
	for _, f := range warm {
		switch err := p.adoptWarm(ctx, f); {
		case err == nil:
		case errors.Is(err, errLeftAlone):
			p.leaveAlone(f)
			pending = append(pending, f)
		default:
			p.deleteStale(ctx, f, err)
		}
	}
	return pending, nil
}

// errLeftAlone says a warm VM is too young to judge: it runs, does not
// answer yet, and may be another process's boot in progress.
var errLeftAlone = errors.New("left alone")

// deleteStale deletes an unclaimed warm VM found at Start (or left alone
// then) that cannot be used, and frees its slot if this pool holds it.
func (p *Pool) deleteStale(ctx context.Context, f *foreignVM, reason error) {
	if p.isClaimed(f.v.Name) {
		// Another, still-alive pool handed it to a task while this one
		// looked at it: a task VM now, which keeps its slot, as at Start.
		p.log.Info("not deleting stale warm vm: it was claimed meanwhile", "vm_name", f.v.Name)
		if !f.has && f.v.IsRunning() {
			_, f.has = p.restoreSlot(f.v.Name, f.n)
		}
		return
	}
	p.log.Info("deleting stale warm vm", "pool", f.n.Pool, "vm_name", f.v.Name, "reason", reason.Error())
	if err := p.client.Destroy(ctx, f.v.Name, p.opts.StopTimeout); err != nil {
		p.log.Warn("failed to delete stale warm vm", "vm_name", f.v.Name, "error", err)
		return
	}
	if f.has {
		p.slots.releaseOwner(f.v.Name)
		f.has = false
	}
	msg := "Deleted stale warm VM " + f.v.Name
	if stale := (*staleWarmVMError)(nil); errors.As(reason, &stale) {
		msg = "Deleted warm VM " + f.v.Name + ": " + stale.Error()
	}
	emit(Event{Type: EventDeleted, Pool: f.n.Pool, VM: f.v.Name, Message: msg}, p.opts.OnEvent)
}

// leaveAlone keeps a young, not yet ready warm VM's slot and counts it as
// booting in its pool, so that the pool boots no replacement for it.
func (p *Pool) leaveAlone(f *foreignVM) {
	var slot Slot
	slot, f.has = p.restoreSlot(f.v.Name, f.n)
	p.log.Info("leaving young unready warm vm alone; another process may be booting it",
		"vm_name", f.v.Name, "grace_period", p.opts.AdoptGracePeriod)
	if f.ps == nil || !f.has {
		return
	}
	f.w = &warmVM{vm: &VM{Name: f.v.Name, Slot: slot, Image: f.ps.cfg.Image, Pool: f.ps.cfg.Name}, unwatch: make(chan struct{})}
	p.mu.Lock()
	f.ps.booting[f.v.Name] = f.w
	p.mu.Unlock()
}

// recheck re-examines the warm VMs Start left alone every ReadyInterval
// until each is adopted or deleted (or the pool closes: then they stay as
// they are).
func (p *Pool) recheck(ctx context.Context, pending []*foreignVM) {
	defer p.wg.Done()
	t := time.NewTicker(p.opts.ReadyInterval)
	defer t.Stop()
	for len(pending) > 0 {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		vms, err := p.client.List(ctx)
		if err != nil {
			p.log.Debug("failed to list vms to recheck warm vms left alone", "error", err)
			continue
		}
		state := map[string]VMInfo{}
		for _, v := range vms {
			if v.IsLocal() {
				state[v.Name] = v
			}
		}
		next := pending[:0]
		for _, f := range pending {
			if ctx.Err() != nil {
				return
			}
			if !p.recheckOne(ctx, f, state) {
				next = append(next, f)
			}
		}
		pending = next
	}
}

// recheckOne decides about one VM left alone; it reports whether the VM
// is settled (adopted, deleted, gone or claimed by its booter for a task).
func (p *Pool) recheckOne(ctx context.Context, f *foreignVM, state map[string]VMInfo) bool {
	v, exists := state[f.v.Name]
	switch {
	case !exists:
		p.log.Debug("warm vm left alone is gone", "vm_name", f.v.Name)
		p.unpend(f, true)
		return true
	case p.isClaimed(f.v.Name):
		// Its booter handed it to a task: a task VM now, which keeps its
		// slot, as at Start.
		p.log.Debug("warm vm left alone was claimed by its booter", "vm_name", f.v.Name)
		p.unpend(f, false)
		return true
	}
	f.v = v
	err := p.adoptWarm(ctx, f)
	switch {
	case err == nil:
		if p.slots.waiting() > 0 {
			p.preempt() // a task waits for a slot: it may take this one
		}
		return true
	case errors.Is(err, errLeftAlone):
		return false
	case ctx.Err() != nil:
		return true // the pool is closing; leave it as it is
	}
	// Deleted before it stops counting as booting: otherwise the pool boots
	// its replacement while it still runs, one VM over Apple's limit.
	p.deleteStale(ctx, f, err)
	p.unpend(f, false)
	return true
}

// unpend removes a VM left alone from its pool's booting set, releasing
// its slot if asked to.
func (p *Pool) unpend(f *foreignVM, release bool) {
	if f.w != nil {
		p.mu.Lock()
		if f.ps.booting[f.v.Name] == f.w {
			delete(f.ps.booting, f.v.Name)
		}
		p.mu.Unlock()
		f.w = nil
		p.kickPool(f.ps)
	}
	if release && f.has {
		p.slots.releaseOwner(f.v.Name)
		f.has = false
	}
}

// restoreSlot marks the slot of a running VM of ours as held.
func (p *Pool) restoreSlot(name string, n VMName) (Slot, bool) {
	idx, ok := -1, false
	if mac, err := p.client.macAddress(name); err == nil {
		idx, ok = p.slots.slotForMAC(mac)
	}
	if !ok && n.Kind == KindPool {
		idx, ok = n.Slot, true
	}
	if !ok {
		p.log.Warn("running vm of ours has no slot mac; it is not counted", "vm_name", name)
		return Slot{}, false
	}
	s, err := p.slots.claim(idx, name)
	if err != nil {
		p.log.Warn("failed to restore slot of running vm", "vm_name", name, "error", err)
		return Slot{}, false
	}
	return s, true
}

// adoptWarm keeps a running, ready warm VM of a configured pool that was
// built for the pool's current config. It returns errLeftAlone for a
// running VM that does not answer yet and is younger than
// AdoptGracePeriod, else an error saying why the VM must be deleted (a
// *staleWarmVMError when its record is missing or does not match).
func (p *Pool) adoptWarm(ctx context.Context, f *foreignVM) error {
	v, n, ps := f.v, f.n, f.ps
	if !v.IsRunning() {
		return fmt.Errorf("vm is %s", v.State)
	}
	rctx, cancel := context.WithTimeout(ctx, max(3*p.opts.ReadyInterval, 5*time.Second))
	code, err := p.client.Exec(rctx, v.Name, p.opts.ReadyCommand, ExecOptions{})
	cancel()
	if err != nil || code != 0 {
		if age := p.vmAge(v.Name); age < p.opts.AdoptGracePeriod {
			return errLeftAlone
		}
		//nolint:errorlint // err is nil for a non-zero exit, which %w would print as %!w(<nil>)
		return fmt.Errorf("guest agent does not answer (exit %d): %v", code, err)
	}
	if ps == nil {
		return fmt.Errorf("pool %q is not configured", n.Pool)
	}
	// Only now, once it answers, is a missing record a reason to delete
	// it: a young VM still booting may be another process's, which
	// records it before tart run, or an older version's, which never does.
	built, err := readBuiltFor(p.client.VMDir(v.Name))
	if err != nil {
		return err
	}
	if err := built.mismatch(builtForPool(ps.cfg)); err != nil {
		return err
	}
	p.mu.Lock()
	others := len(ps.booting)
	if f.w != nil && ps.booting[v.Name] == f.w {
		others-- // it counts itself while left alone
	}
	full := ps.ready.Len()+others >= ps.cfg.Size
	p.mu.Unlock()
	if full {
		return errors.New("pool is already full")
	}
	slot, ok := Slot{}, f.has
	if ok {
		slot, ok = p.slots.ownerSlot(v.Name)
	} else {
		slot, ok = p.restoreSlot(v.Name, n)
		f.has = ok
	}
	if !ok {
		return errors.New("its slot is unknown or taken")
	}
	vm := &VM{Name: v.Name, Slot: slot, Image: ps.cfg.Image, Pool: ps.cfg.Name, ReadyAt: time.Now()}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrPoolClosed
	}
	if f.w != nil && ps.booting[v.Name] == f.w {
		delete(ps.booting, v.Name)
		f.w = nil
	}
	w := &warmVM{vm: vm, unwatch: make(chan struct{})}
	w.elem = ps.ready.PushBack(w)
	p.mu.Unlock()
	p.log.Info("adopted warm vm", "pool", ps.cfg.Name, "vm_name", v.Name, "slot", slot.Index)
	emit(Event{Type: EventAdopted, Pool: ps.cfg.Name, VM: v.Name, Message: "Adopted warm VM " + v.Name}, p.opts.OnEvent)
	return nil
}

// vmAge is how long ago the VM's directory last changed (tart clone
// creates it; tart run adds its socket), or 0 if unknown: an unknown age
// never makes a VM look old.
func (p *Pool) vmAge(name string) time.Duration {
	fi, err := os.Stat(p.client.VMDir(name))
	if err != nil {
		return 0
	}
	return max(time.Since(fi.ModTime()), 0)
}

func (p *Pool) isClaimed(name string) bool {
	_, ok := p.ClaimedBy(name)
	return ok
}

// ClaimedBy returns the owner recorded in a claimed warm VM's marker.
func (p *Pool) ClaimedBy(name string) (owner string, ok bool) {
	b, err := os.ReadFile(filepath.Join(p.client.VMDir(name), ClaimedMarker))
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}
