// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// PoolMode says how a pool makes VMs ready ahead of tasks.
type PoolMode string

// Pool modes.
const (
	// ModeBoot keeps Size booted warm VMs; other starts boot from the
	// image.
	ModeBoot PoolMode = "boot"
	// ModeResume also keeps, per slot, a suspended template VM of the
	// pool's image and shape with that slot's MAC (booted once with
	// --suspendable, guest agent ready, then suspended). A start in a
	// slot clones the slot's template and resumes the clone (Tart's
	// reuse pattern), which takes the time to read the memory
	// snapshot instead of a boot. Templates do not run, so they do not
	// count against the host's VM limit; Size booted warm VMs come on top
	// (they are themselves resumed from templates when one is ready).
	ModeResume PoolMode = "resume"
)

// DefaultResumeCommand is the clock sync the driver and the service run
// in a guest resumed from a template before handing it out: the guest's
// clock stands where it was when the template was suspended. It needs
// passwordless sudo (Cirrus Labs images have it) and network access.
var DefaultResumeCommand = []string{"sudo", "-n", "sntp", "-sS", "time.apple.com"}

func (m PoolMode) valid() error {
	switch m {
	case "", ModeBoot, ModeResume:
		return nil
	}
	return fmt.Errorf("%q is not a mode: use %q or %q", string(m), ModeBoot, ModeResume)
}

func (m PoolMode) orDefault() PoolMode {
	if m == "" {
		return ModeBoot
	}
	return m
}

// template is one slot's template VM; p.mu guards it.
type template struct {
	name  string
	ready bool               // suspended and usable
	stop  context.CancelFunc // cancels its build; nil once ready
}

// templateSet is a ModeResume pool's templates, one per slot index; p.mu
// guards it.
type templateSet struct {
	slots []*template
	// version is the tart version the templates are built with (read at
	// Start); a template built with another is rebuilt.
	version string
	retryState
	kick chan struct{}
}

func newTemplateSet(n int) *templateSet {
	return &templateSet{slots: make([]*template, n), kick: make(chan struct{}, 1)}
}

// warmMayBoot reports whether the pool's warm VMs may take slots: always
// without templates; in ModeResume once every slot has a ready template
// or building them has failed.
func (ts *templateSet) warmMayBoot() bool {
	if ts == nil || ts.failures > 0 {
		return true
	}
	r, _ := ts.counts()
	return r == len(ts.slots)
}

// counts returns the ready and building templates (0, 0 for nil).
func (ts *templateSet) counts() (ready, building int) {
	if ts == nil {
		return 0, 0
	}
	for _, t := range ts.slots {
		switch {
		case t == nil:
		case t.ready:
			ready++
		default:
			building++
		}
	}
	return ready, building
}

func (ts *templateSet) wake() {
	select {
	case ts.kick <- struct{}{}:
	default:
	}
}

// builtForTemplate is the specMarker record of a template of pool c.
func builtForTemplate(c PoolConfig, tartVersion string) builtFor {
	b := builtForPool(c)
	b.TartVersion = tartVersion
	return b
}

// adoptTemplates runs at Start, after adopt: it keeps the suspended
// templates of ModeResume pools whose record matches the pool's config
// and the tart version, and deletes every other template of ours
// (another shape, image or tart version, not suspended, a pool not in
// resume mode, a duplicate for a slot).
func (p *Pool) adoptTemplates(ctx context.Context) error {
	version := ""
	for _, ps := range p.pools {
		if ps.tmpl != nil {
			v, err := p.client.Version(ctx)
			if err != nil {
				return fmt.Errorf("read tart version for templates: %w", err)
			}
			version = v
			break
		}
	}
	vms, err := p.client.List(ctx)
	if err != nil {
		return fmt.Errorf("list vms: %w", err)
	}
	p.mu.Lock()
	for _, ps := range p.pools {
		if ps.tmpl != nil {
			ps.tmpl.version = version
		}
	}
	p.mu.Unlock()
	for _, v := range vms {
		n, ok := ParseVMName(v.Name)
		if !v.IsLocal() || !ok || n.Kind != KindTemplate {
			continue
		}
		ps := p.pools[n.Pool]
		if ps == nil && p.opts.KeepUnknownPools {
			continue
		}
		reason := p.adoptTemplate(v, n, ps, version)
		if reason == nil {
			continue
		}
		p.log.Info("deleting template", "vm_name", v.Name, "reason", reason.Error())
		if err := p.client.Destroy(ctx, v.Name, p.opts.StopTimeout); err != nil {
			p.log.Warn("failed to delete template", "vm_name", v.Name, "error", err)
			continue
		}
		emit(Event{Type: EventTemplate, Pool: n.Pool, VM: v.Name, Message: "Deleted template " + v.Name + ": " + reason.Error()}, p.opts.OnEvent)
	}
	return nil
}

// adoptTemplate keeps one template found at Start, or says why not.
func (p *Pool) adoptTemplate(v VMInfo, n VMName, ps *poolState, version string) error {
	switch {
	case ps == nil:
		return fmt.Errorf("pool %q is not configured", n.Pool)
	case ps.tmpl == nil:
		return fmt.Errorf("pool %s is not in resume mode", n.Pool)
	case v.State != StateSuspended:
		return fmt.Errorf("it is %s, not suspended", v.State)
	case n.Slot >= len(ps.tmpl.slots):
		return fmt.Errorf("slot %d is beyond max_vms", n.Slot)
	}
	built, err := readBuiltFor(p.client.VMDir(v.Name))
	if err != nil {
		return err
	}
	if err := built.mismatch(builtForTemplate(ps.cfg, version)); err != nil {
		return err
	}
	if mac, err := p.client.macAddress(v.Name); err != nil || mac != p.slots.mac(n.Slot) {
		return fmt.Errorf("its mac is not slot %d's", n.Slot)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if ps.tmpl.slots[n.Slot] != nil {
		return fmt.Errorf("slot %d already has a template", n.Slot)
	}
	ps.tmpl.slots[n.Slot] = &template{name: v.Name, ready: true}
	p.log.Info("adopted template", "pool", ps.cfg.Name, "vm_name", v.Name, "slot", n.Slot)
	emit(Event{Type: EventTemplate, Pool: ps.cfg.Name, VM: v.Name, Message: "Adopted template " + v.Name}, p.opts.OnEvent)
	return nil
}

// templateWorker builds the missing templates of a ModeResume pool, each
// in its own slot while that slot is free and no task waits for one, and
// backs off after failures. It runs until ctx ends.
func (p *Pool) templateWorker(ctx context.Context, ps *poolState) {
	defer p.wg.Done()
	ts := ps.tmpl
	for {
		changed := p.slots.nextChange()
		var wait time.Duration
		p.mu.Lock()
		if d := time.Until(ts.retryAt); d > 0 {
			wait = d
		} else if ctx.Err() == nil && !p.closed {
			for i, t := range ts.slots {
				if t != nil || p.slots.waiting() > 0 {
					continue
				}
				name := templateVMName(ps.cfg.Name, i)
				slot, err := p.slots.claim(i, name)
				if err != nil {
					continue // in use
				}
				bctx, cancel := context.WithCancel(ctx)
				t := &template{name: name, stop: cancel}
				ts.slots[i] = t
				p.wg.Add(1)
				go p.buildTemplate(bctx, cancel, ps, t, slot)
			}
		}
		p.mu.Unlock()
		if wait <= 0 {
			wait = time.Hour // woken by kick or a freed slot
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-ts.kick:
		case <-changed:
		case <-timer.C:
		}
		timer.Stop()
		if ctx.Err() != nil {
			return
		}
	}
}

// buildTemplate boots t in slot with --suspendable, waits for its agent,
// suspends it and frees the slot. A failed or cancelled build leaves
// nothing behind.
func (p *Pool) buildTemplate(ctx context.Context, cancel context.CancelFunc, ps *poolState, t *template, slot Slot) {
	defer p.wg.Done()
	defer cancel()
	ts := ps.tmpl
	vm := &VM{Name: t.name, Slot: slot, Image: ps.cfg.Image, Pool: ps.cfg.Name}
	start := time.Now()
	err := p.buildTemplateSteps(ctx, ps, vm)
	p.mu.Lock()
	if err == nil && !p.closed && ctx.Err() == nil {
		t.ready, t.stop = true, nil
		ts.succeeded()
		p.mu.Unlock()
		p.slots.release(slot.Index)
		d := time.Since(start)
		p.log.Info("template ready", "pool", ps.cfg.Name, "vm_name", t.name, "slot", slot.Index, "duration", d)
		emit(Event{Type: EventTemplate, Pool: ps.cfg.Name, VM: t.name, Duration: d,
			Message: fmt.Sprintf("Template %s for slot %d suspended and ready in %.1fs", t.name, slot.Index, d.Seconds())}, p.opts.OnEvent)
		return
	}
	if ts.slots[slot.Index] == t {
		ts.slots[slot.Index] = nil
	}
	failed := err != nil && ctx.Err() == nil
	var retry time.Duration
	if failed {
		retry = ts.failed(err, p.opts.BackoffMin, p.opts.BackoffMax)
	}
	p.mu.Unlock()
	p.discard(vm, "template build did not complete")
	ts.wake()
	if failed {
		p.log.Error("failed to build template", "pool", ps.cfg.Name, "vm_name", t.name, "retry_in", retry, "error", err)
		emit(Event{Type: EventFailed, Pool: ps.cfg.Name, VM: t.name, Err: err, RetryIn: retry,
			Message: fmt.Sprintf("Failed to build template (retrying in %s): %v", retry.Round(time.Second), err)}, p.opts.OnEvent)
	}
}

// buildTemplateSteps boots the template like a warm VM but --suspendable,
// records what it was built for (with the tart version), and suspends it.
func (p *Pool) buildTemplateSteps(ctx context.Context, ps *poolState, vm *VM) error {
	spec := ps.cfg.VMSpec
	spec.Run.Suspendable = true
	if err := p.boot(ctx, vm, spec, p.opts.OnEvent); err != nil {
		return err
	}
	p.mu.Lock()
	version := ps.tmpl.version
	p.mu.Unlock()
	if err := writeBuiltFor(p.client.VMDir(vm.Name), builtForTemplate(ps.cfg, version)); err != nil {
		return fmt.Errorf("record spec of template %s: %w", vm.Name, err)
	}
	sctx, cancel := context.WithTimeout(ctx, p.opts.BootTimeout)
	defer cancel()
	if err := p.client.Suspend(sctx, vm.Name, vm.Run); err != nil {
		return err
	}
	return nil
}

// preemptTemplateBuildLocked cancels one template build for a task
// waiting for a slot (the build frees its slot when it ends); p.mu held.
func (p *Pool) preemptTemplateBuildLocked() bool {
	for _, name := range p.order {
		ps := p.pools[name]
		if ps.tmpl == nil {
			continue
		}
		for _, t := range ps.tmpl.slots {
			if t != nil && !t.ready && t.stop != nil {
				t.stop()
				t.stop = nil
				p.log.Info("cancelling template build for a waiting task", "pool", name, "vm_name", t.name)
				return true
			}
		}
	}
	return false
}

// closeTemplatesLocked cancels template builds and returns the templates
// to delete (none when keep is set); p.mu held.
func (p *Pool) closeTemplatesLocked(keep bool) []string {
	var names []string
	for _, name := range p.order {
		ts := p.pools[name].tmpl
		if ts == nil {
			continue
		}
		for i, t := range ts.slots {
			switch {
			case t == nil:
			case !t.ready:
				if t.stop != nil {
					t.stop()
				}
			case !keep:
				names = append(names, t.name)
				ts.slots[i] = nil
			}
		}
	}
	return names
}

// templateFor returns the ready template of ps for slot index, or "".
func (p *Pool) templateFor(ps *poolState, index int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ps.tmpl == nil || index < 0 || index >= len(ps.tmpl.slots) {
		return ""
	}
	if t := ps.tmpl.slots[index]; t != nil && t.ready {
		return t.name
	}
	return ""
}

// tryAcquireResumable takes a free slot whose template is ready, so that
// a start resumes rather than boots when some slot's template is missing
// (building, or failed). Like Slots.tryAcquire it never goes ahead of a
// waiting acquire.
func (p *Pool) tryAcquireResumable(ps *poolState, name string) (Slot, bool) {
	if ps == nil || ps.tmpl == nil || p.slots.waiting() > 0 {
		return Slot{}, false
	}
	p.mu.Lock()
	var ready []int
	for i, t := range ps.tmpl.slots {
		if t != nil && t.ready {
			ready = append(ready, i)
		}
	}
	p.mu.Unlock()
	for _, i := range ready {
		if slot, err := p.slots.claim(i, name); err == nil {
			return slot, true
		}
	}
	return Slot{}, false
}

// bootOrResume makes a warm VM ready: resumed from its slot's template
// when there is one (cold boot if that fails), else booted.
func (p *Pool) bootOrResume(ctx context.Context, ps *poolState, vm *VM) error {
	if ps.tmpl != nil {
		resumed, _, err := p.tryResume(ctx, ps, vm, p.opts.OnEvent)
		if resumed || err != nil {
			return err
		}
	}
	return p.boot(ctx, vm, ps.cfg.VMSpec, p.opts.OnEvent)
}

// tryResume resumes vm (which holds its slot) from the slot's template.
// It reports resumed=false with why when there is no template or the
// resume failed: the clone is then deleted (the slot stays held), the
// template is rebuilt in the background, and the caller cold-boots. err
// is only set when ctx ended.
func (p *Pool) tryResume(ctx context.Context, ps *poolState, vm *VM, events EventFunc) (resumed bool, why string, err error) {
	tmpl := p.templateFor(ps, vm.Slot.Index)
	if tmpl == "" {
		return false, fmt.Sprintf("pool %s has no template ready for slot %d", ps.cfg.Name, vm.Slot.Index), nil
	}
	rerr := p.resume(ctx, ps, vm, tmpl, events)
	if rerr == nil {
		return true, "", nil
	}
	if ctx.Err() != nil {
		return false, "", rerr
	}
	// Clean up the clone but keep the slot for the cold boot.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.opts.StopTimeout+30*time.Second)
	defer cancel()
	if vm.Run != nil {
		_ = vm.Run.Stop(cctx, p.opts.StopTimeout)
		vm.Run = nil
	}
	if err := p.client.Destroy(cctx, vm.Name, p.opts.StopTimeout); err != nil {
		return false, "", fmt.Errorf("delete vm %s after a failed resume: %w", vm.Name, err)
	}
	p.templateFailed(ps, vm.Slot.Index, tmpl)
	why = fmt.Sprintf("resuming from template %s failed (%v); the template is rebuilt in the background", tmpl, rerr)
	p.log.Warn("resume from template failed; cold starting", "pool", ps.cfg.Name, "vm_name", vm.Name, "template", tmpl, "error", rerr)
	events(Event{Type: EventResumeFail, Pool: ps.cfg.Name, VM: vm.Name, Err: rerr, Message: "Resume failed: " + why})
	return false, why, nil
}

// resume clones template tmpl to vm.Name (the clone keeps the template's
// mac, the slot's, and its snapshot), runs it (tart resumes from the
// snapshot), waits for the agent and runs the pool's ResumeCommand.
func (p *Pool) resume(ctx context.Context, ps *poolState, vm *VM, tmpl string, events EventFunc) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, p.opts.BootTimeout)
	defer cancel()
	if err := p.client.Clone(ctx, tmpl, vm.Name); err != nil {
		return err
	}
	if mac, err := p.client.macAddress(vm.Name); err != nil || mac != vm.Slot.MAC {
		//nolint:errorlint // err is nil when the mac differs, which %w would print as %!w(<nil>)
		return fmt.Errorf("clone of template %s does not have slot %d's mac (%s, %v)", tmpl, vm.Slot.Index, mac, err)
	}
	if n, _ := ParseVMName(vm.Name); n.Kind == KindPool {
		// A warm VM: recorded like a booted one, for adoption after a
		// restart.
		if err := writeBuiltFor(p.client.VMDir(vm.Name), builtForPool(ps.cfg)); err != nil {
			return fmt.Errorf("record spec of warm vm %s: %w", vm.Name, err)
		}
	}
	emit(Event{Type: EventResuming, Pool: ps.cfg.Name, VM: vm.Name, Message: "Resuming VM " + vm.Name + " from template " + tmpl}, events)
	if err := p.runUntilReady(ctx, vm, ps.cfg.Run); err != nil {
		return err
	}
	p.afterResume(ctx, ps, vm, events)
	d := time.Since(start)
	p.mu.Lock()
	observe(&ps.est.resume, d)
	p.mu.Unlock()
	emit(Event{Type: EventResumed, Pool: ps.cfg.Name, VM: vm.Name, Duration: d, Path: PathResumed,
		Message: fmt.Sprintf("Resumed VM %s from template %s in %.1fs (path resumed)", vm.Name, tmpl, d.Seconds())}, events)
	return nil
}

// afterResume runs the pool's ResumeCommand (the clock sync: the guest's
// clock stands where it was when the template was suspended). A failure
// is reported as an event and logged; the VM is still handed out.
func (p *Pool) afterResume(ctx context.Context, ps *poolState, vm *VM, events EventFunc) {
	if len(ps.cfg.ResumeCommand) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	code, err := p.client.Exec(cctx, vm.Name, ps.cfg.ResumeCommand, ExecOptions{})
	if err == nil && code == 0 {
		return
	}
	if err == nil {
		err = fmt.Errorf("exit code %d", code)
	}
	p.log.Warn("resume command failed; the guest clock may lag", "vm_name", vm.Name, "error", err)
	emit(Event{Type: EventResumed, Pool: ps.cfg.Name, VM: vm.Name, Err: err,
		Message: "Clock sync after resume failed (" + err.Error() + "): the guest clock may lag"}, events)
}

// templateFailed drops a template whose clone did not resume and deletes
// it in the background; the template worker builds a new one once the
// slot is free.
func (p *Pool) templateFailed(ps *poolState, index int, name string) {
	p.mu.Lock()
	if t := ps.tmpl.slots[index]; t != nil && t.name == name {
		ps.tmpl.slots[index] = nil
	}
	closed := p.closed
	if !closed {
		p.wg.Add(1)
	}
	p.mu.Unlock()
	if closed {
		return
	}
	go func() {
		defer p.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), p.opts.StopTimeout+30*time.Second)
		defer cancel()
		if err := p.client.Destroy(ctx, name, p.opts.StopTimeout); err != nil && !errors.Is(err, ErrVMNotFound) {
			p.log.Warn("failed to delete template that did not resume", "vm_name", name, "error", err)
		} else {
			emit(Event{Type: EventTemplate, Pool: ps.cfg.Name, VM: name, Message: "Deleted template " + name + " after a failed resume; it is rebuilt"}, p.opts.OnEvent)
		}
		ps.tmpl.wake()
	}()
}
