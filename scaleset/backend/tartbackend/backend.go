// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tartbackend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tartnomad/nomad-driver-tart/internal/supervisor"
	"github.com/tartnomad/nomad-driver-tart/internal/waitgroup"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
	"github.com/tartnomad/nomad-driver-tart/tart"
)

// Backend runs each runner in its own Tart VM. Lifecycle per runner:
// claim a warm VM from the pool (or cold-start one: clone, set, slot MAC,
// run, wait for the guest agent), then `tart exec -i <vm> <runner_command>`
// under a detached supervisor (internal/supervisor, the same one the Nomad
// driver uses) fed the JIT config through a pipe. The runner survives a
// restart of the service: its record and the supervisor's state live in
// the VM's directory, and New adopts it. RemoveRunner has the supervisor
// kill the runner command, then stops and deletes the VM and frees its
// slot.
type Backend struct {
	cfg      Config
	scaleSet string
	poolName string
	log      *slog.Logger
	client   *tart.Client
	pool     *tart.Pool
	self     string // the supervisor binary; "" = own executable

	// ctx owns the start-up loop; Shutdown cancels it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	started  chan struct{} // closed once the pool has started
	tried    chan struct{} // closed once the first start attempt ended
	startErr error         // set before started closes, if it never will succeed

	mu      sync.Mutex
	runners map[string]*runner // by resource ID (VM name)
	// leftovers are runner VMs of an earlier process deleted at start,
	// by VM name, reported as failed until the service removes them.
	leftovers map[string]backend.Runner
	closed    bool
	// retryErr is the latest failed pool start while startLoop retries.
	retryErr error

	// warmStarts, resumedStarts and coldStarts count runner VMs by start
	// path: claimed from the pool, resumed from a template, booted on
	// demand (WarmPoolStats).
	warmStarts, resumedStarts, coldStarts atomic.Uint64
}

type runner struct {
	name      string
	runnerID  int // GitHub runner ID; 0 if not recorded
	vm        *tart.VM
	createdAt time.Time
	// sup is the runner command's supervisor, started by this process or
	// adopted after a restart; its state dir is in the VM's directory.
	sup *supervisor.Handle
	// state is the last observed state; exited and failed are final.
	state  backend.State
	reason string
}

var (
	_ backend.RunnerBackend     = (*Backend)(nil)
	_ backend.Backend           = (*Backend)(nil)
	_ backend.StartPathReporter = (*Backend)(nil)
)

// TartBackend is the seed's name for Backend.
type TartBackend = Backend

// Option adjusts a Backend (mostly for tests).
type Option func(*options)

type options struct {
	client     []tart.Option
	pool       func(*tart.PoolOptions)
	supervisor string
}

// WithSupervisorBinary sets the binary re-executed as the runner command's
// supervisor (`<binary> supervise <dir>`; default: this process's own
// executable, which must call supervisor.MainIfInvoked first in main, as
// nomad-gha-scaleset does).
func WithSupervisorBinary(path string) Option {
	return func(x *options) { x.supervisor = path }
}

// WithClientOptions adds tart.Client options (e.g. a fake CommandRunner).
func WithClientOptions(o ...tart.Option) Option {
	return func(x *options) { x.client = append(x.client, o...) }
}

// WithPoolOptions lets the caller adjust the tart.PoolOptions.
func WithPoolOptions(fn func(*tart.PoolOptions)) Option {
	return func(x *options) { x.pool = fn }
}

// New validates cfg and returns a Backend for scale set scaleSetName. It
// starts the warm pool in the background (adopting or cleaning up VMs left
// by an earlier run); StartPool waits for that.
func New(cfg Config, scaleSetName string, logger *slog.Logger, opts ...Option) (*Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("tart backend config: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var o options
	for _, fn := range opts {
		fn(&o)
	}
	poolName := poolNameFor(scaleSetName)
	// The caller's logger already names the scale set and backend (the
	// service adds them); adding them again would repeat the keys.
	log := logger
	copts := []tart.Option{tart.WithBinary(cfg.TartPath), tart.WithLogger(log)}
	if cfg.TartHome != "" {
		copts = append(copts, tart.WithHome(cfg.TartHome))
	}
	client := tart.NewClient(append(copts, o.client...)...)
	slots, err := tart.NewSlots(cfg.MaxVMs, cfg.MACSeed)
	if err != nil {
		return nil, fmt.Errorf("tart backend: mac_seed: %w", err)
	}
	if err := client.CheckHome(); err != nil {
		return nil, fmt.Errorf("tart backend: %w", err)
	}
	b := &Backend{cfg: cfg, scaleSet: scaleSetName, poolName: poolName, log: log, client: client, self: o.supervisor,
		runners: map[string]*runner{}, leftovers: map[string]backend.Runner{}, started: make(chan struct{}), tried: make(chan struct{})}
	popts := tart.PoolOptions{
		Logger:           log,
		OnEvent:          b.onEvent,
		BootTimeout:      cfg.StartTimeoutDuration,
		StopTimeout:      cfg.StopTimeoutDuration,
		KeepUnknownPools: true,
	}
	if o.pool != nil {
		o.pool(&popts)
	}
	if b.pool, err = tart.NewPool(client, slots, cfg.pools(poolName), popts); err != nil {
		return nil, fmt.Errorf("tart backend: %w", err)
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.wg.Add(1)
	go b.startLoop()
	return b, nil
}

// poolNameFor turns a scale set name into a valid pool name: tart's VM
// name sanitizing (the ID of a task VM name), trimmed to 40 characters.
func poolNameFor(scaleSet string) string {
	id, _ := tart.ParseVMName(tart.TaskVMName(scaleSet))
	n := strings.Trim(id.ID, "-.")
	if len(n) > 40 {
		n = n[:40]
	}
	if n == "" {
		n = "scaleset"
	}
	return n
}

// startLoop starts the pool, retrying with backoff until it works (tart
// missing, TART_HOME unreadable) or Shutdown.
func (b *Backend) startLoop() {
	defer b.wg.Done()
	delay := time.Second
	var tryOnce sync.Once
	defer tryOnce.Do(func() { close(b.tried) })
	for {
		err := b.pool.Start(b.ctx)
		if err == nil {
			b.recover(b.ctx)
			close(b.started)
			return
		}
		if errors.Is(err, tart.ErrPoolClosed) || b.ctx.Err() != nil {
			b.startErr = fmt.Errorf("tart backend did not start: %w", err)
			close(b.started)
			return
		}
		b.log.Error("failed to start tart pool", "retry_in", delay, "error", err)
		b.mu.Lock()
		b.retryErr = err
		b.mu.Unlock()
		tryOnce.Do(func() { close(b.tried) })
		t := time.NewTimer(delay)
		select {
		case <-b.ctx.Done():
			t.Stop()
			b.startErr = fmt.Errorf("tart backend did not start: %w", err)
			close(b.started)
			return
		case <-t.C:
		}
		delay = min(delay*2, time.Minute)
	}
}

// recover rebuilds the runners of this scale set from the VMs an earlier
// process left (runners keep running across a service restart, as their
// tart exec is detached). A VM of ours without a runner record (the
// process died between provisioning and starting the runner) is deleted.
func (b *Backend) recover(ctx context.Context) {
	vms, err := b.client.List(ctx)
	if err != nil {
		b.log.Warn("failed to list vms to recover runners", "error", err)
		return
	}
	for _, v := range vms {
		if !v.IsLocal() || !b.isMine(v.Name) {
			continue
		}
		rec, err := readRecord(b.client.VMDir(v.Name))
		if err == nil && rec.ScaleSet == b.scaleSet {
			sdir := supervisorDir(b.client.VMDir(v.Name))
			st, cerr := supervisor.Check(sdir)
			// A live supervisor is adopted: its runner keeps its job. One
			// that recorded an exit is adopted too, so the scaler sees how
			// the runner ended and removes it.
			if cerr == nil && (st.Running || st.Exit != nil) {
				vm, held := b.pool.Lookup(v.Name)
				if !held {
					vm = &tart.VM{Name: v.Name, Slot: tart.Slot{Index: -1}}
				}
				b.mu.Lock()
				b.runners[v.Name] = &runner{name: rec.Runner, runnerID: rec.RunnerID, vm: vm, createdAt: rec.CreatedAt, sup: supervisor.Adopt(sdir)}
				b.mu.Unlock()
				b.log.Info("adopted runner", "runner_name", rec.Runner, "vm_name", v.Name, "running", st.Running)
				continue
			}
		}
		b.log.Info("deleting runner vm left by an earlier run", "vm_name", v.Name, "state", v.State)
		// Its runner may hold a GitHub registration (a JIT config was
		// generated for it): ListRunners reports it as failed, with what
		// is known of its identity, until the service removed it.
		left := backend.Runner{Name: rec.Runner, RunnerID: rec.RunnerID, ResourceID: v.Name, State: backend.StateFailed,
			Reason: "vm left by an earlier run of the service, deleted at start", CreatedAt: time.Now()}
		if left.Name == "" {
			left.Name = b.runnerNameOf(v.Name)
		}
		if err := b.releaseName(ctx, v.Name); err != nil {
			b.log.Warn("failed to delete leftover runner vm", "vm_name", v.Name, "error", err)
		}
		if left.Name != "" {
			b.mu.Lock()
			b.leftovers[v.Name] = left
			b.mu.Unlock()
		}
	}
}

// runnerNameOf is the runner a VM of ours was provisioned for: the
// claimant of a warm VM, or the name part of a cold-started task VM.
func (b *Backend) runnerNameOf(vmName string) string {
	if owner, ok := b.pool.ClaimedBy(vmName); ok {
		return owner
	}
	rest, ok := strings.CutPrefix(vmName, tart.TaskVMName(b.poolName+"-"))
	if !ok {
		return ""
	}
	return rest
}

// isMine reports whether a VM name is one of this scale set's runner VMs:
// a cold-started task VM with our prefix or a claimed VM of our pool.
func (b *Backend) isMine(name string) bool {
	n, ok := tart.ParseVMName(name)
	if !ok {
		return false
	}
	if n.Kind == tart.KindTask {
		return strings.HasPrefix(name, tart.TaskVMName(b.poolName+"-"))
	}
	_, claimed := b.pool.ClaimedBy(name)
	return n.Pool == b.poolName && claimed
}

// releaseName deletes a VM of ours by name, freeing its slot if held.
func (b *Backend) releaseName(ctx context.Context, name string) error {
	if vm, held := b.pool.Lookup(name); held {
		return b.pool.Release(ctx, vm)
	}
	return b.client.Destroy(ctx, name, b.cfg.StopTimeoutDuration)
}

// StartPool waits until the warm pool has started (New starts it in the
// background) or ctx ends. While starting fails and is being retried (tart
// missing, TART_HOME unreadable) it returns the latest error at once
// instead of waiting. Calling it is optional: StartRunner does.
func (b *Backend) StartPool(ctx context.Context) error {
	select {
	case <-b.started:
		return b.startErr
	case <-b.tried:
	case <-ctx.Done():
		return fmt.Errorf("wait for tart pool start: %w", ctx.Err())
	}
	// The first attempt failed; startLoop retries. Do not wait for it.
	select {
	case <-b.started:
		return b.startErr
	default:
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return fmt.Errorf("tart backend not started yet: %w", b.retryErr)
}

// EnsureImage pulls the configured image unless it is already present.
func (b *Backend) EnsureImage(ctx context.Context) error {
	_, err := b.client.EnsureImage(ctx, b.cfg.Image, tart.PullOptions{Progress: func(p tart.PullProgress) {
		b.log.Debug("pulling image", "image", b.cfg.Image, "progress", p.String())
	}})
	return err
}

// Name implements backend.Backend.
func (b *Backend) Name() string { return "tart" }

func (b *Backend) onEvent(e tart.Event) {
	switch e.Type {
	case tart.EventPulling:
		b.log.Debug("vm event", "event", string(e.Type), "vm_name", e.VM, "message", e.Message)
	case tart.EventFailed:
		b.log.Warn("vm event", "event", string(e.Type), "vm_name", e.VM, "message", e.Message)
	default:
		b.log.Info("vm event", "event", string(e.Type), "vm_name", e.VM, "message", e.Message)
	}
}

// StartRunner implements backend.RunnerBackend: it provisions a VM (warm
// claim or cold start, bounded by start_timeout) and starts the runner
// command in it with `tart exec -i`, detached from this process (so the job
// survives a service restart), the JIT config written into its stdin pipe.
// The returned resource ID is the VM name; ListRunners reports how the
// runner ends.
func (b *Backend) StartRunner(ctx context.Context, name string, jitConfig string) (string, error) {
	return b.StartIdentified(ctx, backend.Identity{Name: name}, jitConfig)
}

// StartIdentified is StartRunner that records the GitHub runner ID in the
// VM's runner record, which a restarted service reads back.
func (b *Backend) StartIdentified(ctx context.Context, id backend.Identity, jitConfig string) (string, error) {
	name := id.Name
	if err := b.StartPool(ctx); err != nil {
		return "", err
	}
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return "", errors.New("tart backend is shut down")
	}
	// Provisioning (pull, clone, boot, agent wait) ends with the caller's
	// ctx, start_timeout or Shutdown, whichever comes first: a shutdown
	// must not wait for a boot that may never finish.
	pctx, cancel := context.WithTimeout(ctx, b.cfg.StartTimeoutDuration)
	defer cancel()
	stopOnShutdown := context.AfterFunc(b.ctx, cancel)
	defer stopOnShutdown()
	vmName := tart.TaskVMName(b.poolName + "-" + name)
	vm, err := b.pool.Provision(pctx, vmName, name, b.cfg.spec(b.poolName), nil)
	if err != nil {
		return "", fmt.Errorf("provision vm for runner %s: %w", name, err)
	}
	r := &runner{name: name, runnerID: id.RunnerID, vm: vm, createdAt: time.Now()}
	if err := b.startGuestRunner(pctx, r, jitConfig); err != nil {
		relErr := b.pool.Release(context.WithoutCancel(ctx), vm)
		return "", errors.Join(fmt.Errorf("start runner %s in vm %s: %w", name, vm.Name, err), relErr)
	}
	b.mu.Lock()
	if b.closed {
		// Shutdown raced with us: leave nothing behind.
		b.mu.Unlock()
		return "", errors.Join(errors.New("tart backend is shut down"), b.remove(context.WithoutCancel(ctx), r))
	}
	b.runners[vm.Name] = r
	b.mu.Unlock()
	switch vm.Path {
	case tart.PathWarm:
		b.warmStarts.Add(1)
	case tart.PathResumed:
		b.resumedStarts.Add(1)
	default:
		b.coldStarts.Add(1)
	}
	b.log.Info("started runner", "runner_name", name, "vm_name", vm.Name, "path", string(vm.Path), "waited", vm.Waited)
	return vm.Name, nil
}

// StartPath implements backend.StartPathReporter: how the runner's VM was
// started (warm, resumed or cold), "" for a runner not started by this
// process (recovered after a restart).
func (b *Backend) StartPath(resourceID string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.runners[resourceID]; r != nil && r.vm != nil {
		return string(r.vm.Path)
	}
	return ""
}

// startGuestRunner writes the runner record and starts the runner command
// under its supervisor. The JIT config goes through the supervisor's stdin
// pipe, so it never touches disk, argv or an environment on the host.
func (b *Backend) startGuestRunner(ctx context.Context, r *runner, jitConfig string) error {
	dir := b.client.VMDir(r.vm.Name)
	if err := writeRecord(dir, record{Runner: r.name, RunnerID: r.runnerID, ScaleSet: b.scaleSet, CreatedAt: r.createdAt}); err != nil {
		return err
	}
	log := filepath.Join(dir, runnerLogFile)
	h, err := supervisor.Start(ctx, supervisor.StartOptions{
		Self: b.self,
		Dir:  supervisorDir(dir),
		Spec: supervisor.Spec{TartPath: b.client.Binary(), TartEnv: b.client.Environ(), VM: r.vm.Name,
			Argv: b.cfg.RunnerCommand, StdoutPath: log, StderrPath: log, CreateOutput: true},
		Stdin: []byte(jitConfig),
	})
	if err != nil {
		// The supervisor never echoes its stdin, so this error cannot
		// quote the JIT config.
		return fmt.Errorf("start runner supervisor: %w", err)
	}
	r.sup = h
	return nil
}

// RemoveRunner implements backend.RunnerBackend: it stops and deletes the
// VM (which ends the runner command) and frees its slot. Unknown IDs of our
// naming convention are deleted too; anything else is a no-op.
func (b *Backend) RemoveRunner(ctx context.Context, resourceID string) error {
	b.mu.Lock()
	r := b.runners[resourceID]
	if _, left := b.leftovers[resourceID]; left && r == nil {
		delete(b.leftovers, resourceID) // its VM was deleted at start
		b.mu.Unlock()
		return nil
	}
	b.mu.Unlock()
	if r == nil {
		if !tart.IsOurVM(resourceID) {
			return nil
		}
		return b.releaseName(ctx, resourceID)
	}
	if err := b.remove(ctx, r); err != nil {
		return fmt.Errorf("remove runner %s: %w", r.name, err)
	}
	b.mu.Lock()
	delete(b.runners, resourceID)
	b.mu.Unlock()
	return nil
}

// remove ends a runner's guest command and deletes its VM. The supervisor
// kills tart exec first and is waited for, so nothing writes into the VM
// directory while tart deletes it.
func (b *Backend) remove(ctx context.Context, r *runner) error {
	if r.sup != nil {
		if err := supervisor.Kill(r.sup.Dir); err != nil && !errors.Is(err, supervisor.ErrNotRunning) {
			b.log.Warn("failed to tell the runner supervisor to kill", "vm_name", r.vm.Name, "error", err)
		}
		if _, err := r.sup.Wait(ctx); err != nil {
			return fmt.Errorf("wait for runner %s to stop: %w", r.name, err)
		}
	}
	if r.vm.Slot.Index >= 0 {
		return b.pool.Release(ctx, r.vm)
	}
	return b.client.Destroy(ctx, r.vm.Name, b.cfg.StopTimeoutDuration)
}

// ListRunners implements backend.Backend.
func (b *Backend) ListRunners(ctx context.Context) ([]backend.Runner, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]backend.Runner, 0, len(b.runners))
	for id, r := range b.runners {
		b.observe(r)
		out = append(out, backend.Runner{Name: r.name, RunnerID: r.runnerID, ResourceID: id, State: r.state, Reason: r.reason, CreatedAt: r.createdAt})
	}
	for _, left := range b.leftovers {
		out = append(out, left)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}

// observe updates r's state from its supervisor's lock and exit record.
// Caller holds mu.
func (b *Backend) observe(r *runner) {
	if r.state == backend.StateExited || r.state == backend.StateFailed {
		return
	}
	r.state = backend.StateRunning
	if r.sup == nil {
		return
	}
	st, err := supervisor.Check(r.sup.Dir)
	switch {
	case err != nil:
		r.state, r.reason = backend.StateFailed, err.Error()
	case st.Running:
	case st.Exit == nil:
		r.state, r.reason = backend.StateFailed, "runner supervisor died without recording an exit status"
	case st.Exit.Killed:
		r.state, r.reason = backend.StateFailed, "runner command was killed"
	case st.Exit.Err != "":
		r.state, r.reason = backend.StateFailed, "tart exec failed: "+st.Exit.Err
	default:
		r.finish(st.Exit.ExitCode)
	}
}

func (r *runner) finish(code int) {
	switch {
	case code != 0:
		r.state, r.reason = backend.StateFailed, fmt.Sprintf("runner command exited with code %d", code)
	default:
		r.state, r.reason = backend.StateExited, ""
	}
}

// Shutdown implements backend.RunnerBackend: it cancels starts in progress
// (their VMs are deleted), stops the warm pool (deleting warm VMs) and
// removes runners that have ended. Running runners are deliberately kept to
// finish their job, each logged with its VM; the next service process
// adopts them. ctx bounds the work; whatever of ours is still in TART_HOME
// when it ends, other than the kept runners, is logged by name.
func (b *Backend) Shutdown(ctx context.Context) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	var ended []string
	kept := map[string]bool{}
	for id, r := range b.runners {
		b.observe(r)
		if r.state != backend.StateRunning {
			ended = append(ended, id)
			continue
		}
		kept[id] = true
		b.log.Info("kept running runner for the next process", "runner_name", r.name, "vm_name", id,
			"tart_home", b.client.Home())
	}
	b.mu.Unlock()
	b.cancel()
	for _, id := range ended {
		if err := b.RemoveRunner(ctx, id); err != nil {
			b.log.Warn("failed to remove ended runner at shutdown", "vm_name", id, "error", err)
		}
	}
	if err := b.pool.Shutdown(ctx); err != nil {
		b.log.Warn("failed to shut down warm pool", "error", err)
	}
	if err := waitgroup.Wait(ctx, &b.wg); err != nil {
		b.log.Warn("tart backend shutdown timed out", "error", err)
	}
	b.reportLeft(kept)
}

// reportLeft logs every VM of this scale set still in TART_HOME that was
// not deliberately kept: what a shutdown could not finish, and where.
func (b *Backend) reportLeft(kept map[string]bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	vms, err := b.client.List(ctx)
	if err != nil {
		b.log.Warn("failed to list vms left at shutdown", "tart_home", b.client.Home(), "error", err)
		return
	}
	for _, v := range vms {
		n, ok := tart.ParseVMName(v.Name)
		if !v.IsLocal() || !ok || kept[v.Name] {
			continue
		}
		mine := strings.HasPrefix(v.Name, tart.TaskVMName(b.poolName+"-")) || (n.Kind == tart.KindPool && n.Pool == b.poolName)
		if mine {
			b.log.Warn("left vm behind at shutdown", "vm_name", v.Name, "state", v.State,
				"vm_dir", b.client.VMDir(v.Name))
		}
	}
}
