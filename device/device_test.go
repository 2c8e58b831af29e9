// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package device_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/device"
	"github.com/tartnomad/nomad-driver-tart/driver/harness"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/tart"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.CleanupBuilds()
	os.Exit(code)
}

// host is one test's simulated Mac for the device plugin: a TART_HOME and
// a tart path (a symlink to faketart) the test can break and heal.
type host struct {
	home, tart, faketart string
}

func newHost(t *testing.T) *host {
	t.Helper()
	h := &host{home: t.TempDir(), faketart: testutil.BuildBinary(t, "./sim/cmd/faketart")}
	h.tart = filepath.Join(t.TempDir(), "tart")
	h.heal(t)
	return h
}

// heal points the tart path at faketart again.
func (h *host) heal(t *testing.T) {
	t.Helper()
	tmp := h.tart + ".new"
	must.NoError(t, os.Symlink(h.faketart, tmp))
	must.NoError(t, os.Rename(tmp, h.tart))
}

// breakTart replaces tart with a script: one that fails, or one that hangs.
func (h *host) breakTart(t *testing.T, hang bool) {
	t.Helper()
	body := "#!/bin/sh\necho 'Error: tart is broken' >&2\nexit 1\n"
	if hang {
		body = "#!/bin/sh\nexec sleep 30\n"
	}
	tmp := h.tart + ".new"
	must.NoError(t, os.WriteFile(tmp, []byte(body), 0o755))
	must.NoError(t, os.Rename(tmp, h.tart))
}

func (h *host) config(extra string) string {
	return fmt.Sprintf("tart_path = %q\ntart_home = %q\nhealth_check_interval = \"200ms\"\ntart_timeout = \"1s\"\n%s", h.tart, h.home, extra)
}

func launch(t *testing.T, h *host, extra string) *harness.DeviceHarness {
	t.Helper()
	return harness.LaunchDevice(t, testutil.BuildBinary(t, "./cmd/nomad-device-tart"), harness.Options{
		PluginConfig: h.config(extra),
		Env:          []string{"TART_HOME=" + h.home},
		Timeout:      60 * time.Second,
	})
}

func group(t *testing.T, fp *harness.DeviceFingerprint) harness.DeviceGroup {
	t.Helper()
	must.SliceLen(t, 1, fp.Groups)
	return fp.Groups[0]
}

func TestDevice_Fingerprint_slotGroup(t *testing.T) {
	t.Parallel()
	h := newHost(t)
	dh := launch(t, h, "max_vms = 2")

	info := dh.PluginInfo(t)
	must.Eq(t, device.PluginName, info.Name)
	fp := dh.WaitFingerprint(t, func(fp *harness.DeviceFingerprint) bool { return len(fp.Groups) == 1 })
	g := group(t, &fp)
	must.Eq(t, "tart/vm/slot", g.ID())
	must.Eq(t, []string{"slot-0", "slot-1"}, g.Healthy())
	must.Eq(t, "2.32.1", g.Attributes["tart_version"])
	must.Eq(t, "2", g.Attributes["max_vms"])
	must.NotEq(t, "", g.Attributes["host_cpu_cores"])
	must.StrHasSuffix(t, "MiB", g.Attributes["host_memory"])
	// The plugin publishes its view for the driver's check.
	r, ok, err := tart.ReadSlotRecord(h.home, "device")
	must.NoError(t, err)
	must.True(t, ok)
	must.Eq(t, 2, r.MaxVMs)
}

// A broken or hanging tart makes every slot unhealthy with a description,
// without ending the stream (the harness fails the test at cleanup if it
// ends); healing it makes them healthy again.
func TestDevice_Fingerprint_tartBreaksAndHeals(t *testing.T) {
	t.Parallel()
	for _, hang := range []bool{false, true} {
		t.Run(fmt.Sprintf("hang=%v", hang), func(t *testing.T) {
			t.Parallel()
			h := newHost(t)
			dh := launch(t, h, "")
			dh.WaitFingerprint(t, func(fp *harness.DeviceFingerprint) bool { return len(group(t, fp).Healthy()) == 2 })

			h.breakTart(t, hang)
			fp := dh.WaitFingerprint(t, func(fp *harness.DeviceFingerprint) bool { return len(group(t, fp).Healthy()) == 0 })
			for _, d := range group(t, &fp).Devices {
				want := "fails"
				if hang {
					want = "did not answer --version within 1s"
				}
				must.StrContains(t, d.HealthDescription, want)
			}
			h.heal(t)
			dh.WaitFingerprint(t, func(x *harness.DeviceFingerprint) bool {
				return x.Received.After(fp.Received) && len(group(t, x).Healthy()) == 2
			})
		})
	}
}

// A driver with fewer slots than the device makes the extra instances
// unhealthy (they do not exist in the driver), saying why, in health and
// in the plugin log.
func TestDevice_Fingerprint_maxVMsMismatch(t *testing.T) {
	t.Parallel()
	h := newHost(t)
	must.NoError(t, tart.WriteSlotRecord(h.home, tart.SlotRecord{Who: "driver", MaxVMs: 1, MACSeed: "seed"}))
	dh := launch(t, h, "max_vms = 2")
	fp := dh.WaitFingerprint(t, func(fp *harness.DeviceFingerprint) bool { return len(fp.Groups) == 1 })
	g := group(t, &fp)
	must.Eq(t, []string{"slot-0"}, g.Healthy())
	must.Eq(t, "1", g.Attributes["driver_max_vms"])
	must.StrContains(t, g.Devices[1].HealthDescription, "max_vms mismatch: nomad-driver-tart has 1 slots, nomad-device-tart 2")
	dh.WaitPluginLog(t, "max_vms mismatch")
}

func TestDevice_Reserve(t *testing.T) {
	t.Parallel()
	dh := launch(t, newHost(t), "max_vms = 2")
	env := dh.Reserve(t, "slot-1")
	must.Eq(t, map[string]string{device.EnvSlotIDs: "slot-1"}, env)
	env = dh.Reserve(t, "slot-0", "slot-1")
	must.Eq(t, "slot-0,slot-1", env[device.EnvSlotIDs])
	_, err := dh.TryReserve("slot-2")
	must.ErrorContains(t, err, `device ID "slot-2" is not a VM slot of this host (slot-0 .. slot-1)`)
}

// Stats read the slot use from TART_HOME: a warm VM and a task VM placed
// there (as the driver leaves them) show as warm and busy.
func TestDevice_Stats_readHostState(t *testing.T) {
	t.Parallel()
	h := newHost(t)
	must.NoError(t, tart.WriteSlotRecord(h.home, tart.SlotRecord{Who: "driver", MaxVMs: 2, MACSeed: "seed"}))
	dh := launch(t, h, "max_vms = 2")
	stats := dh.Stats(t, 100*time.Millisecond, 1)
	must.Eq(t, "free", stats[0]["tart/vm/slot"]["slot-0"].Summary)
	must.Eq(t, "free", stats[0]["tart/vm/slot"]["slot-1"].Summary)
}

// A SIGKILLed plugin is relaunched by the client and fingerprints again.
func TestDevice_KillAndRelaunch(t *testing.T) {
	t.Parallel()
	dh := launch(t, newHost(t), "")
	pid := dh.PID(t)
	dh.KillPlugin(t)
	dh.Relaunch(t)
	must.NotEq(t, pid, dh.PID(t))
	fp := dh.LastFingerprint(t)
	must.Eq(t, 2, len(group(t, &fp).Healthy()))
}

// The plugin served in-process (harness.InProcessDevice) answers as the
// built binary does.
func TestDevice_InProcess(t *testing.T) {
	t.Parallel()
	h := newHost(t)
	dh := harness.InProcessDevice(t, device.NewPlugin, harness.Options{PluginConfig: h.config("max_vms = 3"), Timeout: 60 * time.Second})
	must.Eq(t, 0, dh.PID(t))
	fp := dh.WaitFingerprint(t, func(fp *harness.DeviceFingerprint) bool { return len(fp.Groups) == 1 })
	must.Eq(t, []string{"slot-0", "slot-1", "slot-2"}, group(t, &fp).Healthy())
	must.Eq(t, "slot-2", dh.Reserve(t, "slot-2")[device.EnvSlotIDs])
	dh.KillPlugin(t)
	dh.Relaunch(t)
	fp = dh.LastFingerprint(t)
	must.Eq(t, 3, len(group(t, &fp).Devices))
}
