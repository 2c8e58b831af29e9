// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package actionssim_test

import (
	"context"
	"errors"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/actions/scaleset"
	"github.com/actions/scaleset/listener"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/sim/actionssim"
	"github.com/tartnomad/nomad-driver-tart/sim/fakerunner"
)

// recordingScaler is a listener.Scaler that records what the listener
// hands it.
type recordingScaler struct {
	mu        sync.Mutex
	desired   []int
	started   []*scaleset.JobStarted
	completed []*scaleset.JobCompleted
	changed   chan struct{}
}

func newRecordingScaler() *recordingScaler {
	return &recordingScaler{changed: make(chan struct{}, 1)}
}

func (r *recordingScaler) poke() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recordingScaler) HandleJobStarted(_ context.Context, j *scaleset.JobStarted) error {
	r.mu.Lock()
	r.started = append(r.started, j)
	r.mu.Unlock()
	r.poke()
	return nil
}

func (r *recordingScaler) HandleJobCompleted(_ context.Context, j *scaleset.JobCompleted) error {
	r.mu.Lock()
	r.completed = append(r.completed, j)
	r.mu.Unlock()
	r.poke()
	return nil
}

func (r *recordingScaler) HandleDesiredRunnerCount(_ context.Context, n int) (int, error) {
	r.mu.Lock()
	r.desired = append(r.desired, n)
	r.mu.Unlock()
	r.poke()
	return n, nil
}

// waitUntil polls cond on every scaler change until it holds or ctx ends.
func (r *recordingScaler) waitUntil(ctx context.Context, t *testing.T, what string, cond func(r *recordingScaler) bool) {
	t.Helper()
	for {
		r.mu.Lock()
		ok := cond(r)
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-ctx.Done():
			t.Fatalf("scaler never saw %s", what)
		}
	}
}

func lastDesired(r *recordingScaler) int {
	if len(r.desired) == 0 {
		return -1
	}
	return r.desired[len(r.desired)-1]
}

// runListener runs the official listener until the test ends.
func runListener(t *testing.T, sc *scaleset.MessageSessionClient, scaleSetID, maxRunners int, scaler listener.Scaler) {
	t.Helper()
	l, err := listener.New(sc, listener.Config{ScaleSetID: scaleSetID, MaxRunners: maxRunners})
	must.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx, scaler) }()
	t.Cleanup(func() {
		cancel()
		err := <-done
		if !errors.Is(err, context.Canceled) {
			t.Errorf("listener stopped with %v", err)
		}
	})
}

func TestSimulator_FullFlow_listenerAndFakeRunnerProcess(t *testing.T) {
	t.Parallel()
	bin := testutil.BuildBinary(t, "./sim/cmd/fakerunner")
	var simLog testutil.SyncBuffer
	opts := fastOptions()
	opts.Logger = slog.New(slog.NewTextHandler(&simLog, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := startSim(t, opts)
	c := patClient(t, srv)
	ss := createScaleSet(t, c, "flow", "flow")
	sc := sessionClient(t, c, ss.ID)
	scaler := newRecordingScaler()
	runListener(t, sc, ss.ID, 5, scaler)
	ctx := waitCtx(t)

	scaler.waitUntil(ctx, t, "initial desired count 0", func(r *recordingScaler) bool { return lastDesired(r) == 0 })
	job := srv.QueueJob(actionssim.JobSpec{Labels: []string{"flow"}, Duration: 300 * time.Millisecond})
	scaler.waitUntil(ctx, t, "desired count 1", func(r *recordingScaler) bool { return lastDesired(r) == 1 })

	cfg, err := c.GenerateJitRunnerConfig(ctx, &scaleset.RunnerScaleSetJitRunnerSetting{Name: "flow-runner-1"}, ss.ID)
	must.NoError(t, err)

	var stderr testutil.SyncBuffer
	cmd := exec.CommandContext(ctx, bin, "--jitconfig", "-")
	cmd.Stdin = strings.NewReader(cfg.EncodedJITConfig + "\n")
	cmd.Stderr = &stderr
	must.NoError(t, cmd.Run(), must.Sprintf("fakerunner stderr:\n%s", stderr.String()))

	scaler.waitUntil(ctx, t, "job started, completed and desired count 0", func(r *recordingScaler) bool {
		return len(r.started) == 1 && len(r.completed) == 1 && lastDesired(r) == 0
	})
	scaler.mu.Lock()
	started, completed := scaler.started[0], scaler.completed[0]
	scaler.mu.Unlock()
	must.Eq(t, job.ID, started.JobID)
	must.Eq(t, "flow-runner-1", started.RunnerName)
	must.Eq(t, cfg.Runner.ID, started.RunnerID)
	must.False(t, started.RunnerAssignTime.IsZero())
	must.Eq(t, "succeeded", completed.Result)
	must.Eq(t, "flow-runner-1", completed.RunnerName)
	must.False(t, completed.FinishTime.IsZero())

	// The service's own record, with timestamps for latency accounting.
	var got actionssim.Job
	for _, j := range srv.Jobs() {
		if j.ID == job.ID {
			got = j
		}
	}
	must.Eq(t, actionssim.JobCompleted, got.State)
	must.Eq(t, actionssim.ResultSucceeded, got.Result)
	must.False(t, got.AssignedAt.Before(got.QueuedAt))
	must.False(t, got.StartedAt.Before(got.AssignedAt))
	must.GreaterEq(t, 300*time.Millisecond, got.RunTime())
	must.Positive(t, got.PickupLatency())
	must.Eq(t, got.PickupLatency()+got.RunTime(), got.TotalLatency())
	runners := srv.Runners()
	must.Len(t, 1, runners)
	must.Eq(t, actionssim.RunnerDeleted, runners[0].State)
	must.False(t, runners[0].OnlineAt.IsZero())

	// Ephemeral: the registration is gone, and statistics fell to zero.
	_, err = c.GetRunner(ctx, cfg.Runner.ID)
	must.True(t, errors.Is(err, scaleset.RunnerNotFoundError), must.Sprintf("err = %v", err))
	st, ok := srv.Stats(ss.ID)
	must.True(t, ok)
	must.Eq(t, actionssim.Statistics{}, st)

	// A used JIT config is refused.
	again := exec.CommandContext(ctx, bin)
	again.Env = append(again.Environ(), "ACTIONS_RUNNER_INPUT_JITCONFIG="+cfg.EncodedJITConfig)
	var againErr testutil.SyncBuffer
	again.Stderr = &againErr
	err = again.Run()
	var exitErr *exec.ExitError
	must.True(t, errors.As(err, &exitErr))
	must.Eq(t, 4, exitErr.ExitCode())

	// Secrets never reach logs.
	jit, err := actionssim.ParseJITConfig(cfg.EncodedJITConfig)
	must.NoError(t, err)
	for _, out := range []string{stderr.String(), againErr.String(), simLog.String()} {
		must.StrNotContains(t, out, cfg.EncodedJITConfig)
		must.StrNotContains(t, out, jit.RSAParams.D)
		must.StrNotContains(t, out, sc.Session().MessageQueueAccessToken)
		must.StrNotContains(t, out, testPAT)
	}
	must.StrContains(t, stderr.String(), "job completed")
}

func TestSimulator_Listener_acquisitionFlow(t *testing.T) {
	t.Parallel()
	opts := fastOptions()
	opts.JobAcquisition = true
	srv := startSim(t, opts)
	c := patClient(t, srv)
	ss := createScaleSet(t, c, "ghes")
	sc := sessionClient(t, c, ss.ID)
	scaler := newRecordingScaler()
	runListener(t, sc, ss.ID, 2, scaler)
	ctx := waitCtx(t)

	srv.QueueJobs(3, time.Second)
	// The listener acquires all three; capacity 2 lets two be assigned.
	must.NoError(t, srv.WaitFor(ctx, func(s actionssim.Snapshot) bool {
		return len(s.JobsIn(actionssim.JobAssigned)) == 2 && len(s.JobsIn(actionssim.JobAcquired)) == 1
	}))
	scaler.waitUntil(ctx, t, "desired count 2", func(r *recordingScaler) bool { return lastDesired(r) == 2 })
	must.Positive(t, srv.RequestCount(actionssim.EndpointAcquireJobs))
	st, _ := srv.Stats(ss.ID)
	must.Eq(t, actionssim.Statistics{TotalAcquiredJobs: 1, TotalAssignedJobs: 2}, st)
}

func TestSimulator_AssignTimeout_requeuesThenGivesUp(t *testing.T) {
	t.Parallel()
	opts := fastOptions()
	opts.AssignTimeout = 100 * time.Millisecond
	opts.MaxAssignAttempts = 2
	srv := startSim(t, opts)
	c := patClient(t, srv)
	ss := createScaleSet(t, c, "timeout")
	sc := sessionClient(t, c, ss.ID)
	ctx := waitCtx(t)
	job := srv.QueueJob(actionssim.JobSpec{})

	var kinds []string
	var last int
	for len(kinds) < 4 {
		msg, err := sc.GetMessage(ctx, last, 5)
		must.NoError(t, err)
		if msg == nil {
			continue
		}
		last = msg.MessageID
		must.NoError(t, sc.DeleteMessage(ctx, msg.MessageID))
		for range msg.JobAssignedMessages {
			kinds = append(kinds, "assigned")
		}
		for _, m := range msg.JobCompletedMessages {
			must.Eq(t, "canceled", m.Result)
			must.Eq(t, "", m.RunnerName)
			must.Eq(t, job.ID, m.JobID)
			kinds = append(kinds, "canceled")
		}
	}
	// The listener groups a batch by type, so only the first and the
	// totals are certain.
	must.Eq(t, "assigned", kinds[0])
	slices.Sort(kinds)
	must.Eq(t, []string{"assigned", "assigned", "canceled", "canceled"}, kinds)
	must.NoError(t, srv.WaitFor(ctx, func(s actionssim.Snapshot) bool {
		return len(s.JobsIn(actionssim.JobCompleted)) == 1
	}))
	got := srv.Jobs()[0]
	must.Eq(t, actionssim.ResultCanceled, got.Result)
	must.Eq(t, 2, got.Attempts)
	st, _ := srv.Stats(ss.ID)
	must.Eq(t, actionssim.Statistics{}, st)
}

func TestSimulator_RemoveRunner_busyAndOffline(t *testing.T) {
	t.Parallel()
	srv := startSim(t, fastOptions())
	c := patClient(t, srv)
	ss := createScaleSet(t, c, "busy")
	ctx := waitCtx(t)
	srv.QueueJob(actionssim.JobSpec{Duration: time.Hour})

	cfg, err := c.GenerateJitRunnerConfig(ctx, &scaleset.RunnerScaleSetJitRunnerSetting{Name: "busy-1"}, ss.ID)
	must.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	took := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		_, err := fakerunner.Run(runCtx, fakerunner.Config{JITConfig: cfg.EncodedJITConfig, OnJob: func(id string) { took <- id }})
		done <- err
	}()
	select {
	case <-took:
	case <-ctx.Done():
		t.Fatal("runner never took the job")
	}
	st, _ := srv.Stats(ss.ID)
	must.Eq(t, actionssim.Statistics{TotalAssignedJobs: 1, TotalRunningJobs: 1, TotalRegisteredRunners: 1, TotalBusyRunners: 1}, st)

	err = c.RemoveRunner(ctx, int64(cfg.Runner.ID))
	must.True(t, errors.Is(err, scaleset.JobStillRunningError), must.Sprintf("err = %v", err))

	stop()
	must.Eq(t, fakerunner.ExitInterrupted, fakerunner.Code(<-done))
	_, err = c.GetRunner(ctx, cfg.Runner.ID)
	must.True(t, errors.Is(err, scaleset.RunnerNotFoundError), must.Sprintf("err = %v", err))

	// A runner that never came online is removed normally.
	idle, err := c.GenerateJitRunnerConfig(ctx, &scaleset.RunnerScaleSetJitRunnerSetting{Name: "never-1"}, ss.ID)
	must.NoError(t, err)
	must.NoError(t, c.RemoveRunner(ctx, int64(idle.Runner.ID)))
	_, err = fakerunner.Run(ctx, fakerunner.Config{JITConfig: idle.EncodedJITConfig})
	must.Eq(t, fakerunner.ExitRejected, fakerunner.Code(err))
}

func TestSimulator_WaitFor_conditionsAndClose(t *testing.T) {
	t.Parallel()
	srv, err := actionssim.Start("", fastOptions())
	must.NoError(t, err)
	ss, err := srv.CreateScaleSet("acme", "w")
	must.NoError(t, err)
	ctx := waitCtx(t)
	must.NoError(t, srv.WaitFor(ctx, actionssim.StatsEqual(ss.ID, actionssim.Statistics{})))
	srv.QueueJobs(2, 10*time.Millisecond)
	must.NoError(t, srv.WaitFor(ctx, actionssim.JobsInState(actionssim.JobAssigned, 2)))
	must.NoError(t, srv.WaitFor(ctx, actionssim.StatsEqual(ss.ID, actionssim.Statistics{TotalAssignedJobs: 2})))
	must.Eq(t, time.Duration(0), srv.Jobs()[0].PickupLatency())

	done := make(chan error, 1)
	go func() { done <- srv.WaitFor(ctx, actionssim.JobsCompleted(2)) }()
	srv.Close()
	must.ErrorIs(t, <-done, actionssim.ErrClosed)
}
