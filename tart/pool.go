// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tartnomad/nomad-driver-tart/internal/backoff"
	"github.com/tartnomad/nomad-driver-tart/internal/waitgroup"
)

// ErrPoolEmpty is returned by Claim when no ready warm VM matches.
var ErrPoolEmpty = errors.New("no ready warm vm")

// ErrPoolClosed is returned after Shutdown or Detach.
var ErrPoolClosed = errors.New("pool is shut down")

// ClaimedMarker is the file a claimed warm VM gets in its VM directory. A
// Pool never adopts or deletes a VM carrying it: the VM belongs to a task.
const ClaimedMarker = "ntart-claimed"

// VMSpec describes the VM a caller wants.
type VMSpec struct {
	// Pool, when set, names the warm pool to claim from; otherwise the
	// first pool that fits is used. Either way a warm VM is handed out only
	// when its pool fits the rest of the spec (see PoolConfig.Fits): same
	// image, the spec's non-zero resources, identical run options.
	Pool string
	// Image is the source for tart clone (remote OCI reference or local VM).
	Image string
	// CPU, MemoryMiB and DiskSizeGB are applied with tart set (0 = image's).
	CPU, MemoryMiB, DiskSizeGB int
	// Run are the tart run options (dirs, network). Shares and network are
	// fixed at boot, so a warm VM matches only with equal run options.
	Run RunOptions
}

func (s VMSpec) set() SetOptions {
	return SetOptions{CPU: s.CPU, MemoryMiB: s.MemoryMiB, DiskSizeGB: s.DiskSizeGB}
}

// PoolConfig is one warm pool: Size VMs of one spec kept booted and ready
// and, in ModeResume, a suspended template per slot (see template.go).
type PoolConfig struct {
	Name string
	Size int
	VMSpec
	// Mode is ModeBoot (default) or ModeResume.
	Mode PoolMode
	// ResumeCommand is the guest command run in a VM resumed from a
	// template before it is handed out (the clock sync; nil runs none).
	// Its failure is reported, not fatal.
	ResumeCommand []string
}

// PoolOptions tune a Pool. Zero values take the defaults shown.
type PoolOptions struct {
	// Logger defaults to the client's logger.
	Logger hclog.Logger
	// OnEvent receives every event of the pool and of provisioning calls.
	OnEvent EventFunc
	// BootTimeout bounds clone + set + run + agent readiness (default 5m).
	BootTimeout time.Duration
	// ReadyInterval is the agent polling interval (default 1s).
	ReadyInterval time.Duration
	// ReadyCommand is the guest command of the readiness probe (default
	// ["true"]).
	ReadyCommand []string
	// StopTimeout is passed to tart stop (default 10s).
	StopTimeout time.Duration
	// BackoffMin and BackoffMax bound the exponential retry delay after a
	// failed pull or boot (defaults 2s and 5m).
	BackoffMin, BackoffMax time.Duration
	// Attached starts tart run in the caller's session instead of its own.
	// The default (detached) keeps VMs running if the caller is killed.
	Attached bool
	// SlotWaitTimeout bounds how long StartVM (and Provision's cold start)
	// waits for a free slot; the start then fails with ErrNoSlot. Zero
	// waits as long as the caller's context allows (which also ends in
	// ErrNoSlot while waiting). The boot itself is not bounded by it.
	SlotWaitTimeout time.Duration
	// Pull options for EnsureImage (registry flags).
	Pull PullOptions
	// AdoptGracePeriod protects another process's warm boot at Start: an
	// unclaimed warm VM that runs but does not answer yet is deleted only
	// once its directory is older than this; until then it is left alone,
	// keeps its slot, and is re-examined every ReadyInterval (adopted once
	// ready). Default BootTimeout, the longest a boot can take.
	AdoptGracePeriod time.Duration
	// ExpectedBoot and ExpectedResume are the first estimates of a boot
	// and of a resume from a template (defaults 30s and 5s), replaced by
	// measured ones; Provision compares them to pick the soonest-ready VM.
	ExpectedBoot, ExpectedResume time.Duration
	// KeepUnknownPools leaves unclaimed warm VMs of pools this Pool does
	// not configure alone at Start (instead of deleting them), for several
	// pool managers sharing one TART_HOME, each with its own pool names.
	KeepUnknownPools bool
}

func (o *PoolOptions) defaults(c *Client) {
	if o.Logger == nil {
		o.Logger = c.Logger()
	}
	if o.BootTimeout <= 0 {
		o.BootTimeout = 5 * time.Minute
	}
	if o.ReadyInterval <= 0 {
		o.ReadyInterval = time.Second
	}
	if len(o.ReadyCommand) == 0 {
		o.ReadyCommand = []string{"true"}
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = 10 * time.Second
	}
	if o.AdoptGracePeriod <= 0 {
		o.AdoptGracePeriod = o.BootTimeout
	}
	if o.ExpectedBoot <= 0 {
		o.ExpectedBoot = 30 * time.Second
	}
	if o.ExpectedResume <= 0 {
		o.ExpectedResume = 5 * time.Second
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = 2 * time.Second
	}
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = max(5*time.Minute, o.BackoffMin)
	}
}

// VM is a running VM handed out by a Pool. The holder owns it until it
// calls Pool.Release.
type VM struct {
	Name  string
	Slot  Slot
	Image string
	// Pool is the warm pool it came from ("" for a cold start).
	Pool string
	// Warm is true when it was claimed already booted.
	Warm bool
	// Path is how it was started: PathWarm, PathResumed or PathCold.
	Path StartPath
	// Waited is how long its Provision took (slot wait included).
	Waited time.Duration
	// Run is its tart run process when this process started it (nil for
	// VMs adopted after a restart: use Client.Stop for those).
	Run *RunHandle
	// ReadyAt is when the guest agent first answered.
	ReadyAt time.Time
}

// warmVM is a pool entry: booting (elem nil) or ready (in the ready list).
type warmVM struct {
	vm     *VM
	elem   *list.Element
	cancel context.CancelFunc // cancels the boot; nil once ready
	// unwatch stops the crash watcher when the VM leaves the pool.
	unwatch chan struct{}
	// startedAt is when its boot began (zero for a VM left alone).
	startedAt time.Time
	// waiter, when set, is the Provision that reserved this booting VM:
	// it gets true and the VM when the boot succeeds, false otherwise.
	waiter chan bool
}

type poolState struct {
	cfg      PoolConfig
	ready    *list.List // of *warmVM, oldest first
	booting  map[string]*warmVM
	failures int
	retryAt  time.Time
	lastErr  error
	kick     chan struct{}
	est      estimates
	// tmpl is the pool's templates (nil unless ModeResume).
	tmpl *templateSet
}

func (ps *poolState) deficit() int { return ps.cfg.Size - ps.ready.Len() - len(ps.booting) }

// PoolStats is a snapshot of one warm pool.
type PoolStats struct {
	Name    string
	Size    int
	Ready   int
	Booting int
	// Failures is the number of consecutive failed boots (0 after a
	// success); LastError the latest failure.
	Failures  int
	LastError error
	// Mode is the pool's mode; TemplatesReady and TemplatesBuilding count
	// its suspended templates (ModeResume).
	Mode                              PoolMode
	TemplatesReady, TemplatesBuilding int
}

// Pool keeps warm VMs booted for each configured pool and provisions VMs
// (claiming a warm one or cold-starting) within the host's Slots. Create it
// with NewPool, call Start once, and Shutdown at the end.
type Pool struct {
	client *Client
	slots  *Slots
	opts   PoolOptions
	log    hclog.Logger

	// pullMu serializes EnsureImage per image, so concurrent boots pull an
	// image once.
	pullMu  sync.Mutex
	pulling map[string]chan struct{}

	mu    sync.Mutex
	pools map[string]*poolState
	// health is set when tart reported the VM limit while fewer VMs ran
	// than Apple allows (see Health); cleared by the next good boot.
	health  error
	order   []string // pool names in config order
	closed  bool
	started bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// NewPool validates the pool configs and returns an unstarted Pool. An
// empty pools list gives a Pool that only cold-starts VMs.
func NewPool(client *Client, slots *Slots, pools []PoolConfig, opts PoolOptions) (*Pool, error) {
	if client == nil || slots == nil {
		return nil, errors.New("new pool: client and slots are required")
	}
	opts.defaults(client)
	p := &Pool{client: client, slots: slots, opts: opts, log: opts.Logger.Named("pool"), pools: map[string]*poolState{}, pulling: map[string]chan struct{}{}}
	var errs []error
	total := 0
	for i, pc := range pools {
		if err := ValidPoolName(pc.Name); err != nil {
			errs = append(errs, fmt.Errorf("pools[%d].name: %w", i, err))
			continue
		}
		if _, dup := p.pools[pc.Name]; dup {
			errs = append(errs, fmt.Errorf("pools[%d].name: duplicate pool %q", i, pc.Name))
		}
		if pc.Image == "" {
			errs = append(errs, fmt.Errorf("pools[%d].image: must be set", i))
		}
		if pc.Size < 0 {
			errs = append(errs, fmt.Errorf("pools[%d].size: %d is negative", i, pc.Size))
		}
		if pc.CPU < 0 || pc.MemoryMiB < 0 || pc.DiskSizeGB < 0 {
			errs = append(errs, fmt.Errorf("pools[%d]: cpu, memory and disk_size must not be negative", i))
		}
		if _, err := pc.Run.Args("x"); err != nil {
			errs = append(errs, fmt.Errorf("pools[%d].%w", i, err))
		}
		if err := pc.Mode.valid(); err != nil {
			errs = append(errs, fmt.Errorf("pools[%d].mode: %w", i, err))
		}
		total += pc.Size
		ps := &poolState{cfg: pc, ready: list.New(), booting: map[string]*warmVM{}, kick: make(chan struct{}, 1),
			est: estimates{boot: opts.ExpectedBoot, resume: opts.ExpectedResume}}
		if pc.Mode == ModeResume {
			ps.tmpl = newTemplateSet(slots.Max())
		}
		p.pools[pc.Name] = ps
		p.order = append(p.order, pc.Name)
	}
	if total > slots.Max() {
		p.log.Warn("warm pools want more vms than there are slots; pools fill only free slots",
			"pool_vms", total, "max_vms", slots.Max())
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("new pool: %w", err)
	}
	return p, nil
}

// Slots returns the slots the pool works in.
func (p *Pool) Slots() *Slots { return p.slots }

// Client returns the pool's tart client.
func (p *Pool) Client() *Client { return p.client }

// Start rebuilds state from the VMs on the host, then starts the refill
// workers, which run until Shutdown, Detach or ctx ends:
//   - running VMs of ours (task VMs and claimed pool VMs) keep their slots,
//     found from their MAC address;
//   - running, ready, unclaimed warm VMs of configured pools are adopted
//     when their SpecMarker record equals the pool's current config;
//     those built for another config (or without a valid record) are
//     deleted and replaced;
//   - running unclaimed warm VMs that do not answer yet and are younger
//     than AdoptGracePeriod are left alone (another, still-alive process
//     may be booting them) and keep their slots, whatever their record
//     says; they are re-examined every ReadyInterval, judged as above
//     once ready, and deleted once older than the grace period or
//     stopped;
//   - other unclaimed warm VMs of ours (stopped, not ready and old,
//     unknown pool, built for another config, surplus) are deleted;
//   - VMs not named by our convention are never touched.
func (p *Pool) Start(ctx context.Context) error {
	p.mu.Lock()
	if p.closed || p.started {
		p.mu.Unlock()
		return fmt.Errorf("start pool: %w", ErrPoolClosed)
	}
	p.started = true
	p.mu.Unlock()

	pending, err := p.adopt(ctx)
	if err == nil {
		err = p.adoptTemplates(ctx)
	}
	if err != nil {
		p.mu.Lock()
		p.started = false // Start may be retried
		p.mu.Unlock()
		return fmt.Errorf("start pool: %w", err)
	}
	// The workers follow ctx as well as Shutdown.
	wctx, cancel := context.WithCancel(ctx)
	p.mu.Lock()
	if p.closed {
		// Shutdown ran while adopting.
		p.mu.Unlock()
		cancel()
		return fmt.Errorf("start pool: %w", ErrPoolClosed)
	}
	p.cancel = cancel
	for _, name := range p.order {
		ps := p.pools[name]
		p.wg.Add(1)
		go p.worker(wctx, ps)
		if ps.tmpl != nil {
			p.wg.Add(1)
			go p.templateWorker(wctx, ps)
		}
	}
	if len(pending) > 0 {
		p.wg.Add(1)
		go p.recheck(wctx, pending)
	}
	p.mu.Unlock()
	p.slots.SetPreempter(p.preempt)
	return nil
}

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
		p.slots.ReleaseOwner(f.v.Name)
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
		if p.slots.Waiting() > 0 {
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
		p.slots.ReleaseOwner(f.v.Name)
		f.has = false
	}
}

// restoreSlot marks the slot of a running VM of ours as held.
func (p *Pool) restoreSlot(name string, n VMName) (Slot, bool) {
	idx, ok := -1, false
	if mac, err := p.client.MACAddress(name); err == nil {
		idx, ok = p.slots.SlotForMAC(mac)
	}
	if !ok && n.Kind == KindPool {
		idx, ok = n.Slot, true
	}
	if !ok {
		p.log.Warn("running vm of ours has no slot mac; it is not counted", "vm_name", name)
		return Slot{}, false
	}
	s, err := p.slots.Claim(idx, name)
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
		slot, ok = p.slots.OwnerSlot(v.Name)
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

// worker keeps one pool filled. It boots VMs only into free slots
// (TryAcquire), never ahead of a waiting task, and backs off after failures.
func (p *Pool) worker(ctx context.Context, ps *poolState) {
	defer p.wg.Done()
	for {
		changed := p.slots.Changed()
		var wait time.Duration
		p.mu.Lock()
		if d := time.Until(ps.retryAt); d > 0 {
			wait = d
		} else if ps.deficit() > 0 && ctx.Err() == nil && ps.tmpl.warmMayBoot() {
			// In ModeResume templates come first (warm VMs are resumed
			// from them) unless building them fails.
			if slot, ok := p.slots.TryAcquire("pool:" + ps.cfg.Name); ok {
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
	name := PoolVMName(ps.cfg.Name, slot.Index)
	p.slots.SetOwner(slot.Index, name)
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
		ps.failures, ps.lastErr, ps.retryAt = 0, nil, time.Time{}
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
		ps.failures++
		ps.lastErr = err
		retry = backoff.Exponential{Min: p.opts.BackoffMin, Max: p.opts.BackoffMax}.Jittered(ps.failures)
		ps.retryAt = time.Now().Add(retry)
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
	ps.failures++
	ps.lastErr = err
	retry := backoff.Exponential{Min: p.opts.BackoffMin, Max: p.opts.BackoffMax}.Jittered(ps.failures)
	ps.retryAt = time.Now().Add(retry)
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
	p.slots.Release(vm.Slot.Index)
}

func (p *Pool) kickPool(ps *poolState) {
	select {
	case ps.kick <- struct{}{}:
	default:
	}
}

// preempt gives up one warm VM's slot for a waiting Acquire: a ready VM
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
	if err := p.client.SetMACAddress(vm.Name, vm.Slot.MAC); err != nil {
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

// Release stops and deletes a VM handed out by Claim, Provision or StartVM
// (or found with Lookup) and frees its slot. A VM already gone is not an
// error; the slot is freed even when deleting fails.
func (p *Pool) Release(ctx context.Context, vm *VM) error {
	defer p.slots.Release(vm.Slot.Index)
	if err := p.client.Destroy(ctx, vm.Name, p.opts.StopTimeout); err != nil {
		return fmt.Errorf("release vm %s: %w", vm.Name, err)
	}
	emit(Event{Type: EventDeleted, Pool: vm.Pool, VM: vm.Name, Message: "Deleted VM " + vm.Name}, p.opts.OnEvent)
	return nil
}

// Lookup returns a VM whose slot Start restored (a task VM after a
// restart), so the caller can Release it; ok is false if no slot is held
// under that name.
func (p *Pool) Lookup(name string) (*VM, bool) {
	slot, ok := p.slots.OwnerSlot(name)
	if !ok {
		return nil, false
	}
	n, _ := ParseVMName(name)
	return &VM{Name: name, Slot: slot, Pool: n.Pool, Warm: n.Kind == KindPool}, true
}

// Stats returns a snapshot of every pool, in config order.
func (p *Pool) Stats() []PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]PoolStats, 0, len(p.order))
	for _, name := range p.order {
		ps := p.pools[name]
		st := PoolStats{Name: name, Size: ps.cfg.Size, Ready: ps.ready.Len(), Booting: len(ps.booting),
			Failures: ps.failures, LastError: ps.lastErr, Mode: ps.cfg.Mode.orDefault()}
		st.TemplatesReady, st.TemplatesBuilding = ps.tmpl.counts()
		out = append(out, st)
	}
	return out
}

// Shutdown stops the refill workers, cancels boots in progress and deletes
// every warm VM the pool still holds (claimed VMs are the caller's). It
// waits for all pool goroutines; ctx bounds the deletions.
func (p *Pool) Shutdown(ctx context.Context) error {
	return p.close(ctx, false)
}

// Detach stops the refill workers and cancels boots in progress (those VMs
// are deleted), like Shutdown, but leaves every ready warm VM running and
// unclaimed, so that the next pool on the same TART_HOME adopts it at
// Start. Use it when the process is about to exit and another will take
// over (a restarting plugin). Their slots stay held; Claim, Provision and
// StartVM fail with ErrPoolClosed afterwards, Release still works. It waits
// for all pool goroutines; ctx bounds the wait. A later Shutdown does
// nothing.
func (p *Pool) Detach(ctx context.Context) error {
	return p.close(ctx, true)
}

// close is Shutdown (keepReady false) and Detach (keepReady true).
func (p *Pool) close(ctx context.Context, keepReady bool) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	if p.cancel != nil {
		p.cancel()
	}
	var warm []*warmVM
	kept := 0
	for _, name := range p.order {
		ps := p.pools[name]
		for e := ps.ready.Front(); e != nil; e = e.Next() {
			w := e.Value.(*warmVM)
			w.elem = nil
			close(w.unwatch)
			if keepReady {
				kept++
				continue
			}
			warm = append(warm, w)
		}
		ps.ready.Init()
		for _, w := range ps.booting {
			if w.cancel != nil {
				w.cancel()
			}
		}
	}
	// Suspended templates outlive a Detach (the next pool adopts them);
	// Shutdown deletes them like warm VMs.
	templates := p.closeTemplatesLocked(keepReady)
	p.mu.Unlock()
	p.slots.SetPreempter(nil)
	if keepReady {
		p.log.Info("detached from warm vms; they stay running for the next pool to adopt", "ready", kept)
	}

	var mu sync.Mutex
	var errs []error
	var dwg sync.WaitGroup
	for _, w := range warm {
		dwg.Add(1)
		go func() {
			defer dwg.Done()
			if err := p.Release(ctx, w.vm); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	for _, name := range templates {
		dwg.Go(func() {
			if err := p.client.Destroy(ctx, name, p.opts.StopTimeout); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("delete template %s: %w", name, err))
				mu.Unlock()
			}
		})
	}
	dwg.Wait()
	if err := waitgroup.Wait(ctx, &p.wg); err != nil {
		errs = append(errs, fmt.Errorf("wait for pool goroutines: %w", err))
	}
	return errors.Join(errs...)
}
