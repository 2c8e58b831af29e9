// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tartnomad/nomad-driver-tart/internal/waitgroup"
)

// errPoolEmpty is returned by claim when no ready warm VM matches.
var errPoolEmpty = errors.New("no ready warm vm")

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
	// Logger defaults to the client's logger. The pool logs with the
	// attribute logger=pool.
	Logger *slog.Logger
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
	// SlotWaitTimeout bounds how long Provision's start in a slot (a
	// resume or a cold boot) waits for a free slot; the start then fails with ErrNoSlot. Zero
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
		o.Logger = c.logger
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
	cfg     PoolConfig
	ready   *list.List // of *warmVM, oldest first
	booting map[string]*warmVM
	retryState
	kick chan struct{}
	est  estimates
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
	log    *slog.Logger

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
	p := &Pool{client: client, slots: slots, opts: opts, log: opts.Logger.With("logger", "pool"), pools: map[string]*poolState{}, pulling: map[string]chan struct{}{}}
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

// Start rebuilds state from the VMs on the host, then starts the refill
// workers, which run until Shutdown, Detach or ctx ends:
//   - running VMs of ours (task VMs and claimed pool VMs) keep their slots,
//     found from their MAC address;
//   - running, ready, unclaimed warm VMs of configured pools are adopted
//     when their ntart-spec.json record equals the pool's current config;
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
	p.slots.setPreempter(p.preempt)
	return nil
}

// Release stops and deletes a VM handed out by Provision (or found with
// Lookup) and frees its slot. A VM already gone is not an
// error; the slot is freed even when deleting fails.
func (p *Pool) Release(ctx context.Context, vm *VM) error {
	defer p.slots.release(vm.Slot.Index)
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
	slot, ok := p.slots.ownerSlot(name)
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
// over (a restarting plugin). Their slots stay held; Provision fails with
// ErrPoolClosed afterwards, Release still works. It waits
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
	p.slots.setPreempter(nil)
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
