// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tartbackend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
	"github.com/tartnomad/nomad-driver-tart/tart"
)

// Backend runs each runner in its own Tart VM. Lifecycle per runner:
// claim a warm VM from the pool (or cold-start one: clone, set, slot MAC,
// run, wait for the guest agent), then `tart exec -i <vm> <runner_command>`
// with the JIT config on stdin; RemoveRunner stops and deletes the VM and
// frees its slot.
type Backend struct {
	cfg      Config
	scaleSet string
	poolName string
	log      *slog.Logger
	client   *tart.Client
	pool     *tart.Pool

	// ctx owns the runner goroutines and the start-up loop; Shutdown
	// cancels it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	started  chan struct{} // closed once the pool has started
	startErr error         // set before started closes, if it never will succeed

	mu      sync.Mutex
	runners map[string]*runner // by resource ID (VM name)
	closed  bool
}

type runner struct {
	name      string
	vm        *tart.VM
	state     backend.State
	reason    string
	createdAt time.Time
	cancel    context.CancelFunc // stops the guest runner command
	done      chan struct{}      // closed when the guest command ended
}

var _ backend.Backend = (*Backend)(nil)

// TartBackend is the seed's name for Backend.
type TartBackend = Backend

// Option adjusts a Backend (mostly for tests).
type Option func(*options)

type options struct {
	client []tart.Option
	pool   func(*tart.PoolOptions)
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
	log := logger.With("backend", "tart", "scale_set", scaleSetName)
	hl := hclogToSlog(log)
	copts := []tart.Option{tart.WithBinary(cfg.TartPath), tart.WithLogger(hl)}
	if cfg.TartHome != "" {
		copts = append(copts, tart.WithHome(cfg.TartHome))
	}
	client := tart.NewClient(append(copts, o.client...)...)
	slots, err := tart.NewSlots(cfg.MaxVMs, cfg.MACSeed)
	if err != nil {
		return nil, fmt.Errorf("tart backend: mac_seed: %w", err)
	}
	b := &Backend{cfg: cfg, scaleSet: scaleSetName, poolName: poolName, log: log, client: client,
		runners: map[string]*runner{}, started: make(chan struct{})}
	popts := tart.PoolOptions{
		Logger:           hl,
		OnEvent:          b.onEvent,
		BootTimeout:      cfg.StartTimeoutDuration,
		StopTimeout:      cfg.StopTimeoutDuration,
		KeepUnknownPools: true,
	}
	if o.pool != nil {
		o.pool(&popts)
	}
	var pools []tart.PoolConfig
	if cfg.PoolSize > 0 {
		pools = append(pools, tart.PoolConfig{Name: poolName, Size: cfg.PoolSize, VMSpec: cfg.spec(poolName)})
	}
	if b.pool, err = tart.NewPool(client, slots, pools, popts); err != nil {
		return nil, fmt.Errorf("tart backend: %w", err)
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.wg.Add(1)
	go b.startLoop()
	return b, nil
}

// poolNameFor turns a scale set name into a valid pool name.
func poolNameFor(scaleSet string) string {
	n := strings.Trim(tart.TaskVMName(scaleSet)[len("ntart-task-"):], "-.")
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
	for {
		err := b.pool.Start(b.ctx)
		if err == nil {
			b.cleanupLeftovers(b.ctx)
			close(b.started)
			return
		}
		if errors.Is(err, tart.ErrPoolClosed) || b.ctx.Err() != nil {
			b.startErr = fmt.Errorf("tart backend did not start: %w", err)
			close(b.started)
			return
		}
		b.log.Error("failed to start tart pool", "retry_in", delay, "error", err)
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

// cleanupLeftovers deletes this scale set's runner VMs left by an earlier
// process: their runner command died with it, so they can never finish.
func (b *Backend) cleanupLeftovers(ctx context.Context) {
	vms, err := b.client.List(ctx)
	if err != nil {
		b.log.Warn("failed to list vms for cleanup", "error", err)
		return
	}
	taskPrefix := tart.TaskVMName(b.poolName + "-")
	for _, v := range vms {
		n, ok := tart.ParseVMName(v.Name)
		if !ok || !v.IsLocal() {
			continue
		}
		_, claimed := b.pool.ClaimedBy(v.Name)
		mine := (n.Kind == tart.KindTask && strings.HasPrefix(v.Name, taskPrefix)) ||
			(n.Kind == tart.KindPool && n.Pool == b.poolName && claimed)
		if !mine {
			continue
		}
		b.log.Info("deleting runner vm left by an earlier run", "vm_name", v.Name)
		vm, held := b.pool.Lookup(v.Name)
		if held {
			err = b.pool.Release(ctx, vm)
		} else {
			err = b.client.Destroy(ctx, v.Name, b.cfg.StopTimeoutDuration)
		}
		if err != nil {
			b.log.Warn("failed to delete leftover runner vm", "vm_name", v.Name, "error", err)
		}
	}
}

// StartPool waits until the warm pool has started (New starts it in the
// background) or ctx ends. Calling it is optional: StartRunner waits too.
func (b *Backend) StartPool(ctx context.Context) error {
	select {
	case <-b.started:
		return b.startErr
	case <-ctx.Done():
		return fmt.Errorf("wait for tart pool start: %w", ctx.Err())
	}
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
// command in it with the JIT config on stdin. The returned resource ID is
// the VM name. The runner then runs in the background; ListRunners reports
// how it ends.
func (b *Backend) StartRunner(ctx context.Context, name string, jitConfig string) (string, error) {
	if err := b.StartPool(ctx); err != nil {
		return "", err
	}
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return "", errors.New("tart backend is shut down")
	}
	pctx, cancel := context.WithTimeout(ctx, b.cfg.StartTimeoutDuration)
	defer cancel()
	vmName := tart.TaskVMName(b.poolName + "-" + name)
	vm, err := b.pool.Provision(pctx, vmName, name, b.cfg.spec(b.poolName), nil)
	if err != nil {
		return "", fmt.Errorf("provision vm for runner %s: %w", name, err)
	}
	rctx, rcancel := context.WithCancel(b.ctx)
	r := &runner{name: name, vm: vm, state: backend.StateRunning, createdAt: time.Now(), cancel: rcancel, done: make(chan struct{})}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		rcancel()
		relErr := b.pool.Release(context.WithoutCancel(ctx), vm)
		return "", errors.Join(errors.New("tart backend is shut down"), relErr)
	}
	b.runners[vm.Name] = r
	b.mu.Unlock()
	b.log.Info("starting runner", "runner_name", name, "vm_name", vm.Name, "warm", vm.Warm)
	b.wg.Add(1)
	go b.runRunner(rctx, r, jitConfig)
	return vm.Name, nil
}

// runRunner runs the guest runner command until it exits or is cancelled.
func (b *Backend) runRunner(ctx context.Context, r *runner, jitConfig string) {
	defer b.wg.Done()
	defer close(r.done)
	// The runner's own output stays in the guest (_diag); it is not
	// copied into the service log, which must stay free of job data.
	code, err := b.client.Exec(ctx, r.vm.Name, b.cfg.RunnerCommand, tart.ExecOptions{
		Stdin: strings.NewReader(jitConfig),
	})
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case ctx.Err() != nil:
		r.state, r.reason = backend.StateExited, "removed"
	case err != nil:
		r.state, r.reason = backend.StateFailed, "tart exec failed: "+err.Error()
	case code != 0:
		r.state, r.reason = backend.StateFailed, fmt.Sprintf("runner command exited with code %d", code)
	default:
		r.state, r.reason = backend.StateExited, ""
	}
	b.log.Info("runner ended", "runner_name", r.name, "vm_name", r.vm.Name, "state", string(r.state), "exit_code", code, "reason", r.reason)
}

// RemoveRunner implements backend.RunnerBackend: it stops the runner
// command, stops and deletes the VM and frees its slot. Unknown IDs of our
// naming convention are deleted too (left by an earlier process); anything
// else is a no-op.
func (b *Backend) RemoveRunner(ctx context.Context, resourceID string) error {
	b.mu.Lock()
	r := b.runners[resourceID]
	b.mu.Unlock()
	if r == nil {
		if !tart.IsOurVM(resourceID) {
			return nil
		}
		if vm, ok := b.pool.Lookup(resourceID); ok {
			return b.pool.Release(ctx, vm)
		}
		return b.client.Destroy(ctx, resourceID, b.cfg.StopTimeoutDuration)
	}
	r.cancel()
	// Deleting the VM also ends tart exec; wait for the goroutine after.
	err := b.pool.Release(ctx, r.vm)
	select {
	case <-r.done:
	case <-ctx.Done():
		return errors.Join(err, fmt.Errorf("wait for runner %s to stop: %w", r.name, ctx.Err()))
	}
	if err != nil {
		return fmt.Errorf("remove runner %s: %w", r.name, err)
	}
	b.mu.Lock()
	delete(b.runners, resourceID)
	b.mu.Unlock()
	return nil
}

// ListRunners implements backend.Backend.
func (b *Backend) ListRunners(ctx context.Context) ([]backend.Runner, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]backend.Runner, 0, len(b.runners))
	for id, r := range b.runners {
		out = append(out, backend.Runner{Name: r.name, ResourceID: id, State: r.state, Reason: r.reason, CreatedAt: r.createdAt})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}

// Shutdown implements backend.RunnerBackend: it stops the warm pool
// (deleting warm VMs) and the runners it still holds, and waits for its
// goroutines. ctx bounds the work.
func (b *Backend) Shutdown(ctx context.Context) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	ids := make([]string, 0, len(b.runners))
	for id := range b.runners {
		ids = append(ids, id)
	}
	b.mu.Unlock()
	b.cancel()
	for _, id := range ids {
		if err := b.RemoveRunner(ctx, id); err != nil {
			b.log.Warn("failed to remove runner at shutdown", "vm_name", id, "error", err)
		}
	}
	if err := b.pool.Shutdown(ctx); err != nil {
		b.log.Warn("failed to shut down warm pool", "error", err)
	}
	done := make(chan struct{})
	go func() {
		b.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		b.log.Warn("tart backend shutdown timed out", "error", ctx.Err())
	}
}
