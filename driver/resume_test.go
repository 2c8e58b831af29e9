// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver_test

import (
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/driver/harness"
)

// TestDriver_StartTask_resumeMode: a pool with mode = "resume" fingerprints
// its templates, a task starts in a clone of a slot's template resumed
// (its events, InspectTask and the starts.resumed attribute say so),
// and the resume command ran in the guest before the task.
func TestDriver_StartTask_resumeMode(t *testing.T) {
	t.Parallel()
	_, h := newTartEnv(t, envOptions{Env: []string{"FAKETART_BOOT_DELAY=300ms", "FAKETART_RESUME_DELAY=20ms"}, PluginConfig: `
pool {
  name           = "macos"
  image          = "` + testImage + `"
  size           = 0
  mode           = "resume"
  resume_command = ["/bin/sh", "-c", "echo synced > clock-synced"]
}`})
	h.WaitFingerprint(t, func(fp *harness.Fingerprint) bool {
		return fp.Attributes["driver.tart.pool.macos.templates_ready"] == "2" && fp.Attributes["driver.tart.pool.macos.mode"] == "resume"
	})
	task := h.StartTask(t, harness.TaskSpec{Config: sh(`cat clock-synced; echo ready; while :; do sleep 0.05; done`)})
	h.WaitStdout(t, task.ID, "synced\nready")
	must.StrHasPrefix(t, "ntart-task-", taskVM(t, task))
	h.WaitEvent(t, task.ID, "(path resumed)")
	must.Eq(t, "resumed", h.InspectTask(t, task.ID).GetDriver().GetAttributes()["start_path"])
	h.WaitFingerprint(t, func(fp *harness.Fingerprint) bool {
		return fp.Attributes["driver.tart.starts.resumed"] == "1" && fp.Attributes["driver.tart.starts.cold"] == "0"
	})
	h.StopTask(t, task.ID, time.Second, "")
	h.WaitTask(t, task.ID)
	h.DestroyTask(t, task.ID, true)
}
