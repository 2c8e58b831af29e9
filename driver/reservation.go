// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

import (
	"fmt"
	"os"
	"time"

	"github.com/tartnomad/nomad-driver-tart/device"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
	"github.com/tartnomad/nomad-driver-tart/tart"
)

// preemptMargin is added to vm_stop_timeout to bound a reserved task's
// wait for a preempted warm VM's slot (tart stop, then tart delete).
const preemptMargin = 30 * time.Second

// slotReservation returns the VM slot IDs the scheduler reserved for the
// task through the nomad-device-tart device plugin ("" when the job has no
// device "tart/vm" block). Only device_env is read: the client puts there
// exactly what device plugins' Reserve answered, while env also carries
// the job's own variables, which must not pass for a reservation.
func slotReservation(cfg *sdk.TaskConfig) string {
	return cfg.DeviceEnv[device.EnvSlotIDs]
}

// reservedSlotWait bounds the slot wait of a task holding a reservation:
// long enough for a preempted warm VM to stop and be deleted, never the
// slot_wait_timeout an unreserved task waits for another task to end.
func reservedSlotWait(cfg PluginConfig) time.Duration {
	return cfg.VMStopTimeout + preemptMargin
}

// checkReservedSlot fails at once when a task holding a reservation cannot
// get a slot without waiting for another task: no slot is free and no warm
// VM can be preempted. The error says why the scheduler's count and the
// driver's disagree.
func (r *tartHost) checkReservedSlot(ids string) error {
	warm := 0
	for _, ps := range r.pool.Stats() {
		warm += ps.Ready + ps.Booting
	}
	if r.slots.Available() > 0 || warm > 0 {
		return nil
	}
	return fmt.Errorf("task holds VM slot reservation %s=%s but all %d of the driver's slots hold task VMs (%s): %s",
		device.EnvSlotIDs, ids, r.slots.Max(), r.slots.Describe(), r.slotMismatchCause())
}

// slotMismatchCause explains why the scheduler placed a task with a slot
// reservation on a host whose slots are all busy.
func (r *tartHost) slotMismatchCause() string {
	rec, ok, err := tart.ReadSlotRecord(r.client.Home(), "device")
	switch {
	case err != nil:
		return "the device plugin's slot record cannot be read: " + err.Error()
	case ok && rec.MaxVMs != r.cfg.MaxVMs:
		return fmt.Sprintf("max_vms differs between the plugins: nomad-device-tart has %d, nomad-driver-tart %d (set the same value in both plugin blocks)", rec.MaxVMs, r.cfg.MaxVMs)
	case !ok:
		return "nomad-device-tart has not published its slots in TART_HOME " + r.client.Home() + " (is its tart_home the driver's?)"
	}
	return "a task without a device \"tart/vm\" block (not counted by the scheduler) or a VM started outside Nomad holds a slot"
}

// publishSlots writes the driver's slot record to TART_HOME, where the
// device plugin reads max_vms (to compare) and the MAC seed (to tell which
// slot a VM holds).
func (r *tartHost) publishSlots(seed string) error {
	return tart.WriteSlotRecord(r.client.Home(), tart.SlotRecord{Who: "driver", MaxVMs: r.cfg.MaxVMs, MACSeed: seed, PID: os.Getpid(), Written: time.Now()})
}

// deviceMismatch describes a max_vms difference with the device plugin's
// published record, or "" when they agree or there is no device plugin.
func (r *tartHost) deviceMismatch() string {
	rec, ok, err := tart.ReadSlotRecord(r.client.Home(), "device")
	if err != nil || !ok || rec.MaxVMs == r.cfg.MaxVMs {
		return ""
	}
	return fmt.Sprintf("max_vms mismatch: nomad-driver-tart has %d slots, nomad-device-tart %d (set the same max_vms in both plugin blocks)", r.cfg.MaxVMs, rec.MaxVMs)
}
