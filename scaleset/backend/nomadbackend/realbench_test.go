// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadbackend_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/sim/actionssim"
)

const (
	// benchBootDelay is faketart's simulated boot, the same for warm-pool
	// refills and cold starts.
	benchBootDelay = "2s"
	// benchStartSamples per kind (warm, cold), taken alternately.
	benchStartSamples = 6
	// benchDispatches per dispatch-rate measurement.
	benchDispatches = 48
	// benchParallel raw dispatch calls at once: the scaler's default
	// MaxParallelOps, the most starts the service runs at once.
	benchParallel = 16
	// benchRateRounds of each kind, alternately; the median is reported.
	benchRateRounds = 3
)

// BenchmarkNomadDispatch measures on one real agent, side by side:
//
//   - dispatch → task running of the example macOS runner job on the tart
//     driver, claiming the warm pool's VM vs cold-starting a VM (the same
//     job asking for 8 vCPUs instead of the pool's 4), with the same
//     simulated boot delay; samples alternate warm/cold, each from the
//     same state (one ready warm VM, no task VM);
//   - the dispatch rate of the service (the built nomad-gha-scaleset
//     turning a burst of queued jobs into dispatches: the job messages,
//     a JIT config from the simulator per runner, the dispatch, up to 16
//     at once) vs raw dispatch API calls (16 at once), from the burst's
//     start to the last dispatched job's submit time, on a job Nomad
//     cannot place (so scheduling and tasks do not compete with the
//     dispatches); median of alternating rounds.
//
// It prints p50/p95 and reports them as metrics.
func BenchmarkNomadDispatch(b *testing.B) {
	fa := startFlowAgent(b, map[string]string{"FAKETART_BOOT_DELAY": benchBootDelay}, false)
	for b.Loop() {
		warm, cold := benchWarmCold(b, fa)
		service, raw, serviceGaps, rawLatency := benchDispatchRate(b, fa)

		b.Logf("dispatch → task running, tart runner job, boot delay %s, %d samples each:", benchBootDelay, benchStartSamples)
		b.Logf("  warm pool: p50 %s  p95 %s", pct(warm, 50), pct(warm, 95))
		b.Logf("  cold:      p50 %s  p95 %s  (cold/warm p50 ratio %.1f)", pct(cold, 50), pct(cold, 95),
			float64(pct(cold, 50))/float64(pct(warm, 50)))
		b.Logf("dispatch rate, bursts of %d, median of %d rounds, from the burst's start to the last dispatch:", benchDispatches, benchRateRounds)
		b.Logf("  raw API (%d in parallel): %.1f/s  call latency p50 %s  p95 %s", benchParallel, raw, pct(rawLatency, 50), pct(rawLatency, 95))
		b.Logf("  service (burst of %d queued jobs): %.1f/s  gap between dispatches p50 %s  p95 %s", benchDispatches, service, pct(serviceGaps, 50), pct(serviceGaps, 95))
		b.Logf("  service/raw ratio: %.2f", service/raw)

		b.ReportMetric(ms(pct(warm, 50)), "warm-p50-ms")
		b.ReportMetric(ms(pct(warm, 95)), "warm-p95-ms")
		b.ReportMetric(ms(pct(cold, 50)), "cold-p50-ms")
		b.ReportMetric(ms(pct(cold, 95)), "cold-p95-ms")
		b.ReportMetric(raw, "raw-dispatch/s")
		b.ReportMetric(service, "service-dispatch/s")
		b.ReportMetric(service/raw, "service/raw")
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// pct is the p-th percentile (nearest rank) of ds.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (p*len(s)+99)/100 - 1
	return s[max(0, min(i, len(s)-1))]
}

// benchTartJob is the example macOS runner job with a long-running guest
// command (no GitHub here) under id; cpu other than the pool's 4 makes it
// cold-start.
func benchTartJob(b *testing.B, fa *flowAgent, id string, cpu int) string {
	src, err := os.ReadFile(filepath.Join(testutil.RepoRoot(b), "examples", "scaleset-dispatch", "10-runner-macos.nomad.hcl"))
	must.NoError(b, err)
	hcl := replaceOnce(b, string(src), regexp.MustCompile(`job "github-runner-macos"`), fmt.Sprintf("job %q", id))
	hcl = replaceOnce(b, hcl, regexp.MustCompile(`command\s*=\s*"/bin/bash"`), `command = "sleep"`)
	hcl = replaceOnce(b, hcl, regexp.MustCompile(`(?s)args = \[\n.*?\n\s*\]`), `args = ["600"]`)
	hcl = replaceOnce(b, hcl, regexp.MustCompile(`cpu\s*=\s*4\n`), fmt.Sprintf("cpu = %d\n", cpu))
	return fa.agent.RunJobHCL(b, hcl)
}

// benchWarmCold measures dispatch → task running, alternating warm and
// cold starts.
func benchWarmCold(b *testing.B, fa *flowAgent) (warm, cold []time.Duration) {
	warmJob := benchTartJob(b, fa, "bench-tart-warm", 4)
	coldJob := benchTartJob(b, fa, "bench-tart-cold", 8)
	c := fa.agent.API()
	q := &api.QueryOptions{Namespace: runnerNS}
	w := &api.WriteOptions{Namespace: runnerNS}
	for i := range 2 * benchStartSamples {
		job := warmJob
		if i%2 == 1 {
			job = coldJob
		}
		benchSettle(b, fa)
		begin := time.Now()
		resp, _, err := c.Jobs().Dispatch(job, map[string]string{nomadbackendRunnerKey: fmt.Sprintf("bench-%d", i),
			nomadbackendScaleSetKey: "bench"}, []byte(caseJIT), "", w)
		must.NoError(b, err)
		var started time.Time
		deadline := time.Now().Add(2 * time.Minute)
		for started.IsZero() {
			if time.Now().After(deadline) {
				b.Fatalf("dispatched %s never ran", resp.DispatchedJobID)
			}
			allocs, _, err := c.Jobs().Allocations(resp.DispatchedJobID, true, q)
			must.NoError(b, err)
			for _, a := range allocs {
				if a.ClientStatus == "failed" {
					b.Fatalf("%s failed: %+v", resp.DispatchedJobID, a.TaskStates)
				}
				if ts := a.TaskStates["runner"]; ts != nil && ts.State == "running" {
					started = ts.StartedAt
					if job == warmJob {
						must.True(b, claimedWarm(ts), must.Sprintf("warm sample %d did not claim the warm VM", i))
					} else {
						must.False(b, claimedWarm(ts), must.Sprintf("cold sample %d claimed the warm VM", i))
					}
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		if job == warmJob {
			warm = append(warm, started.Sub(begin))
		} else {
			cold = append(cold, started.Sub(begin))
		}
		_, _, err = c.Jobs().Deregister(resp.DispatchedJobID, true, w)
		must.NoError(b, err)
	}
	return warm, cold
}

// claimedWarm reports whether the task's events say it claimed a warm VM.
func claimedWarm(ts *api.TaskState) bool {
	for _, e := range ts.Events {
		if strings.Contains(e.DisplayMessage, "Claimed warm VM") {
			return true
		}
	}
	return false
}

// benchSettle waits for the state every start sample begins from: no task
// VM, the warm pool's one VM ready.
func benchSettle(b *testing.B, fa *flowAgent) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		n := fa.agent.Node(b)
		if len(taskVMs(fa.agent.TartHome)) == 0 && len(poolVMs(fa.agent.TartHome)) == 1 &&
			n.Attributes["driver.tart.pool."+poolName+".ready"] == "1" {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("the agent did not settle: task VMs %v, pool VMs %v", taskVMs(fa.agent.TartHome), poolVMs(fa.agent.TartHome))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// benchDispatchRate measures benchRateRounds rounds of raw dispatches and
// of service dispatches, alternately, on a job Nomad cannot place. A
// round's rate is its dispatches over the time from the burst's start (the
// first raw call; the jobs queued on the simulator) to the last dispatched
// job's submit time. It returns the median rates, the raw calls'
// latencies and the gaps between the service's dispatches.
func benchDispatchRate(b *testing.B, fa *flowAgent) (service, raw float64, serviceGaps, rawLatency []time.Duration) {
	job := ctlJob("bench-dispatch", b.TempDir())
	job.TaskGroups[0].Tasks[0].Driver = "podman" // never placed: no task competes
	fa.agent.RunJob(b, job)
	var raws, services []float64
	for round := range benchRateRounds {
		r, lat := benchRawRound(b, fa, *job.ID, round)
		raws, rawLatency = append(raws, r), append(rawLatency, lat...)
		sv, gaps := benchServiceRound(b, fa, *job.ID)
		services, serviceGaps = append(services, sv), append(serviceGaps, gaps...)
	}
	b.Logf("  rates per round: raw %v, service %v", roundRates(raws), roundRates(services))
	return median(services), median(raws), serviceGaps, rawLatency
}

func roundRates(rs []float64) string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = fmt.Sprintf("%.0f/s", r)
	}
	return strings.Join(out, " ")
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// benchRawRound dispatches benchDispatches times from benchParallel
// workers, as the service's scaler runs up to 16 starts at once
// (scaler.MaxParallelOps).
func benchRawRound(b *testing.B, fa *flowAgent, jobID string, round int) (float64, []time.Duration) {
	c := fa.agent.API()
	w := &api.WriteOptions{Namespace: runnerNS}
	prefix := fmt.Sprintf("raw%d-", round)
	var mu sync.Mutex
	var wg sync.WaitGroup
	var latency []time.Duration
	next := make(chan int, benchDispatches)
	for i := range benchDispatches {
		next <- i
	}
	close(next)
	begin := time.Now()
	for range benchParallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				start := time.Now()
				_, _, err := c.Jobs().Dispatch(jobID, map[string]string{nomadbackendRunnerKey: fmt.Sprintf("%s%d", prefix, i),
					nomadbackendScaleSetKey: "raw"}, []byte(caseJIT), "", w)
				took := time.Since(start)
				mu.Lock()
				if err != nil {
					b.Errorf("raw dispatch: %v", err)
				}
				latency = append(latency, took)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	times := childSubmitTimes(b, fa, jobID, prefix)
	must.Len(b, benchDispatches, times)
	purgeChildren(b, fa, jobID)
	return burstRate(begin, times), latency
}

// benchServiceRound starts the built service against a fresh simulator,
// queues benchDispatches jobs and waits for as many dispatches.
func benchServiceRound(b *testing.B, fa *flowAgent, jobID string) (float64, []time.Duration) {
	gh, err := actionssim.Start("", actionssim.Options{LongPollTimeout: time.Second, SessionIdleTimeout: 3 * time.Second})
	must.NoError(b, err)
	defer gh.Close()
	cfg, _ := fa.writeServiceConfig(b, gh, []scaleSetSpec{{name: "bench", label: "bench", jobID: jobID, max: benchDispatches}})
	svc := startService(b, cfg, flowPAT)
	waitCtx, cancel := context.WithTimeout(b.Context(), time.Minute)
	defer cancel()
	must.NoError(b, gh.WaitFor(waitCtx, func(s actionssim.Snapshot) bool {
		ss, ok := s.ScaleSetByName("bench")
		return ok && ss.SessionID != ""
	}))
	begin := time.Now()
	gh.QueueJobs(benchDispatches, time.Minute, "bench")
	deadline := time.Now().Add(2 * time.Minute)
	var times []time.Time
	for len(times) < benchDispatches {
		if time.Now().After(deadline) {
			b.Fatalf("the service dispatched %d of %d:\n%s", len(times), benchDispatches, tailLines(svc.logs.String(), 40))
		}
		time.Sleep(50 * time.Millisecond)
		times = childSubmitTimes(b, fa, jobID, "bench-")
	}
	svc.stop(b)
	purgeChildren(b, fa, jobID)
	var gaps []time.Duration
	for i := 1; i < len(times); i++ {
		gaps = append(gaps, times[i].Sub(times[i-1]))
	}
	return burstRate(begin, times), gaps
}

// burstRate is dispatches per second from begin to the last submit time.
func burstRate(begin time.Time, times []time.Time) float64 {
	return float64(len(times)) / times[len(times)-1].Sub(begin).Seconds()
}

// childSubmitTimes are the sorted submit times of job's children whose
// runner name starts with prefix.
func childSubmitTimes(b *testing.B, fa *flowAgent, job, prefix string) []time.Time {
	stubs, _, err := fa.agent.API().Jobs().ListOptions(&api.JobListOptions{Fields: &api.JobListFields{Meta: true}},
		&api.QueryOptions{Namespace: runnerNS, Prefix: job + "/dispatch-"})
	must.NoError(b, err)
	var out []time.Time
	for _, s := range stubs {
		if strings.HasPrefix(s.Meta[nomadbackendRunnerKey], prefix) {
			out = append(out, time.Unix(0, s.SubmitTime))
		}
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out
}

func purgeChildren(b *testing.B, fa *flowAgent, job string) {
	c := fa.agent.API()
	stubs, _, err := c.Jobs().List(&api.QueryOptions{Namespace: runnerNS, Prefix: job + "/dispatch-"})
	must.NoError(b, err)
	for _, s := range stubs {
		_, _, err := c.Jobs().Deregister(s.ID, true, &api.WriteOptions{Namespace: runnerNS})
		must.NoError(b, err)
	}
}
