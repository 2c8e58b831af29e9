// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk/hclspec"
)

// Driver is the tart task driver. It is safe for concurrent use: Nomad
// calls one long-lived plugin process for all tasks of a node.
type Driver struct {
	logger   hclog.Logger
	lookPath func(string) (string, error)
	// selfPath is the plugin binary, re-executed as the task supervisor.
	selfPath func() (string, error)

	// ctx is the process lifetime: Shutdown detaches the warm pool, then
	// cancels it, which stops the reconcile and recovered tasks' watchers,
	// but never a task.
	ctx    context.Context
	cancel context.CancelFunc
	events *eventHub
	tasks  *taskStore

	// versionEvery and attrEvery are fingerprintPeriod and attrPeriod
	// (tests lengthen them to see what the pool's wake-ups alone send).
	versionEvery, attrEvery time.Duration
	// poolChanged wakes the Fingerprint loop after a pool event, so a
	// claim reaches the node attributes without waiting for attrEvery.
	// One pending wake-up is enough: the loop reads the current state.
	poolChanged chan struct{}

	mu     sync.Mutex // guards config and mismatch
	config *PluginConfig
	// mismatch is the last max_vms difference with the device plugin that
	// was logged, so it is logged once per change.
	mismatch string

	rtMu    sync.Mutex // guards the fields below
	rt      *tartHost
	rtErr   error
	rtStart chan struct{} // closed when a start attempt has finished
	// shutdown is set by Shutdown; a tart host that finishes starting after
	// it detaches its pool at once.
	shutdown bool
}

var (
	_ sdk.Driver       = (*Driver)(nil)
	_ sdk.ExecStreamer = (*Driver)(nil)
	_ sdk.Shutdowner   = (*Driver)(nil)
)

// New returns a driver logging to logger (nil discards).
func New(logger hclog.Logger) *Driver {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Driver{logger: logger.Named(pluginName), lookPath: exec.LookPath, selfPath: os.Executable,
		ctx: ctx, cancel: cancel, events: newEventHub(), tasks: newTaskStore(),
		versionEvery: fingerprintPeriod, attrEvery: attrPeriod, poolChanged: make(chan struct{}, 1)}
}

// NewPlugin is New as the constructor sdk.Serve expects.
func NewPlugin(logger hclog.Logger) sdk.Driver { return New(logger) }

// pluginConfig returns the current config, defaults when none was set
// (a reattached process keeps the config it already has).
func (d *Driver) pluginConfig() PluginConfig {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.config == nil {
		c := PluginConfig{}
		_ = c.Validate() // defaults are valid
		return c
	}
	c := *d.config
	c.Pools = append([]PoolConfig(nil), d.config.Pools...)
	return c
}

// SetConfig decodes and validates the plugin config. It may arrive twice in
// a row with the same bytes (and in short-lived validation processes), so
// it only stores the result and starts nothing.
func (d *Driver) SetConfig(cfg *sdk.PluginConfig) error {
	var c PluginConfig
	if len(cfg.RawConfig) > 0 {
		if err := hclspec.Decode(pluginConfigSpec, cfg.RawConfig, &c); err != nil {
			return fmt.Errorf("failed to decode plugin config: %w", err)
		}
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("invalid plugin config: %w", err)
	}
	d.mu.Lock()
	d.config = &c
	d.mu.Unlock()
	return nil
}

// host returns the started tartHost, starting it on first use (see
// tartHost's doc for why it is lazy). A failed start is retried by the next
// caller.
func (d *Driver) host(ctx context.Context) (*tartHost, error) {
	d.rtMu.Lock()
	if d.rt != nil {
		defer d.rtMu.Unlock()
		return d.rt, nil
	}
	started := d.startHostLocked()
	d.rtMu.Unlock()
	select {
	case <-started:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for tart to be ready: %w", ctx.Err())
	}
	d.rtMu.Lock()
	defer d.rtMu.Unlock()
	if d.rt != nil {
		return d.rt, nil
	}
	return nil, d.rtErr
}

// startHostLocked launches a start attempt unless the tart host is up or
// an attempt is under way, and returns the channel closed when the current
// attempt has finished. d.rtMu must be held.
func (d *Driver) startHostLocked() chan struct{} {
	if d.rt == nil && d.rtStart == nil {
		d.rtStart = make(chan struct{})
		go d.startHost(d.rtStart)
	}
	return d.rtStart
}

// startHost is owned by the driver's ctx.
func (d *Driver) startHost(done chan struct{}) {
	rt, err := newTartHost(d.ctx, d.pluginConfig(), d.logger, d.notePoolChange)
	d.rtMu.Lock()
	if err == nil && d.shutdown {
		// Shutdown came while the pool was starting: hand its warm VMs
		// over to the next process as Shutdown would have.
		d.rtMu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), rt.cfg.VMStopTimeout+30*time.Second)
		_ = d.detachPool(ctx, rt) // logged
		cancel()
		d.rtMu.Lock()
	}
	d.rt, d.rtErr = rt, err
	if err != nil {
		d.rtStart = nil // the next caller tries again
		d.logger.Error("failed to start tart runtime", "error", err)
	} else {
		go d.reconcileLoop(rt)
	}
	d.rtMu.Unlock()
	close(done)
	if err == nil {
		d.notePoolChange() // the slot and pool attributes exist from now on
	}
}

// notePoolChange wakes the Fingerprint loop without blocking: a wake-up
// already pending covers this one too.
func (d *Driver) notePoolChange() {
	select {
	case d.poolChanged <- struct{}{}:
	default:
	}
}

// currentHost returns the tart host if it has started, without starting it.
func (d *Driver) currentHost() *tartHost {
	d.rtMu.Lock()
	defer d.rtMu.Unlock()
	return d.rt
}

// Shutdown is Nomad's notice (2.0.4+) that this process is about to be
// killed. Tasks, their VMs and ready warm VMs keep running: the pool is
// detached (tart.Pool.Detach), so the next process recovers the tasks and
// adopts the warm VMs; warm boots in progress are cancelled and cleaned
// up. Then the process context is cancelled, which stops the reconcile and
// recovered tasks' watchers, never a task.
func (d *Driver) Shutdown(ctx context.Context) error {
	d.rtMu.Lock()
	d.shutdown = true
	rt := d.rt
	d.rtMu.Unlock()
	var err error
	if rt != nil {
		err = d.detachPool(ctx, rt)
	}
	d.cancel()
	return err
}

// detachPool stops the warm pool's background work and leaves its ready
// VMs to the next plugin process.
func (d *Driver) detachPool(ctx context.Context, rt *tartHost) error {
	if err := rt.pool.Detach(ctx); err != nil {
		d.logger.Warn("failed to detach from the warm pool", "error", err)
		return fmt.Errorf("failed to detach from the warm pool: %w", err)
	}
	return nil
}

// TaskEvents streams driver events (pulling, booting, claiming) for all
// tasks until ctx ends.
func (d *Driver) TaskEvents(ctx context.Context) (<-chan *sdk.TaskEvent, error) {
	return d.events.subscribe(ctx), nil
}

// StartTask starts a task: claim a warm VM or cold-start one, then run the
// command in it under a detached supervisor. Nomad has no deadline on it;
// a second StartTask for the same ID is refused. Any failure after a VM
// was obtained deletes the VM.
func (d *Driver) StartTask(ctx context.Context, cfg *sdk.TaskConfig) (*sdk.TaskHandle, error) {
	if _, ok := d.tasks.get(cfg.ID); ok {
		return nil, fmt.Errorf("task %s is already started", cfg.ID)
	}
	tc, err := decodeTaskConfig(cfg)
	if err != nil {
		return nil, err
	}
	rt, err := d.host(ctx)
	if err != nil {
		return nil, sdk.NewRecoverableError(fmt.Errorf("tart is not ready: %w", err))
	}
	paths, err := resolveTaskPaths(cfg, tc, rt.cfg.AllowHostDirs)
	if err != nil {
		return nil, err
	}
	spec := vmSpec(rt.cfg, tc, paths.shares)
	vm, done, err := d.provisionVM(ctx, rt, cfg, tc, spec)
	if err != nil {
		return nil, err
	}
	defer done()
	h, err := d.startSupervisor(ctx, rt, cfg, tc, paths, vm)
	if err != nil {
		d.releaseVM(rt, vm.Name, vm)
		d.events.emit(cfg, "Failed to start the command in VM "+vm.Name+": "+err.Error(), nil)
		return nil, err
	}
	return d.finishStart(h)
}

// finishStart stores the task and builds its handle.
func (d *Driver) finishStart(h *taskHandle) (*sdk.TaskHandle, error) {
	b, err := encodeState(h.state)
	if err != nil {
		return nil, err
	}
	if !d.tasks.add(h) {
		return nil, fmt.Errorf("task %s is already started", h.id)
	}
	h.logger.Info("task started", "vm_name", h.state.VMName, "warm", h.state.Warm)
	return &sdk.TaskHandle{Version: taskHandleVersion, Config: h.cfg, State: sdk.TaskStateRunning, DriverState: b}, nil
}

// RecoverTask re-attaches to a task after a plugin or agent restart from
// its handle alone, without cloning or booting anything. It succeeds
// without side effects for a task this process already manages, and fails
// (after deleting what is left of it) for a task that no longer exists.
func (d *Driver) RecoverTask(ctx context.Context, handle *sdk.TaskHandle) error {
	if handle == nil || handle.Config == nil {
		return errors.New("recover task: handle has no task config")
	}
	if _, ok := d.tasks.get(handle.Config.ID); ok {
		return nil
	}
	state, err := decodeState(handle.Version, handle.DriverState)
	if err != nil {
		return fmt.Errorf("recover task %s: %w", handle.Config.ID, err)
	}
	rt, err := d.host(ctx)
	if err != nil {
		return fmt.Errorf("recover task %s: %w", handle.Config.ID, err)
	}
	return d.recover(rt, handle.Config, state)
}

// WaitTask returns a channel that yields the exit result once the task has
// exited; it answers at once for an exited task, and may be called many
// times concurrently.
func (d *Driver) WaitTask(ctx context.Context, taskID string) (<-chan *sdk.ExitResult, error) {
	h, ok := d.tasks.get(taskID)
	if !ok {
		return nil, fmt.Errorf("wait task %s: %w", taskID, sdk.ErrTaskNotFound)
	}
	ch := make(chan *sdk.ExitResult, 1)
	go func() { // owned by ctx and the task's exit
		defer close(ch)
		if h.wait(ctx) == nil {
			ch <- h.exitResult()
		}
	}()
	return ch, nil
}

// StopTask delivers signal (SIGTERM when empty) to the guest command, waits
// up to timeout, then kills the command and stops the VM. It returns once
// the task has exited; stopping an exited task is a no-op.
func (d *Driver) StopTask(ctx context.Context, taskID string, timeout time.Duration, signal string) error {
	h, ok := d.tasks.get(taskID)
	if !ok {
		return fmt.Errorf("stop task %s: %w", taskID, sdk.ErrTaskNotFound)
	}
	rt, err := d.host(ctx)
	if err != nil {
		return fmt.Errorf("stop task %s: %w", taskID, err)
	}
	return d.stop(ctx, rt, h, timeout, signal)
}

// DestroyTask kills a running task (force; Nomad always forces), deletes
// its VM, frees its slot and forgets it. Idempotent.
func (d *Driver) DestroyTask(ctx context.Context, taskID string, force bool) error {
	h, ok := d.tasks.get(taskID)
	if !ok {
		return nil
	}
	if h.isRunning() && !force {
		return fmt.Errorf("destroy task %s: task is still running", taskID)
	}
	rt, err := d.host(ctx)
	if err != nil {
		return fmt.Errorf("destroy task %s: %w", taskID, err)
	}
	return d.destroy(ctx, rt, h)
}

// InspectTask reports a task's status (Nomad's client does not call it).
func (d *Driver) InspectTask(_ context.Context, taskID string) (*sdk.TaskStatus, error) {
	h, ok := d.tasks.get(taskID)
	if !ok {
		return nil, fmt.Errorf("inspect task %s: %w", taskID, sdk.ErrTaskNotFound)
	}
	return h.status(), nil
}

// SignalTask delivers a signal such as "SIGHUP" to the guest command.
func (d *Driver) SignalTask(ctx context.Context, taskID string, signal string) error {
	h, ok := d.tasks.get(taskID)
	if !ok {
		return fmt.Errorf("signal task %s: %w", taskID, sdk.ErrTaskNotFound)
	}
	if !h.isRunning() {
		return fmt.Errorf("signal task %s: task has exited", taskID)
	}
	rt, err := d.host(ctx)
	if err != nil {
		return fmt.Errorf("signal task %s: %w", taskID, err)
	}
	return d.signalGuest(ctx, rt, h, signal)
}

// ExecTask runs cmd in the task's VM (script checks) and returns its output
// and exit code; the command is killed after timeout.
func (d *Driver) ExecTask(ctx context.Context, taskID string, cmd []string, timeout time.Duration) (*sdk.ExecResult, error) {
	h, ok := d.tasks.get(taskID)
	if !ok {
		return nil, fmt.Errorf("exec in task %s: %w", taskID, sdk.ErrTaskNotFound)
	}
	rt, err := d.host(ctx)
	if err != nil {
		return nil, fmt.Errorf("exec in task %s: %w", taskID, err)
	}
	return d.execOnce(ctx, rt, h, cmd, timeout)
}
