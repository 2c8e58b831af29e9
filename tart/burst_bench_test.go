// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

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
)

// Simulated delays of BenchmarkPool_SustainedBurst (issue 14): a macOS
// boot, a resume from a snapshot, one CI job. NTART_BENCH_TIME_SCALE
// multiplies all three (and the agent poll interval); default 1.
const (
	burstBoot   = 30 * time.Second
	burstResume = 3 * time.Second
	burstJob    = 10 * time.Second
	burstJobs   = 20
	// burstWarmSize is the warm pool of the "warm" mode, as measured in
	// issue 14 (pool 2).
	burstWarmSize = 2
)

// burstConfig is one column of the benchmark.
type burstConfig struct {
	mode   string // cold, warm, resume
	maxVMs int
}

// burstResult is what one configuration measured.
type burstResult struct {
	cfg      burstConfig
	done     time.Duration   // all jobs done, from the burst's start
	latency  []time.Duration // per job: Provision's duration
	paths    map[StartPath]int
	limit    time.Duration   // physical limit of done
	limitLat []time.Duration // physical limit of each start latency
	err      error
}

// BenchmarkPool_SustainedBurst runs, side by side in one run and with the
// same simulated delays (faketart: boot 30s, resume 3s; job: a 10s sleep
// in the guest), a burst of 20 jobs through the tart library's Pool (the
// calls the driver's StartTask and the scale-set backend make: Provision,
// then the job as a tart exec, then Release) for max_vms 2 and 6 and three
// modes: cold (no pool), warm (today's pool of 2 booted VMs, with the
// soonest-ready claim) and resume (a suspended template per slot). Each
// configuration runs in its own TART_HOME, concurrently with the others.
//
// For each it reports the all-jobs-done time and the p50/p95 start
// latency next to the physical limit of that configuration, as ratios.
// The limit is a greedy schedule with no overhead: max_vms slots run at
// most max_vms VMs at once; a job in a slot first needs its VM ready
// (0 for a warm VM that is ready at the start, else a boot or a resume),
// then runs 10s; each job goes to the slot where it can start first.
//
// The unscaled run takes about 7 minutes. NTART_BENCH_TIME_SCALE=0.1
// runs everything ten times faster (faketart and process overheads then
// weigh more). Run it with:
//
//	nice go test -run '^$' -bench BenchmarkPool_SustainedBurst -benchtime 1x -timeout 30m ./tart/
func BenchmarkPool_SustainedBurst(b *testing.B) {
	scale := 1.0
	if v := os.Getenv("NTART_BENCH_TIME_SCALE"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			b.Fatalf("NTART_BENCH_TIME_SCALE=%q: want a positive number", v)
		}
		scale = f
	}
	sc := func(d time.Duration) time.Duration { return time.Duration(float64(d) * scale) }
	var configs []burstConfig
	for _, maxVMs := range []int{2, 6} {
		for _, mode := range []string{"cold", "warm", "resume"} {
			configs = append(configs, burstConfig{mode: mode, maxVMs: maxVMs})
		}
	}
	for range b.N {
		results := make([]burstResult, len(configs))
		var wg sync.WaitGroup
		for i, cfg := range configs {
			wg.Go(func() { results[i] = runBurst(b, cfg, sc) })
		}
		wg.Wait()
		reportBurst(b, results, scale)
	}
}

// runBurst measures one configuration.
func runBurst(b *testing.B, cfg burstConfig, sc func(time.Duration) time.Duration) burstResult {
	res := burstResult{cfg: cfg, paths: map[StartPath]int{}}
	e := newFT(b, "FAKETART_BOOT_DELAY="+sc(burstBoot).String(), "FAKETART_RESUME_DELAY="+sc(burstResume).String(),
		"FAKETART_VM_LIMIT="+strconv.Itoa(cfg.maxVMs), "FAKETART_EXEC_CONNECT_TIMEOUT=2s")
	c := e.client()
	ctx := context.Background()
	if _, err := c.EnsureImage(ctx, ftImage, PullOptions{}); err != nil {
		res.err = err
		return res
	}
	slots, err := NewSlots(cfg.maxVMs, "burst-"+cfg.mode)
	if err != nil {
		res.err = err
		return res
	}
	var pools []PoolConfig
	switch cfg.mode {
	case "warm":
		pools = []PoolConfig{{Name: "mac", Size: burstWarmSize, VMSpec: VMSpec{Image: ftImage}}}
	case "resume":
		pools = []PoolConfig{{Name: "mac", Mode: ModeResume, ResumeCommand: []string{"true"}, VMSpec: VMSpec{Image: ftImage}}}
	}
	p, err := NewPool(c, slots, pools, PoolOptions{ReadyInterval: sc(time.Second), StopTimeout: 10 * time.Second,
		BootTimeout: 10 * time.Minute, ExpectedBoot: sc(burstBoot), ExpectedResume: sc(burstResume)})
	if err != nil {
		res.err = err
		return res
	}
	if err := p.Start(ctx); err != nil {
		res.err = err
		return res
	}
	defer func() { _ = p.Shutdown(context.Background()) }()
	// Steady state before the burst: the pool is full, templates built.
	for deadline := time.Now().Add(10 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		st := p.Stats()
		if len(st) == 0 || (st[0].Ready == st[0].Size && st[0].TemplatesReady == tmplWant(cfg)) {
			break
		}
	}
	res.done, res.latency, res.err = burst(ctx, p, res.paths, sc(burstJob))
	first, cost := sc(burstBoot), sc(burstBoot)
	warm := 0
	switch cfg.mode {
	case "warm":
		warm = burstWarmSize
	case "resume":
		first, cost = sc(burstResume), sc(burstResume)
	}
	res.limit, res.limitLat = burstLimit(burstJobs, cfg.maxVMs, warm, first, cost, sc(burstJob))
	return res
}

func tmplWant(cfg burstConfig) int {
	if cfg.mode == "resume" {
		return cfg.maxVMs
	}
	return 0
}

// burst starts burstJobs jobs at once; each provisions a VM, runs the job
// in the guest and releases the VM.
func burst(ctx context.Context, p *Pool, paths map[StartPath]int, job time.Duration) (time.Duration, []time.Duration, error) {
	start := time.Now()
	lat := make([]time.Duration, burstJobs)
	errs := make([]error, burstJobs)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range burstJobs {
		wg.Go(func() {
			vm, err := p.Provision(ctx, TaskVMName(fmt.Sprintf("burst-%d", i)), fmt.Sprintf("job-%d", i), VMSpec{Image: ftImage}, nil)
			lat[i] = time.Since(start)
			if err != nil {
				errs[i] = err
				return
			}
			mu.Lock()
			paths[vm.Path]++
			mu.Unlock()
			code, err := p.client.Exec(ctx, vm.Name, []string{"sleep", strconv.FormatFloat(job.Seconds(), 'f', 3, 64)}, ExecOptions{})
			if err == nil && code != 0 {
				err = fmt.Errorf("job exited %d", code)
			}
			if rerr := p.Release(context.Background(), vm); err == nil {
				err = rerr
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return 0, nil, err
		}
	}
	return time.Since(start), lat, nil
}

// burstLimit is the physical limit: n jobs on `slots` slots, `warm` of
// which hold a VM ready at the start; a job needs its VM made ready
// (first for the first job of a slot without a ready VM, cost for later
// ones) and then runs job. Each job takes the slot where it can start
// soonest. It returns the makespan and each job's start latency (time
// until its VM is ready).
func burstLimit(n, slots, warm int, first, cost, job time.Duration) (time.Duration, []time.Duration) {
	free := make([]time.Duration, slots) // when the slot can start making a VM ready
	used := make([]bool, slots)
	var lat []time.Duration
	var done time.Duration
	for range n {
		best, bestReady := -1, time.Duration(math.MaxInt64)
		for s := range slots {
			var ready time.Duration
			switch {
			case !used[s] && s < warm:
				ready = 0
			case !used[s]:
				ready = free[s] + first
			default:
				ready = free[s] + cost
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

func percentile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(i, 0)]
}

// reportBurst prints the table and reports the ratios as metrics.
func reportBurst(b *testing.B, results []burstResult, scale float64) {
	var sb strings.Builder
	fmt.Fprintf(&sb, "\nsustained burst: %d jobs, boot %s, resume %s, job %s (time scale %g); measured / physical limit\n",
		burstJobs, burstBoot, burstResume, burstJob, scale)
	fmt.Fprintf(&sb, "%-7s %-7s %-22s %-22s %-22s %s\n", "max_vms", "mode", "all done", "start p50", "start p95", "paths")
	done := map[string]time.Duration{}
	for _, r := range results {
		if r.err != nil {
			b.Errorf("%s max_vms %d: %v", r.cfg.mode, r.cfg.maxVMs, r.err)
			continue
		}
		col := func(m, l time.Duration) string {
			return fmt.Sprintf("%6.1fs / %5.1fs = %.2fx", m.Seconds(), l.Seconds(), m.Seconds()/math.Max(l.Seconds(), 0.001))
		}
		p50, p95 := percentile(r.latency, 0.5), percentile(r.latency, 0.95)
		l50, l95 := percentile(r.limitLat, 0.5), percentile(r.limitLat, 0.95)
		fmt.Fprintf(&sb, "%-7d %-7s %-22s %-22s %-22s warm %d, resumed %d, cold %d\n", r.cfg.maxVMs, r.cfg.mode,
			col(r.done, r.limit), col(p50, l50), col(p95, l95), r.paths[PathWarm], r.paths[PathResumed], r.paths[PathCold])
		key := fmt.Sprintf("max%d_%s", r.cfg.maxVMs, r.cfg.mode)
		done[key] = r.done
		b.ReportMetric(r.done.Seconds(), key+"_done_s")
		b.ReportMetric(r.done.Seconds()/r.limit.Seconds(), key+"_done/limit")
		b.ReportMetric(p95.Seconds()/math.Max(l95.Seconds(), 0.001), key+"_p95/limit")
	}
	for _, m := range []int{2, 6} {
		w, r := done[fmt.Sprintf("max%d_warm", m)], done[fmt.Sprintf("max%d_resume", m)]
		if w > 0 && r > 0 {
			fmt.Fprintf(&sb, "max_vms %d: resume is %.2fx faster than the warm pool (all jobs done)\n", m, w.Seconds()/r.Seconds())
			b.ReportMetric(w.Seconds()/r.Seconds(), fmt.Sprintf("max%d_warm/resume", m))
		}
	}
	// Printed, not logged: a benchmark's log is truncated.
	fmt.Print(sb.String())
}

// Test_burstLimit pins the physical limits the benchmark prints.
func Test_burstLimit(t *testing.T) {
	t.Parallel()
	s := time.Second
	for _, tc := range []struct {
		name                 string
		slots, warm          int
		first, cost          time.Duration
		wantDone, wantP95Lat time.Duration
	}{
		{"cold_2", 2, 0, 30 * s, 30 * s, 400 * s, 390 * s},
		{"warm_2", 2, 2, 30 * s, 30 * s, 370 * s, 360 * s},
		{"resume_2", 2, 0, 3 * s, 3 * s, 130 * s, 120 * s},
		{"cold_6", 6, 0, 30 * s, 30 * s, 160 * s, 150 * s},
		{"warm_6", 6, 2, 30 * s, 30 * s, 130 * s, 120 * s},
		{"resume_6", 6, 0, 3 * s, 3 * s, 52 * s, 42 * s},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done, lat := burstLimit(20, tc.slots, tc.warm, tc.first, tc.cost, 10*s)
			if done != tc.wantDone || percentile(lat, 0.95) != tc.wantP95Lat {
				t.Fatalf("limit %s, p95 %s; want %s, %s", done, percentile(lat, 0.95), tc.wantDone, tc.wantP95Lat)
			}
		})
	}
}
