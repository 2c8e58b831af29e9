// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tartnomad/nomad-driver-tart/device"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
	"github.com/tartnomad/nomad-driver-tart/internal/supervisor"
	"github.com/tartnomad/nomad-driver-tart/tart"
)

// supervisorStartTimeout bounds how long StartTask waits for the
// supervisor's start report (it opens the log FIFOs and starts tart exec).
const supervisorStartTimeout = 30 * time.Second

// decodeTaskConfig decodes and validates the task's config block.
func decodeTaskConfig(cfg *sdk.TaskConfig) (*TaskConfig, error) {
	var tc TaskConfig
	if err := cfg.DecodeDriverConfig(taskConfigSpec, &tc); err != nil {
		return nil, fmt.Errorf("failed to decode task config: %w", err)
	}
	if err := tc.Validate(); err != nil {
		return nil, fmt.Errorf("invalid task config: %w", err)
	}
	return &tc, nil
}

// taskPaths are a task's host paths, resolved and confined.
type taskPaths struct {
	stdin  string
	shares []tart.DirShare
}

// resolveTaskPaths resolves stdin_file and shared dirs against the task
// directory. They must stay inside it (symlinks included), except absolute
// shared dirs when the plugin allows host dirs.
func resolveTaskPaths(cfg *sdk.TaskConfig, tc *TaskConfig, allowHostDirs bool) (taskPaths, error) {
	var p taskPaths
	taskDir := cfg.TaskDir()
	if tc.StdinFile != "" {
		path, err := confined(taskDir, tc.StdinFile)
		if err != nil {
			return p, fmt.Errorf("invalid task config: stdin_file = %w", err)
		}
		if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
			return p, fmt.Errorf("invalid task config: stdin_file = %q is not a file in the task directory", tc.StdinFile)
		}
		p.stdin = path
	}
	for i, d := range tc.SharedDirs {
		var path string
		var err error
		if filepath.IsAbs(d.HostPath) {
			if !allowHostDirs {
				err = fmt.Errorf("%q is absolute, which needs allow_host_dirs = true in the plugin config", d.HostPath)
			}
			path = d.HostPath
		} else {
			path, err = confined(taskDir, d.HostPath)
		}
		if err != nil {
			return p, fmt.Errorf("invalid task config: shared_dir[%d].host_path = %w", i, err)
		}
		if fi, err := os.Stat(path); err != nil || !fi.IsDir() {
			return p, fmt.Errorf("invalid task config: shared_dir[%d].host_path = %q is not a directory", i, d.HostPath)
		}
		name := d.Name
		if name == "" && len(tc.SharedDirs) > 1 {
			name = filepath.Base(path)
		}
		p.shares = append(p.shares, tart.DirShare{Name: name, Path: path, ReadOnly: d.ReadOnly})
	}
	return p, nil
}

// confined joins rel to base and fails if the result, symlinks resolved,
// leaves base.
func confined(base, rel string) (string, error) {
	if err := relativePath(rel); err != nil {
		return "", err
	}
	realBase, err := filepath.EvalSymlinks(base)
	if err != nil {
		return "", fmt.Errorf("%q: failed to resolve the task directory: %w", rel, err)
	}
	p, err := filepath.EvalSymlinks(filepath.Join(base, rel))
	if err != nil {
		return "", fmt.Errorf("%q does not exist in the task directory", rel)
	}
	if p != realBase && !strings.HasPrefix(p, realBase+string(filepath.Separator)) {
		return "", fmt.Errorf("%q leaves the task directory", rel)
	}
	return p, nil
}

// vmSpec is the VM a task wants, plugin defaults applied.
func vmSpec(pc PluginConfig, tc *TaskConfig, shares []tart.DirShare) tart.VMSpec {
	spec := tart.VMSpec{Pool: tc.Pool, Image: tc.Image, CPU: tc.CPU, MemoryMiB: tc.Memory, DiskSizeGB: tc.DiskSize,
		Run: tart.RunOptions{Dirs: shares, Network: tc.network()}}
	if spec.CPU == 0 {
		spec.CPU = pc.DefaultCPU
	}
	if spec.MemoryMiB == 0 {
		spec.MemoryMiB = pc.DefaultMemory
	}
	if spec.Run.Network.Mode == tart.NetworkNAT {
		spec.Run.Network.Mode = "" // NAT passes no flag, as in pools
	}
	return spec
}

// provisionVM gets the task the VM that will be ready first
// (tart.Pool.ProvisionWith): a ready warm VM of a pool that fits the task,
// else a warm VM still booting when it beats a start now, else a VM of
// its own in a slot, resumed from the slot's template in a resume pool or
// cold-booted (the pull policy applies only then). Its task events say
// which path the start took and why. A task naming a pool whose VMs lack
// its shape (another image or resources, shared dirs, a network other
// than NAT: all fixed at boot), or a pool this client does not have, is
// never given a pool's VM; it cold-starts, with a task event and a
// warning saying why. A pool is a speed-up, not a requirement (jobs that
// must land on a client with the pool constrain on its
// driver.tart.pool.<name>.ready attribute). The returned func ends the
// VM's protection from the reconcile; call it once the task is stored (or
// the VM released).
func (d *Driver) provisionVM(ctx context.Context, rt *tartHost, cfg *sdk.TaskConfig, tc *TaskConfig, spec tart.VMSpec) (*tart.VM, func(), error) {
	reserved := slotReservation(cfg)
	if reserved != "" {
		d.events.emit(cfg, "VM slot reserved by the scheduler ("+reserved+"): no wait for another task", map[string]string{"slot_ids": reserved})
	}
	if spec.Pool != "" {
		if err := namedPoolFits(rt.cfg, spec); err != nil {
			d.logger.Warn("task cannot use the warm pool it names; cold starting", "task_id", cfg.ID, "pool", spec.Pool, "reason", err.Error())
			d.events.emit(cfg, fmt.Sprintf("Not using warm pool %s (%v): cold start", spec.Pool, err), map[string]string{"pool": spec.Pool})
		}
	}
	// A task holding a slot reservation from the device plugin never
	// waits for another task: it gets a warm VM, a free slot or a
	// preempted warm VM's, and fails at once, saying why, when none exists.
	var slotWait time.Duration
	if reserved != "" {
		if err := rt.checkReservedSlot(reserved); err != nil {
			d.logger.Error("task with a vm slot reservation found no slot", "task_id", cfg.ID, "slot_ids", reserved, "error", err)
			return nil, nil, sdk.NewRecoverableError(err)
		}
		slotWait = reservedSlotWait(rt.cfg)
	}
	name := tart.TaskVMName(cfg.ID)
	done := rt.markStarting(name)
	d.removeInterruptedStart(rt, name)
	var coldErr error
	vm, err := rt.pool.ProvisionWith(ctx, name, cfg.ID, spec, tart.ProvisionOptions{
		SlotWait: slotWait,
		OnEvent: func(e tart.Event) {
			if e.Type == tart.EventFailed {
				return // reported by StartTask's error
			}
			attrs := map[string]string{"vm_name": e.VM, "event": string(e.Type)}
			if e.Pool != "" {
				attrs["pool"] = e.Pool
			}
			if e.Path != "" {
				attrs["path"] = string(e.Path)
			}
			d.events.emit(cfg, e.Message, attrs)
		},
		BeforeColdStart: func(ctx context.Context) error {
			coldErr = d.ensureImage(ctx, rt, cfg, tc)
			return coldErr
		},
	})
	switch {
	case err == nil:
	case coldErr != nil:
		done()
		return nil, nil, coldErr
	default:
		done()
		return nil, nil, startError(ctx, rt, name, reserved, slotWait, err)
	}
	if vm.Name != name {
		// A claimed warm VM keeps its own name.
		warmDone := rt.markStarting(vm.Name)
		done()
		done = warmDone
	}
	d.logger.Info("vm provisioned", "task_id", cfg.ID, "vm_name", vm.Name, "path", string(vm.Path), "waited", vm.Waited)
	return vm, done, nil
}

// startError maps a failed start to the error StartTask returns: no free
// slot within slot_wait_timeout (or, with a slot reservation, within the
// short wait for a preempted warm VM) and Apple's VM limit are recoverable
// (Nomad retries elsewhere or later).
func startError(ctx context.Context, rt *tartHost, name, reserved string, wait time.Duration, err error) error {
	switch {
	case errors.Is(err, tart.ErrNoSlot) && ctx.Err() == nil && reserved != "":
		return sdk.NewRecoverableError(fmt.Errorf("task holds VM slot reservation %s=%s but no slot freed up within %s (a preempted warm VM should free one sooner): %s: %w",
			device.EnvSlotIDs, reserved, wait, rt.slotMismatchCause(), err))
	case errors.Is(err, tart.ErrNoSlot) && ctx.Err() == nil:
		return sdk.NewRecoverableError(fmt.Errorf("no VM slot free: all %d slots are in use and none freed up within slot_wait_timeout (%s): %w",
			rt.slots.Max(), rt.cfg.SlotWaitTimeout, err))
	case errors.Is(err, tart.ErrVMLimit):
		return sdk.NewRecoverableError(fmt.Errorf("the host refused another VM (Apple's limit of 2 macOS VMs; other tools' VMs count too): %w", err))
	default:
		return fmt.Errorf("failed to start VM %s: %w", name, err)
	}
}

// removeInterruptedStart deletes a VM already named after this task. Task
// IDs are unique per start attempt; Nomad reuses one only to retry a
// StartTask the plugin died in, so such a VM is that attempt's leftover.
func (d *Driver) removeInterruptedStart(rt *tartHost, name string) {
	if _, err := os.Stat(rt.client.VMDir(name)); err != nil {
		return
	}
	d.logger.Warn("deleting vm left by an interrupted start of the same task", "vm_name", name)
	vm, _ := rt.pool.Lookup(name)
	d.releaseVM(rt, name, vm)
}

// ensureImage applies the pull policy before a cold start (a warm VM was
// cloned from an image already cached).
func (d *Driver) ensureImage(ctx context.Context, rt *tartHost, cfg *sdk.TaskConfig, tc *TaskConfig) error {
	have, err := rt.client.HasImage(ctx, tc.Image)
	if err != nil {
		return sdk.NewRecoverableError(fmt.Errorf("failed to look up image %q: %w", tc.Image, err))
	}
	remote := tart.IsRemoteName(tc.Image)
	switch {
	case !remote && !have:
		return fmt.Errorf("image %q: no local VM of that name exists (use an OCI reference such as ghcr.io/org/image:tag to pull)", tc.Image)
	case tc.PullPolicy == pullNever && !have:
		return fmt.Errorf("image %q is not cached and pull_policy is never", tc.Image)
	case !remote, tc.PullPolicy == pullNever, tc.PullPolicy == pullIfNotPresent && have:
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, tc.PullTimeout)
	defer cancel()
	d.events.emit(cfg, "Pulling image "+tc.Image, map[string]string{"image": tc.Image})
	err = rt.client.Pull(pctx, tc.Image, tart.PullOptions{Progress: func(p tart.PullProgress) {
		if p.Phase == tart.PullDisk {
			d.events.emit(cfg, p.String(), map[string]string{"image": tc.Image})
		}
	}})
	switch {
	case errors.Is(err, tart.ErrImageNotFound):
		return fmt.Errorf("image %q was not found in its registry: %w", tc.Image, err)
	case pctx.Err() != nil && ctx.Err() == nil:
		return sdk.NewRecoverableError(fmt.Errorf("pulling image %q took longer than pull_timeout %s", tc.Image, tc.PullTimeout))
	case err != nil:
		return sdk.NewRecoverableError(fmt.Errorf("failed to pull image %q: %w", tc.Image, err))
	}
	d.events.emit(cfg, "Pulled image "+tc.Image, map[string]string{"image": tc.Image})
	return nil
}

// startSupervisor starts the task's command under a detached supervisor
// (internal/supervisor) that gets the task environment on stdin, and waits
// for its start report.
func (d *Driver) startSupervisor(ctx context.Context, rt *tartHost, cfg *sdk.TaskConfig, tc *TaskConfig, paths taskPaths, vm *tart.VM) (*taskHandle, error) {
	self, err := d.selfPath()
	if err != nil {
		return nil, fmt.Errorf("failed to find the plugin binary for the supervisor: %w", err)
	}
	dir := filepath.Join(rt.dataDir, "tasks", stateDirName(cfg.ID))
	spec := supervisor.Spec{TartPath: rt.client.Binary(), TartEnv: rt.tartEnv, VM: vm.Name,
		Argv: guestArgv(tc.Command, tc.Args), StdinFile: paths.stdin, StdoutPath: cfg.StdoutPath, StderrPath: cfg.StderrPath,
		TaskDir: cfg.TaskDir()}
	sup, err := supervisor.Start(ctx, supervisor.StartOptions{Self: self, Dir: dir, Spec: spec,
		Stdin: envBlock(cfg.Env), Timeout: supervisorStartTimeout})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("failed to start the command in the VM: %w", err)
	}
	state := &taskState{TaskID: cfg.ID, AllocID: cfg.AllocID, TaskName: cfg.Name, VMName: vm.Name, Slot: vm.Slot.Index,
		MAC: vm.Slot.MAC, Pool: vm.Pool, Warm: vm.Warm, StartPath: string(vm.Path), StateDir: dir, SupervisorPID: sup.PID, ExecPID: sup.ExecPID,
		StartedAt: time.Now(), TaskDir: cfg.TaskDir(), Config: *tc}
	h := newTaskHandle(state, cfg, vm, d.logger.With("task_id", cfg.ID, "alloc_id", cfg.AllocID, "vm_name", vm.Name))
	go h.watch(sup, d.ctx.Done())
	return h, nil
}

// stateDirName makes a task ID (<alloc>/<task>/<rand>) a directory name.
func stateDirName(id string) string {
	return strings.NewReplacer("/", "_", "\x00", "_", "..", "_").Replace(id)
}

// releaseVM deletes a task's VM and frees its slot (when the slot is ours),
// on a context of its own: cleanup must happen even if the caller's ended.
func (d *Driver) releaseVM(rt *tartHost, name string, vm *tart.VM) {
	ctx, cancel := context.WithTimeout(context.Background(), rt.cfg.VMStopTimeout+time.Minute)
	defer cancel()
	var err error
	if vm != nil {
		err = rt.pool.Release(ctx, vm)
	} else {
		err = rt.client.Destroy(ctx, name, rt.cfg.VMStopTimeout)
	}
	if err != nil {
		d.logger.Error("failed to delete vm", "vm_name", name, "error", err)
	}
}
