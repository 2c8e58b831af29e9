// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package demo

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/supervisor"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
)

func TestMain(m *testing.M) {
	// The tart backend re-executes this test binary as the runner
	// command's supervisor.
	supervisor.MainIfInvoked()
	code := m.Run()
	testutil.CleanupBuilds()
	os.Exit(code)
}

func binDir(tb testing.TB) string {
	tb.Helper()
	fr := testutil.BuildBinary(tb, "./sim/cmd/fakerunner")
	ft := testutil.BuildBinary(tb, "./sim/cmd/faketart")
	must.Eq(tb, filepath.Dir(fr), filepath.Dir(ft))
	return filepath.Dir(fr)
}

func TestRun_tart(t *testing.T) {
	var out bytes.Buffer
	sum, err := Run(t.Context(), Options{
		Backend: BackendTart, Jobs: 6, MaxRunners: 3, JobDuration: 100 * time.Millisecond,
		BinDir: binDir(t), Out: &out, Progress: 200 * time.Millisecond, Timeout: 2 * time.Minute,
	})
	must.NoError(t, err, must.Sprint(out.String()))
	must.True(t, sum.OK(), must.Sprint(out.String()))
	must.Eq(t, 6, sum.Done)
	must.Eq(t, 0, sum.LeftBehind)
	must.LessEq(t, 3, sum.PeakRunners)
	must.Positive(t, sum.QueuedToDone.Max)
	must.StrContains(t, out.String(), "==> backend: tart")
	must.StrContains(t, out.String(), "runners left behind:     0")
	must.StrContains(t, out.String(), "queued -> runner online: p50")
}

func TestLatencyOf(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	l := latencyOf(ds)
	must.Eq(t, 51*time.Millisecond, l.P50)
	must.Eq(t, 95*time.Millisecond, l.P95)
	must.Eq(t, 100*time.Millisecond, l.Max)
	must.Eq(t, Latency{}, latencyOf(nil))
}

// BenchmarkBurst measures, for bursts of 10 and 100 jobs (max_runners 10,
// jobs of 100-300 ms), the time from job queued to runner online (p50,
// p95) and from the burst to all jobs done, per backend, and reports the
// tart/docker ratios measured in the same run. Docker is skipped without
// an engine.
func BenchmarkBurst(b *testing.B) {
	dir := binDir(b)
	_, dockerErr := dockerReachable(b.Context())
	for _, n := range []int{10, 100} {
		got := map[string]Summary{}
		for _, backend := range []string{BackendDocker, BackendTart} {
			b.Run(fmt.Sprintf("jobs=%d/backend=%s", n, backend), func(b *testing.B) {
				if backend == BackendDocker && dockerErr != nil {
					b.Skipf("no docker engine: %v", dockerErr)
				}
				var sum Summary
				for range b.N {
					var err error
					sum, err = Run(b.Context(), Options{
						Backend: backend, Jobs: n, MaxRunners: 10, JobDuration: 200 * time.Millisecond,
						BinDir: dir, Progress: -1, Timeout: 5 * time.Minute,
					})
					if err != nil || !sum.OK() {
						b.Fatalf("burst of %d on %s: %v (%+v)", n, backend, err, sum)
					}
				}
				got[backend] = sum
				b.ReportMetric(float64(sum.QueuedToOnline.P50.Milliseconds()), "online-p50-ms")
				b.ReportMetric(float64(sum.QueuedToOnline.P95.Milliseconds()), "online-p95-ms")
				b.ReportMetric(float64(sum.QueuedToDone.P95.Milliseconds()), "done-p95-ms")
				b.ReportMetric(sum.AllDone.Seconds(), "all-done-s")
			})
		}
		d, okD := got[BackendDocker]
		tt, okT := got[BackendTart]
		if okD && okT && d.AllDone > 0 && d.QueuedToOnline.P50 > 0 {
			b.Run(fmt.Sprintf("jobs=%d/tart-vs-docker", n), func(b *testing.B) {
				b.ReportMetric(tt.AllDone.Seconds()/d.AllDone.Seconds(), "all-done-ratio")
				b.ReportMetric(float64(tt.QueuedToOnline.P50)/float64(d.QueuedToOnline.P50), "online-p50-ratio")
			})
		}
	}
}
