// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tartnomad/nomad-driver-tart/driver/harness"
)

// BenchmarkStartTask_SustainedBurst is tart's BenchmarkPool_SustainedBurst
// through the whole driver: the built plugin driven by the harness as
// Nomad's client would (StartTask, WaitTask, DestroyTask, supervisors and
// log FIFOs included), with the same simulated delays (faketart: boot 30s,
// resume 3s; the task: a 10s sleep in the guest) and 20 tasks started at
// once, for max_vms 2 and 6 and the modes cold (no pool), warm (a pool of
// 2 booted VMs) and resume (mode = "resume", size 0). The configurations
// run side by side, each with its own plugin and TART_HOME. Reported per
// configuration: all tasks done and StartTask latency p50/p95, each over
// the physical limit (see tart's burstLimit: slots run one VM each; a
// task needs a boot or resume, 0 for the pool's ready VMs, then 10s). The
// plugin polls the guest agent every 50ms (the tests' plugin config).
//
// Unscaled it takes about 7 minutes; NTART_BENCH_TIME_SCALE=0.1 runs ten
// times faster. Run it with:
//
//	nice go test -run '^$' -bench BenchmarkStartTask_SustainedBurst -benchtime 1x -timeout 30m ./driver/
func BenchmarkStartTask_SustainedBurst(b *testing.B) {
	scale := 1.0
	if v := os.Getenv("NTART_BENCH_TIME_SCALE"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			b.Fatalf("NTART_BENCH_TIME_SCALE=%q: want a positive number", v)
		}
		scale = f
	}
	sc := func(d time.Duration) time.Duration { return time.Duration(float64(d) * scale) }
	type config struct {
		mode   string
		maxVMs int
	}
	var configs []config
	for _, m := range []int{2, 6} {
		for _, mode := range []string{"cold", "warm", "resume"} {
			configs = append(configs, config{mode, m})
		}
	}
	const jobs, warmSize = 20, 2
	boot, resume, job := sc(30*time.Second), sc(3*time.Second), sc(10*time.Second)
	for range b.N {
		type result struct {
			done     time.Duration
			lat      []time.Duration
			limit    time.Duration
			limitLat []time.Duration
			paths    map[string]int
		}
		results := make([]result, len(configs))
		var wg sync.WaitGroup
		for i, cfg := range configs {
			wg.Go(func() {
				pool := ""
				switch cfg.mode {
				case "warm":
					pool = fmt.Sprintf("pool {\n  name = \"macos\"\n  image = %q\n  size = %d\n}", testImage, warmSize)
				case "resume":
					pool = fmt.Sprintf("pool {\n  name = \"macos\"\n  image = %q\n  size = 0\n  mode = \"resume\"\n  resume_command = [\"true\"]\n}", testImage)
				}
				_, h := newTartEnv(b, envOptions{Timeout: 30 * time.Minute,
					Env: []string{"FAKETART_BOOT_DELAY=" + boot.String(), "FAKETART_RESUME_DELAY=" + resume.String(),
						"FAKETART_VM_LIMIT=" + strconv.Itoa(cfg.maxVMs), "FAKETART_EXEC_CONNECT_TIMEOUT=2s"},
					PluginConfig: fmt.Sprintf("max_vms = %d\nslot_wait_timeout = \"30m\"\nboot_timeout = \"10m\"\ngc_grace_period = \"30m\"\n%s", cfg.maxVMs, pool)})
				h.WaitFingerprint(b, func(fp *harness.Fingerprint) bool {
					switch cfg.mode {
					case "warm":
						return fp.Attributes["driver.tart.pool.macos.ready"] == strconv.Itoa(warmSize)
					case "resume":
						return fp.Attributes["driver.tart.pool.macos.templates_ready"] == strconv.Itoa(cfg.maxVMs)
					}
					return true
				})
				r := result{paths: map[string]int{}, lat: make([]time.Duration, jobs)}
				var mu sync.Mutex
				var jwg sync.WaitGroup
				start := time.Now()
				for j := range jobs {
					jwg.Go(func() {
						task, err := h.TryStartTask(harness.TaskSpec{Config: sh(fmt.Sprintf("sleep %.3f", job.Seconds()))})
						r.lat[j] = time.Since(start)
						if err != nil {
							b.Errorf("%s max_vms %d: start task %d: %v", cfg.mode, cfg.maxVMs, j, err)
							return
						}
						path := h.InspectTask(b, task.ID).GetDriver().GetAttributes()["start_path"]
						res, err := h.TryWaitTask(context.Background(), task.ID)
						if err == nil && res.ExitCode != 0 {
							err = fmt.Errorf("exit code %d", res.ExitCode)
						}
						if err != nil {
							b.Errorf("%s max_vms %d: task %d: %v", cfg.mode, cfg.maxVMs, j, err)
						}
						if err := h.TryDestroyTask(task.ID, true); err != nil {
							b.Errorf("destroy task %d: %v", j, err)
						}
						mu.Lock()
						r.paths[path]++
						r.done = max(r.done, time.Since(start))
						mu.Unlock()
					})
				}
				jwg.Wait()
				first, cost, warm := boot, boot, 0
				switch cfg.mode {
				case "warm":
					warm = warmSize
				case "resume":
					first, cost = resume, resume
				}
				r.limit, r.limitLat = greedyLimit(jobs, cfg.maxVMs, warm, first, cost, job)
				results[i] = r
			})
		}
		wg.Wait()
		var sb strings.Builder
		fmt.Fprintf(&sb, "\nsustained burst through the driver: %d tasks, boot 30s, resume 3s, job 10s (time scale %g); measured / physical limit\n", jobs, scale)
		fmt.Fprintf(&sb, "%-7s %-7s %-22s %-22s %-22s %s\n", "max_vms", "mode", "all done", "start p50", "start p95", "paths")
		done := map[string]time.Duration{}
		for i, r := range results {
			cfg := configs[i]
			if r.limit == 0 {
				continue
			}
			col := func(m, l time.Duration) string {
				return fmt.Sprintf("%6.1fs / %5.1fs = %.2fx", m.Seconds(), l.Seconds(), m.Seconds()/math.Max(l.Seconds(), 0.001))
			}
			fmt.Fprintf(&sb, "%-7d %-7s %-22s %-22s %-22s %v\n", cfg.maxVMs, cfg.mode, col(r.done, r.limit),
				col(pct(r.lat, 0.5), pct(r.limitLat, 0.5)), col(pct(r.lat, 0.95), pct(r.limitLat, 0.95)), r.paths)
			key := fmt.Sprintf("max%d_%s", cfg.maxVMs, cfg.mode)
			done[key] = r.done
			b.ReportMetric(r.done.Seconds()/r.limit.Seconds(), key+"_done/limit")
		}
		for _, m := range []int{2, 6} {
			w, r := done[fmt.Sprintf("max%d_warm", m)], done[fmt.Sprintf("max%d_resume", m)]
			if w > 0 && r > 0 {
				fmt.Fprintf(&sb, "max_vms %d: resume is %.2fx faster than the warm pool (all tasks done)\n", m, w.Seconds()/r.Seconds())
				b.ReportMetric(w.Seconds()/r.Seconds(), fmt.Sprintf("max%d_warm/resume", m))
			}
		}
		// Printed, not logged: a benchmark's log is truncated, and plugin
		// logs would come first.
		fmt.Print(sb.String())
	}
}

// greedyLimit is the physical limit of n tasks on slots slots (a copy of
// tart's burstLimit, which lives in tart's tests): warm slots hold a VM
// ready at the start; every other start costs first (a slot's first) or
// cost, then the task runs job; each task takes the slot where it can
// start first. It returns the makespan and each task's start latency.
func greedyLimit(n, slots, warm int, first, cost, job time.Duration) (time.Duration, []time.Duration) {
	free := make([]time.Duration, slots)
	used := make([]bool, slots)
	var lat []time.Duration
	var done time.Duration
	for range n {
		best, bestReady := -1, time.Duration(math.MaxInt64)
		for s := range slots {
			ready := free[s] + cost
			switch {
			case !used[s] && s < warm:
				ready = 0
			case !used[s]:
				ready = free[s] + first
			}
			if ready < bestReady {
				best, bestReady = s, ready
			}
		}
		used[best] = true
		free[best] = bestReady + job
		lat = append(lat, bestReady)
		done = max(done, free[best])
	}
	return done, lat
}

func pct(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[max(int(math.Ceil(q*float64(len(s))))-1, 0)]
}
