// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
	"github.com/tartnomad/nomad-driver-tart/internal/supervisor"
	"github.com/tartnomad/nomad-driver-tart/tart"
)

const (
	// killWait bounds the wait for the supervisor to record an exit after
	// it was told to kill tart exec, before the VM is stopped too.
	killWait = 5 * time.Second
	// exitWait bounds the final wait after the VM was stopped.
	exitWait = 30 * time.Second
	// defaultKillSignal is sent to the guest command when the job sets no
	// kill_signal.
	defaultKillSignal = "SIGTERM"
)

// recover re-attaches to a task from its state: its supervisor is alive or
// has recorded an exit. A task with neither is gone: what is left of it
// (VM, state dir) is deleted and an error returned, so Nomad starts it
// afresh.
func (d *Driver) recover(rt *tartHost, cfg *sdk.TaskConfig, state *taskState) error {
	state.TaskID = cfg.ID
	if _, err := os.Stat(state.StateDir); errors.Is(err, os.ErrNotExist) {
		// Destroyed earlier (destroy removes the state dir after the VM): a
		// restarting Nomad client recovers the handles of its finished
		// tasks too. There is nothing to delete, and its VM name must not
		// reach tart again.
		d.logger.Debug("task was destroyed earlier; nothing to recover", "task_id", cfg.ID, "vm_name", state.VMName)
		return fmt.Errorf("recover task %s: %w: it was destroyed earlier", cfg.ID, sdk.ErrTaskNotFound)
	}
	st, err := supervisor.Check(state.StateDir)
	vm, _ := rt.pool.Lookup(state.VMName) // its slot, restored from the MAC at pool start
	if err != nil || st.Lost() {
		if err == nil {
			err = errors.New("its supervisor is gone without an exit status")
		}
		d.logger.Warn("task cannot be recovered; deleting its vm", "task_id", cfg.ID, "vm_name", state.VMName, "error", err)
		d.releaseVM(rt, state.VMName, vm)
		_ = os.RemoveAll(state.StateDir)
		return fmt.Errorf("recover task %s: its supervisor is gone without an exit status; the task no longer exists", cfg.ID)
	}
	h := newTaskHandle(state, cfg, vm, d.logger.With("task_id", cfg.ID, "alloc_id", state.AllocID, "vm_name", state.VMName))
	if !d.tasks.add(h) {
		return nil // recovered concurrently
	}
	go h.watch(supervisor.Adopt(state.StateDir), d.ctx.Done())
	h.logger.Info("task recovered", "supervisor_alive", st.Running, "exited", st.Exit != nil)
	return nil
}

// stop is StopTask for a known task.
func (d *Driver) stop(ctx context.Context, rt *tartHost, h *taskHandle, timeout time.Duration, signal string) error {
	if !h.isRunning() {
		return nil
	}
	if signal == "" {
		signal = defaultKillSignal
	}
	if err := d.signalGuest(ctx, rt, h, signal); err != nil {
		h.logger.Warn("failed to deliver kill signal to the guest command", "signal", signal, "error", err)
	}
	if waitFor(ctx, h, timeout) {
		return nil
	}
	return d.kill(ctx, rt, h)
}

// kill ends a task's command by force: the supervisor kills tart exec,
// and if that is not enough the VM is stopped, which ends every guest
// command.
func (d *Driver) kill(ctx context.Context, rt *tartHost, h *taskHandle) error {
	h.killSupervisor()
	if waitFor(ctx, h, killWait) {
		return nil
	}
	h.logger.Warn("task did not end after its command was killed; stopping the vm")
	if err := rt.client.Stop(ctx, h.state.VMName, rt.cfg.VMStopTimeout); err != nil &&
		!errors.Is(err, tart.ErrNotRunning) && !errors.Is(err, tart.ErrVMNotFound) {
		h.logger.Warn("failed to stop vm", "error", err)
	}
	if waitFor(ctx, h, exitWait) {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("stop task %s: %w", h.id, ctx.Err())
	}
	// The supervisor is stuck; the task is over as far as the VM goes.
	h.finish(&sdk.ExitResult{ExitCode: -1, Err: errors.New("task did not exit after its VM was stopped")})
	return nil
}

// waitFor waits up to d for the task to exit; it reports whether it did.
func waitFor(ctx context.Context, h *taskHandle, d time.Duration) bool {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return h.wait(wctx) == nil
}

// destroy is DestroyTask for a known task.
func (d *Driver) destroy(ctx context.Context, rt *tartHost, h *taskHandle) error {
	if h.isRunning() {
		if err := d.kill(ctx, rt, h); err != nil {
			return fmt.Errorf("destroy task %s: %w", h.id, err)
		}
	}
	h.mu.Lock()
	already := h.destroyed
	h.destroyed = true
	vm := h.vm
	h.mu.Unlock()
	if !already {
		d.releaseVM(rt, h.state.VMName, vm)
		if err := os.RemoveAll(h.state.StateDir); err != nil {
			h.logger.Warn("failed to remove task state dir", "error", err)
		}
	}
	d.tasks.remove(h.id)
	h.logger.Info("task destroyed")
	return nil
}

var signalNameRE = regexp.MustCompile(`^[A-Z][A-Z0-9]*$`)

// signalGuest delivers signal to the guest command with a separate tart
// exec running kill in the guest (the command's PID is in the guest's
// $HOME), because tart exec does not forward signals.
func (d *Driver) signalGuest(ctx context.Context, rt *tartHost, h *taskHandle, signal string) error {
	name := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(signal)), "SIG")
	if !signalNameRE.MatchString(name) {
		return fmt.Errorf("signal %q: not a signal name such as SIGTERM", signal)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var stderr strings.Builder
	code, err := rt.client.Exec(sctx, h.state.VMName, signalArgv(name), tart.ExecOptions{Stderr: &stderr})
	if err != nil {
		return fmt.Errorf("signal %s: %w", signal, err)
	}
	if code != 0 {
		return fmt.Errorf("signal %s: kill in the guest exited %d: %s", signal, code, strings.TrimSpace(stderr.String()))
	}
	h.logger.Debug("delivered signal", "signal", "SIG"+name)
	return nil
}
