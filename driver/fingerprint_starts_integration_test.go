// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/driver"
	"github.com/tartnomad/nomad-driver-tart/driver/harness"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
)

// TestDriver_fingerprint_startsAndPool: the pool's size and the warm
// claim and cold start counts reach the node attributes.
func TestDriver_fingerprint_startsAndPool(t *testing.T) {
	t.Parallel()
	_, h := newTartEnv(t, envOptions{FullAgentStart: true, PluginConfig: `
pool {
  name  = "macos"
  image = "` + testImage + `"
  size  = 1
}`})
	h.WaitFingerprint(t, func(fp *harness.Fingerprint) bool { return fp.Attributes["driver.tart.pool.macos.ready"] == "1" })
	fp := h.LastFingerprint(t)
	must.Eq(t, "1", fp.Attributes["driver.tart.pool.macos.size"])
	must.Eq(t, "0", fp.Attributes["driver.tart.starts.warm"])

	warm := h.StartTask(t, harness.TaskSpec{Config: sh(`echo warm`)})
	must.Eq(t, 0, h.WaitTask(t, warm.ID).ExitCode)
	h.DestroyTask(t, warm.ID, true)
	h.WaitFingerprint(t, func(fp *harness.Fingerprint) bool { return fp.Attributes["driver.tart.starts.warm"] == "1" })

	// Not the pool's shape: a cold start.
	cold := h.StartTask(t, harness.TaskSpec{Config: sh(`echo cold`, `cpu = 6`)})
	must.Eq(t, 0, h.WaitTask(t, cold.ID).ExitCode)
	h.DestroyTask(t, cold.ID, true)
	h.WaitFingerprint(t, func(fp *harness.Fingerprint) bool { return fp.Attributes["driver.tart.starts.cold"] == "1" })
	fp = h.LastFingerprint(t)
	must.Eq(t, "1", fp.Attributes["driver.tart.starts.warm"])
	must.NotEq(t, "0", fp.Attributes["driver.tart.starts.cold.mean_ms"])
}

// TestDriver_fingerprint_poolEventsSendAtOnce: with the periodic version
// check and attribute comparison an hour apart, the pool's own events
// bring the attributes to the node: the slots once the pool runs, then
// the warm VM once it is ready. Without the wake-ups neither would come.
func TestDriver_fingerprint_poolEventsSendAtOnce(t *testing.T) {
	t.Parallel()
	e, _ := newTartEnv(t, envOptions{NoLaunch: true})
	// In process the driver runs tart with the test's own environment: a
	// wrapper gives faketart the simulated Mac's.
	wrapper := filepath.Join(t.TempDir(), "tart")
	script := "#!/bin/sh\nexport"
	for _, kv := range e.env {
		script += " " + shellQuote(kv)
	}
	script += "\nexec " + shellQuote(e.tart) + ` "$@"` + "\n"
	must.NoError(t, os.WriteFile(wrapper, []byte(script), 0o755))
	cfg := strings.Replace(e.pluginConfig(t, `
pool {
  name  = "macos"
  image = "`+testImage+`"
  size  = 1
}`), fmt.Sprintf("tart_path = %q", e.tart), fmt.Sprintf("tart_path = %q", wrapper), 1)
	h := harness.InProcess(t, func(l hclog.Logger) sdk.Driver {
		return driver.New(l).WithFingerprintPeriods(time.Hour, time.Hour)
	}, harness.Options{PluginConfig: cfg, Timeout: 60 * time.Second})
	h.WaitFingerprint(t, func(fp *harness.Fingerprint) bool { return fp.Attributes["driver.tart.slots.total"] == "2" })
	h.WaitFingerprint(t, func(fp *harness.Fingerprint) bool { return fp.Attributes["driver.tart.pool.macos.ready"] == "1" })
	must.Eq(t, "1", h.LastFingerprint(t).Attributes["driver.tart.slots.available"])
}

// shellQuote quotes s for /bin/sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
