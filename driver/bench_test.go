// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver_test

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/driver/harness"
)

// BenchmarkStartTask measures, side by side in one run with the same
// simulated boot delay (FAKETART_BOOT_DELAY=2s):
//   - StartTask latency claiming a warm VM vs cold-starting one
//     (cold_over_warm);
//   - the driver's overhead for running a command (StartTask + WaitTask on
//     a warm VM) over a bare `faketart exec` of the same command on a
//     running VM (driver_over_bare_exec).
//
// Run it with: go test -run '^$' -bench BenchmarkStartTask -benchtime 1x ./driver/
func BenchmarkStartTask(b *testing.B) {
	const bootDelay = "2s"
	e, h := newTartEnv(b, envOptions{Env: []string{"FAKETART_BOOT_DELAY=" + bootDelay}, PluginConfig: `
pool {
  name  = "macos"
  image = "` + testImage + `"
  size  = 1
}`})
	poolReady := func(fp *harness.Fingerprint) bool { return fp.Attributes["driver.tart.pool.macos.ready"] == "1" }
	// cpu = 6 matches no pool: always a cold start.
	coldConfig := sh(`echo ready; while :; do sleep 0.05; done`, "cpu = 6")
	runConfig := `image = "` + testImage + `"
command = "/bin/sh"
args = ["-c", "true"]`
	var warm, cold, driverRun, bare time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.WaitFingerprint(b, poolReady)

		start := time.Now()
		coldTask := h.StartTask(b, harness.TaskSpec{Config: coldConfig})
		cold += time.Since(start)
		h.WaitStdout(b, coldTask.ID, "ready")

		// A bare tart exec of the same command on a running VM.
		start = time.Now()
		cmd := exec.Command(e.tart, "exec", taskVM(b, coldTask), "/bin/sh", "-c", "true")
		cmd.Env = append(os.Environ(), e.env...)
		must.NoError(b, cmd.Run())
		bare += time.Since(start)

		h.StopTask(b, coldTask.ID, time.Second, "")
		h.WaitTask(b, coldTask.ID)
		h.DestroyTask(b, coldTask.ID, true)

		start = time.Now()
		warmTask := h.StartTask(b, harness.TaskSpec{Config: runConfig})
		warm += time.Since(start)
		must.Eq(b, 0, h.WaitTask(b, warmTask.ID).ExitCode)
		driverRun += time.Since(start)
		must.StrHasPrefix(b, "ntart-pool-macos-", taskVM(b, warmTask))
		h.DestroyTask(b, warmTask.ID, true)
	}
	b.StopTimer()
	n := float64(b.N)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / n }
	b.ReportMetric(ms(warm), "warm_start_ms/op")
	b.ReportMetric(ms(cold), "cold_start_ms/op")
	b.ReportMetric(cold.Seconds()/warm.Seconds(), "cold_over_warm")
	b.ReportMetric(ms(driverRun), "driver_run_ms/op")
	b.ReportMetric(ms(bare), "bare_exec_ms/op")
	b.ReportMetric(driverRun.Seconds()/bare.Seconds(), "driver_over_bare_exec")
}
