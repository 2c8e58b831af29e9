// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver_test

import (
	"testing"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/driver/harness"
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
