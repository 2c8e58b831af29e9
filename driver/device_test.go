// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/device"
	"github.com/tartnomad/nomad-driver-tart/driver/harness"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/tart"
)

// launchDevice starts nomad-device-tart on the same simulated Mac as the
// driver.
func (e *tartEnv) launchDevice(t *testing.T, extra string) *harness.DeviceHarness {
	t.Helper()
	return harness.LaunchDevice(t, testutil.BuildBinary(t, "./cmd/nomad-device-tart"), harness.Options{
		PluginConfig: fmt.Sprintf("tart_path = %q\ntart_home = %q\nhealth_check_interval = \"200ms\"\n%s", e.tart, e.home, extra),
		Env:          e.env,
		Timeout:      60 * time.Second,
	})
}

func reserved(ids string) map[string]string { return map[string]string{device.EnvSlotIDs: ids} }

// waitSlotUse polls the device plugin's stats until the slots' summaries
// equal want (stats are a stream of snapshots; the driver changes the
// host in the background).
func waitSlotUse(t *testing.T, dh *harness.DeviceHarness, want ...string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var got []string
	for time.Now().Before(deadline) {
		s := dh.Stats(t, 100*time.Millisecond, 1)[0]["tart/vm/slot"]
		got = got[:0]
		for i := range len(want) {
			got = append(got, s[device.SlotID(i)].Summary)
		}
		if strings.Join(got, ",") == strings.Join(want, ",") {
			return
		}
	}
	t.Fatalf("slot use is %v, want %v", got, want)
}

// A task holding a reservation for the only slot, which a warm VM holds,
// preempts the warm VM at once and starts; the device plugin's stats,
// read from the host, follow the driver's slot use: warm, then busy.
func TestDriverDevice_reservedTaskPreemptsWarmVM(t *testing.T) {
	t.Parallel()
	e, h := newTartEnv(t, envOptions{PluginConfig: `
max_vms = 1
slot_wait_timeout = "10m"
pool {
  name  = "macos"
  image = "` + testImage + `"
  size  = 1
  cpu   = 6
}`})
	h.WaitFingerprint(t, func(fp *harness.Fingerprint) bool { return fp.Attributes["driver.tart.pool.macos.ready"] == "1" })
	dh := e.launchDevice(t, "max_vms = 1")
	waitSlotUse(t, dh, "warm")

	env := dh.Reserve(t, "slot-0")
	start := time.Now()
	// cpu = 4 does not fit the pool: the task cold-starts in the warm VM's slot.
	task := h.StartTask(t, harness.TaskSpec{Config: sh(`echo ready; while :; do sleep 0.05; done`, "cpu = 4"), DeviceEnv: env})
	h.WaitStdout(t, task.ID, "ready")
	h.WaitEvent(t, task.ID, "VM slot reserved by the scheduler (slot-0)")
	t.Logf("reserved task started in %s with slot_wait_timeout 10m", time.Since(start))
	must.StrHasPrefix(t, tart.TaskVMName(""), taskVM(t, task))
	waitSlotUse(t, dh, "busy")
	h.StopTask(t, task.ID, time.Second, "")
	h.WaitTask(t, task.ID)
	h.DestroyTask(t, task.ID, true)
}

// With every slot held by a task, a task holding a reservation fails at
// once (not after slot_wait_timeout) with an error that says why the
// scheduler's count and the driver's disagree.
func TestDriverDevice_reservedTaskWithoutSlotFailsAtOnce(t *testing.T) {
	t.Parallel()
	e, h := newTartEnv(t, envOptions{PluginConfig: "max_vms = 1\nslot_wait_timeout = \"10m\""})
	first := h.StartTask(t, harness.TaskSpec{Config: sh(`echo ready; while :; do sleep 0.05; done`)})
	h.WaitStdout(t, first.ID, "ready")

	_, err := h.TryStartTask(harness.TaskSpec{Config: sh("true"), DeviceEnv: reserved("slot-0")})
	must.ErrorContains(t, err, "task holds VM slot reservation TART_SLOT_IDS=slot-0 but all 1 of the driver's slots hold task VMs (0=ntart-task-")
	must.ErrorContains(t, err, "nomad-device-tart has not published its slots")
	must.True(t, harness.IsRecoverable(err))

	// A device plugin counting 2 slots on this host explains the overbooking.
	dh := e.launchDevice(t, "max_vms = 2")
	dh.WaitFingerprint(t, func(fp *harness.DeviceFingerprint) bool { return len(fp.Groups[0].Healthy()) == 1 })
	_, err = h.TryStartTask(harness.TaskSpec{Config: sh("true"), DeviceEnv: dh.Reserve(t, "slot-0")})
	must.ErrorContains(t, err, "max_vms differs between the plugins: nomad-device-tart has 2, nomad-driver-tart 1")

	h.StopTask(t, first.ID, time.Second, "")
	h.WaitTask(t, first.ID)
	h.DestroyTask(t, first.ID, true)
}

// A max_vms difference between the plugins shows in the driver's
// fingerprint health description and in its log.
func TestDriverDevice_maxVMsMismatchInFingerprint(t *testing.T) {
	t.Parallel()
	e, h := newTartEnv(t, envOptions{PluginConfig: "max_vms = 2"})
	h.WaitFingerprint(t, func(fp *harness.Fingerprint) bool { return fp.Attributes["driver.tart.slots.total"] == "2" })
	dh := e.launchDevice(t, "max_vms = 3")
	fp := h.WaitFingerprint(t, func(fp *harness.Fingerprint) bool { return strings.Contains(fp.HealthDescription, "max_vms mismatch") })
	must.True(t, fp.Healthy)
	must.StrContains(t, fp.HealthDescription, "nomad-driver-tart has 2 slots, nomad-device-tart 3")
	h.WaitPluginLogLine(t, "vm slot count differs from the device plugin's", "max_vms mismatch")
	// The device side says it too, and keeps slot-2 out of scheduling.
	dfp := dh.WaitFingerprint(t, func(fp *harness.DeviceFingerprint) bool { return len(fp.Groups[0].Healthy()) == 2 })
	must.StrContains(t, dfp.Groups[0].Devices[2].HealthDescription, "max_vms mismatch")
}
