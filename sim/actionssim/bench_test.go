// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package actionssim_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/actions/scaleset"
	"github.com/actions/scaleset/listener"

	"github.com/tartnomad/nomad-driver-tart/sim/actionssim"
	"github.com/tartnomad/nomad-driver-tart/sim/fakerunner"
)

// jitScaler starts one in-process fake runner per missing runner, the way a
// real scaler uses JIT configs.
type jitScaler struct {
	client     *scaleset.Client
	scaleSetID int
	ctx        context.Context
	wg         sync.WaitGroup

	mu   sync.Mutex
	live int
	next int
}

func (s *jitScaler) HandleJobStarted(context.Context, *scaleset.JobStarted) error     { return nil }
func (s *jitScaler) HandleJobCompleted(context.Context, *scaleset.JobCompleted) error { return nil }

func (s *jitScaler) HandleDesiredRunnerCount(ctx context.Context, n int) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.live < n {
		s.next++
		cfg, err := s.client.GenerateJitRunnerConfig(ctx,
			&scaleset.RunnerScaleSetJitRunnerSetting{Name: fmt.Sprintf("bench-%d", s.next)}, s.scaleSetID)
		if err != nil {
			return s.live, err
		}
		s.live++
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_, _ = fakerunner.Run(s.ctx, fakerunner.Config{JITConfig: cfg.EncodedJITConfig})
			s.mu.Lock()
			s.live--
			s.mu.Unlock()
		}()
	}
	return s.live, nil
}

// BenchmarkSimulator_JobsThroughListener runs jobs end to end (official
// listener, JIT configs, in-process fake runners) and reports the
// simulator's overhead as a ratio of end-to-end time to the jobs' own run
// time, plus the pickup latency.
func BenchmarkSimulator_JobsThroughListener(b *testing.B) {
	const jobs, runFor = 20, 200 * time.Millisecond
	for b.Loop() {
		srv, err := actionssim.Start("", actionssim.Options{
			LongPollTimeout: time.Second, RunnerPollTimeout: time.Second,
		})
		if err != nil {
			b.Fatal(err)
		}
		client, err := scaleset.NewClientWithPersonalAccessToken(scaleset.NewClientWithPersonalAccessTokenConfig{
			GitHubConfigURL: srv.OrgConfigURL("bench"), PersonalAccessToken: "x",
		})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		ss, err := client.CreateRunnerScaleSet(ctx, &scaleset.RunnerScaleSet{Name: "bench", RunnerGroupID: 1})
		if err != nil {
			b.Fatal(err)
		}
		sc, err := client.MessageSessionClient(ctx, ss.ID, "bench")
		if err != nil {
			b.Fatal(err)
		}
		l, err := listener.New(sc, listener.Config{ScaleSetID: ss.ID, MaxRunners: jobs})
		if err != nil {
			b.Fatal(err)
		}
		// Runners started for stale counts wait idle; they stop with runCtx.
		runCtx, stopRunners := context.WithCancel(ctx)
		scaler := &jitScaler{client: client, scaleSetID: ss.ID, ctx: runCtx}
		lctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- l.Run(lctx, scaler) }()

		start := time.Now()
		srv.QueueJobs(jobs, runFor)
		if err := srv.WaitFor(ctx, actionssim.JobsCompleted(jobs)); err != nil {
			b.Fatal(err)
		}
		wall := time.Since(start)
		stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			b.Fatal(err)
		}
		stopRunners()
		scaler.wg.Wait()
		_ = sc.Close(context.Background())

		var pickup, total time.Duration
		for _, j := range srv.Jobs() {
			pickup += j.PickupLatency()
			total += j.TotalLatency()
		}
		b.ReportMetric(float64(pickup.Milliseconds())/jobs, "pickup-ms/job")
		b.ReportMetric(float64(total)/float64(jobs*runFor), "e2e/runtime-ratio")
		b.ReportMetric(float64(jobs)/wall.Seconds(), "jobs/s")
		cancel()
		srv.Close()
	}
}
