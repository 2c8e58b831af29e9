// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package demo runs the credential-free end-to-end demonstration behind
// `make demo` (the program sim/cmd/nomad-gha-scaleset-demo, see Main): the
// Actions simulator (actionssim), the scale-set service, and a burst of
// simulated workflow jobs run by fake runners, through the Docker backend
// when a Docker engine answers, else the Tart backend on faketart. It
// prints live progress and a summary (jobs done, runners left behind,
// latency from job queued to runner online and to job done).
//
// The program runs the real nomad-gha-scaleset binary as a child process
// with a generated config file, as an operator would; tests and the
// benchmark (`make bench`) may run the same service in-process instead
// (Options.ServiceBinary empty).
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/dockerbackend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/tartbackend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/config"
	"github.com/tartnomad/nomad-driver-tart/sim/actionssim"
)

// Backends the demo can use.
const (
	BackendAuto   = "auto"
	BackendDocker = config.BackendDocker
	BackendTart   = config.BackendTart
)

// Options configure a demo run. Zero values take the defaults shown.
type Options struct {
	Backend     string        // auto (default), docker or tart
	Jobs        int           // 50
	MaxRunners  int           // 10
	MinRunners  int           // 0
	JobDuration time.Duration // 200ms; each job runs 0.5x..1.5x of it
	Timeout     time.Duration // 5m for the whole burst
	// BinDir holds fakerunner and faketart (default: next to this
	// executable, then PATH).
	BinDir string
	// ServiceBinary, when set, is the nomad-gha-scaleset binary the demo
	// runs as a child process (`run --config <generated file>`), as an
	// operator would. Empty runs the service in this process (tests and
	// the benchmark).
	ServiceBinary string
	// ServiceLog receives the child service's stdout and stderr (its
	// logs); LogLevel (default error) and LogFormat (default text) are its
	// --log-level and --log-format. In-process, Logger takes their place.
	ServiceLog          io.Writer
	LogLevel, LogFormat string
	// Out receives progress and the summary (default: discard).
	Out io.Writer
	// Progress is the period of progress lines (default 1s; negative: none).
	Progress time.Duration
	// Logger receives the service's logs (default: discard).
	Logger *slog.Logger
	// AfterBurst, when set, is called with the service's metrics URL once
	// the burst has settled, before the service stops (tests scrape it).
	AfterBurst func(metricsURL string)
}

func (o *Options) defaults() {
	if o.Backend == "" {
		o.Backend = BackendAuto
	}
	if o.Jobs == 0 {
		o.Jobs = 50
	}
	if o.MaxRunners == 0 {
		o.MaxRunners = 10
	}
	if o.JobDuration == 0 {
		o.JobDuration = 200 * time.Millisecond
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Progress == 0 {
		o.Progress = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ServiceLog == nil {
		o.ServiceLog = io.Discard
	}
	if o.LogLevel == "" {
		o.LogLevel = "error"
	}
	if o.LogFormat == "" {
		o.LogFormat = "text"
	}
}

// Run runs the demo once.
func Run(ctx context.Context, o Options) (Summary, error) {
	o.defaults()
	began := time.Now()
	scratch, err := os.MkdirTemp("", scratchPrefix)
	if err != nil {
		return Summary{}, fmt.Errorf("failed to create a scratch directory: %w", err)
	}
	defer os.RemoveAll(scratch)
	lk, err := lockScratch(scratch)
	if err != nil {
		return Summary{}, err
	}
	defer lk.Close()
	sweepStale(ctx, o.Out, scratch)

	fakerunner, err := findBinary("fakerunner", o.BinDir)
	if err != nil {
		return Summary{}, err
	}

	env, err := prepareBackend(ctx, o, fakerunner, scratch)
	if err != nil {
		return Summary{}, err
	}
	defer env.cleanup()
	sum := Summary{Backend: env.kind, Why: env.why, Jobs: o.Jobs, MaxRunners: o.MaxRunners}
	fmt.Fprintf(o.Out, "==> backend: %s (%s)\n", env.kind, env.why)

	sim, err := actionssim.Start("127.0.0.1:0", actionssim.Options{
		LongPollTimeout:    2 * time.Second,
		SessionIdleTimeout: 30 * time.Second,
		RunnerPollTimeout:  5 * time.Second,
		AssignTimeout:      2 * time.Minute,
	})
	if err != nil {
		return sum, fmt.Errorf("failed to start the Actions simulator: %w", err)
	}
	defer sim.Close()
	fmt.Fprintf(o.Out, "==> simulated GitHub at %s\n", sim.URL)

	name := map[string]string{BackendDocker: "linux", BackendTart: "macos"}[env.kind]
	cfg, err := serviceConfig(sim.OrgConfigURL("octo-org"), name, filepath.Join(scratch, "state"), env, o)
	if err != nil {
		return sum, err
	}
	var svc scaleSetService
	if o.ServiceBinary != "" {
		svc, err = startProcess(ctx, o, cfg, env, sim, scratch)
	} else {
		svc, err = startInProcess(ctx, o, cfg)
	}
	if err != nil {
		return sum, err
	}
	stopped := false
	stopService := func() {
		if stopped {
			return
		}
		stopped = true
		if err := svc.stop(); err != nil {
			fmt.Fprintf(o.Out, "service stopped with an error: %v\n", err)
		}
	}
	defer stopService()

	wctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if err := waitSession(wctx, sim, svc, name); err != nil {
		stopped = true
		return sum, fmt.Errorf("%w (service: %w)", err, svc.stop())
	}
	addr := svc.addr()
	fmt.Fprintf(o.Out, "==> nomad-gha-scaleset %slistening for scale set %q (max_runners %d); metrics at http://%s/metrics\n", svc.describe(), name, o.MaxRunners, addr)

	burstAt := time.Now()
	queueBurst(sim, name, o)
	fmt.Fprintf(o.Out, "==> queued %d jobs (%s each, ±50%%)\n", o.Jobs, o.JobDuration)

	stopProgress := progress(wctx, o, sim, svc, burstAt)
	waitErr := waitService(wctx, sim, svc, actionssim.JobsCompleted(o.Jobs))
	sum.Interrupted = ctx.Err() != nil
	if waitErr == nil {
		// let the service clean up the finished runners on its own
		settle(wctx, sim, svc)
	}
	stopProgress()
	if o.AfterBurst != nil {
		o.AfterBurst("http://" + addr + "/metrics")
	}

	snap := sim.Snapshot()
	fillLatencies(&sum, snap, burstAt)
	if waitErr == nil {
		// A finished burst leaves nothing: count what the service kept.
		if n, err := svc.held(context.WithoutCancel(ctx)); err == nil {
			sum.LeftBehind += n
		}
		sum.LeftBehind += len(snap.RunnersIn(actionssim.RunnerOffline, actionssim.RunnerIdle, actionssim.RunnerBusy))
	}
	sum.PeakRunners = svc.peak()

	stopService()
	// The service keeps busy runners for its next process; the demo has
	// none, so it removes them (an interrupted or timed-out burst).
	sum.Purged = svc.purge(context.WithoutCancel(ctx), o.Out)
	if env.held != nil {
		n, err := env.held(context.WithoutCancel(ctx))
		if err == nil && n > sum.LeftBehind {
			sum.LeftBehind = n
		}
	}
	sum.Wall = time.Since(began)
	printSummary(o.Out, sum)
	switch {
	case sum.Interrupted:
		return sum, fmt.Errorf("%w after %d of %d jobs; cleaned up", ErrInterrupted, sum.Done, sum.Jobs)
	case errors.Is(waitErr, errServiceStopped):
		return sum, fmt.Errorf("%w during the burst, after %d of %d jobs", waitErr, sum.Done, sum.Jobs)
	case waitErr != nil:
		return sum, fmt.Errorf("not every job finished within %s: %w", o.Timeout, waitErr)
	}
	return sum, nil
}

// errServiceStopped: the service ended by itself while the demo waited.
var errServiceStopped = errors.New("the service stopped")

// waitSession waits until the service holds its message session.
func waitSession(ctx context.Context, sim *actionssim.Server, svc scaleSetService, name string) error {
	err := waitService(ctx, sim, svc, actionssim.HasSession(name))
	switch {
	case errors.Is(err, errServiceStopped):
		return fmt.Errorf("%w before it opened its session", err)
	case err != nil:
		return fmt.Errorf("the service never opened its session: %w", err)
	}
	return nil
}

// waitService waits for cond on the simulator, failing early with
// errServiceStopped when the service ends first.
func waitService(ctx context.Context, sim *actionssim.Server, svc scaleSetService, cond func(actionssim.Snapshot) bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-svc.done():
			cancel()
		case <-ctx.Done():
		}
	}()
	err := sim.WaitFor(ctx, cond)
	if err != nil {
		select {
		case <-svc.done():
			return errServiceStopped
		default:
		}
	}
	return err
}

func queueBurst(sim *actionssim.Server, label string, o Options) {
	r := rand.New(rand.NewPCG(1, 2)) // same burst every run
	for i := range o.Jobs {
		d := time.Duration(float64(o.JobDuration) * (0.5 + r.Float64()))
		sim.QueueJob(actionssim.JobSpec{
			Labels: []string{label}, Duration: d,
			DisplayName: fmt.Sprintf("build (%d)", i+1), EventName: "push",
		})
	}
}

// settle waits (bounded) until no runner is alive on either side.
func settle(ctx context.Context, sim *actionssim.Server, svc scaleSetService) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		live := len(sim.Snapshot().RunnersIn(actionssim.RunnerOffline, actionssim.RunnerIdle, actionssim.RunnerBusy))
		if c, err := svc.counts(ctx); err == nil && live == 0 && c.active()+c.finishing == 0 {
			if n, err := svc.held(ctx); err == nil && n == 0 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func fillLatencies(sum *Summary, snap actionssim.Snapshot, burstAt time.Time) {
	runners := map[int]actionssim.Runner{}
	for _, r := range snap.Runners {
		runners[r.ID] = r
	}
	var toOnline, toDone []time.Duration
	var last time.Time
	for _, j := range snap.Jobs {
		if j.State != actionssim.JobCompleted {
			continue
		}
		sum.Done++
		if j.Result == actionssim.ResultSucceeded {
			sum.Succeeded++
		}
		toDone = append(toDone, j.CompletedAt.Sub(j.QueuedAt))
		if j.CompletedAt.After(last) {
			last = j.CompletedAt
		}
		if r, ok := runners[j.RunnerID]; ok && !r.OnlineAt.IsZero() {
			online := r.OnlineAt
			if online.Before(j.QueuedAt) {
				online = j.QueuedAt // a warm runner was already waiting
			}
			toOnline = append(toOnline, online.Sub(j.QueuedAt))
		}
	}
	sum.QueuedToOnline = latencyOf(toOnline)
	sum.QueuedToDone = latencyOf(toDone)
	if !last.IsZero() {
		sum.AllDone = last.Sub(burstAt)
	}
}

func progress(ctx context.Context, o Options, sim *actionssim.Server, svc scaleSetService, burstAt time.Time) (stop func()) {
	if o.Progress < 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	line := func() {
		snap := sim.Snapshot()
		queued := len(snap.JobsIn(actionssim.JobQueued, actionssim.JobAvailable, actionssim.JobAcquired, actionssim.JobAssigned))
		running := len(snap.JobsIn(actionssim.JobRunning))
		doneN := len(snap.JobsIn(actionssim.JobCompleted))
		c, _ := svc.counts(context.WithoutCancel(ctx))
		fmt.Fprintf(o.Out, "[%6.1fs] jobs: queued %3d  running %3d  done %3d/%d | runners: starting %2d  idle %2d  busy %2d\n",
			time.Since(burstAt).Seconds(), queued, running, doneN, o.Jobs, c.starting, c.idle, c.busy)
	}
	go func() {
		defer close(done)
		t := time.NewTicker(o.Progress)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				line()
				return
			case <-t.C:
				line()
			}
		}
	}()
	return func() { cancel(); <-done }
}

// backendEnv is what the chosen backend needs and how to clean it up.
type backendEnv struct {
	kind, why string
	docker    *dockerbackend.Config
	tart      *tartbackend.Config
	cleanup   func()
	// held counts the runners the backend holds, as an operator would
	// (docker ps, tart list); purge removes them and returns how many.
	held  func(ctx context.Context) (int, error)
	purge func(ctx context.Context) (int, error)
}
