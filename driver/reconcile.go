// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/tartnomad/nomad-driver-tart/internal/supervisor"
	"github.com/tartnomad/nomad-driver-tart/tart"
)

// reconcileLoop runs reconcile every gc_interval until the driver's ctx
// ends. The first pass waits a full interval: at start-up this process may
// coexist with an earlier one and has not yet been told (RecoverTask) which
// tasks are its own, so it must not collect anything then.
func (d *Driver) reconcileLoop(rt *tartHost) {
	t := time.NewTicker(rt.cfg.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
			if n, err := d.reconcile(d.ctx, rt, time.Now()); err != nil {
				d.logger.Warn("failed to reconcile vms", "error", err)
			} else if n > 0 {
				d.logger.Info("deleted orphaned vms", "count", n)
			}
		}
	}
}

// reconcile deletes VMs of ours that nothing references. A VM is kept when
// any of these holds:
//   - its name does not follow our convention (ntart-task-*, ntart-pool-*):
//     it is not ours;
//   - it is an unclaimed warm VM: the pool owns it;
//   - a task this process manages, or a StartTask in progress, uses it;
//   - a task state dir names it (a task of an earlier process that Nomad
//     has not recovered yet), unless that state dir is stale: its
//     supervisor is dead and its allocation's task directory is gone
//     (Nomad garbage-collected the allocation without DestroyTask);
//   - it was created less than gc_grace_period ago: a StartTask in another,
//     still-alive plugin process may be about to store it.
//
// It returns how many VMs it deleted.
func (d *Driver) reconcile(ctx context.Context, rt *tartHost, now time.Time) (int, error) {
	vms, err := rt.client.List(ctx)
	if err != nil {
		return 0, err
	}
	inUse := d.tasks.vmNames()
	referenced := d.referencedByStateDirs(rt)
	deleted := 0
	for _, v := range vms {
		if !v.IsLocal() {
			continue
		}
		n, ours := tart.ParseVMName(v.Name)
		if !ours || inUse[v.Name] || referenced[v.Name] || rt.isStarting(v.Name) {
			continue
		}
		if _, claimed := rt.pool.ClaimedBy(v.Name); (n.Kind == tart.KindPool && !claimed) || n.Kind == tart.KindTemplate {
			continue // the pool's own: unclaimed warm VMs and templates
		}
		if age := vmAge(rt, v.Name, now); age < rt.cfg.GCGracePeriod {
			continue
		}
		d.logger.Info("deleting orphaned vm", "vm_name", v.Name, "state", v.State)
		vm, _ := rt.pool.Lookup(v.Name)
		d.releaseVM(rt, v.Name, vm)
		deleted++
	}
	return deleted, nil
}

// referencedByStateDirs returns the VMs named by task state dirs, after
// deleting stale state dirs (and so un-referencing their VMs).
func (d *Driver) referencedByStateDirs(rt *tartHost) map[string]bool {
	out := map[string]bool{}
	dirs, _ := os.ReadDir(filepath.Join(rt.dataDir, "tasks"))
	for _, e := range dirs {
		dir := filepath.Join(rt.dataDir, "tasks", e.Name())
		spec, err := supervisor.ReadSpec(dir)
		if err != nil {
			// Being written by a StartTask, or broken: never collect on it.
			continue
		}
		if supervisor.Alive(dir) {
			out[spec.VM] = true
			continue
		}
		if _, err := os.Stat(spec.TaskDir); errors.Is(err, os.ErrNotExist) && spec.TaskDir != "" {
			d.logger.Info("removing stale task state", "state_dir", dir, "vm_name", spec.VM)
			_ = os.RemoveAll(dir)
			continue
		}
		out[spec.VM] = true
	}
	return out
}

// vmAge is how long ago the VM was created or claimed (its directory's or
// claim marker's modification time).
func vmAge(rt *tartHost, name string, now time.Time) time.Duration {
	newest := time.Time{}
	for _, p := range []string{rt.client.VMDir(name), filepath.Join(rt.client.VMDir(name), tart.ClaimedMarker)} {
		if fi, err := os.Stat(p); err == nil && fi.ModTime().After(newest) {
			newest = fi.ModTime()
		}
	}
	if newest.IsZero() {
		return 0
	}
	return now.Sub(newest)
}
