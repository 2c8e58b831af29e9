// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/actions/scaleset"
	"github.com/actions/scaleset/listener"

	"github.com/tartnomad/nomad-driver-tart/internal/backoff"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/config"
	"github.com/tartnomad/nomad-driver-tart/scaleset/metrics"
	"github.com/tartnomad/nomad-driver-tart/scaleset/scaler"
	"github.com/tartnomad/nomad-driver-tart/version"
)

// systemName identifies this service to GitHub (SystemInfo.System).
const systemName = "nomad-gha-scaleset"

// ErrSessionConflict means another listener kept the scale set's message
// session for longer than session_conflict_timeout.
var ErrSessionConflict = errors.New("another listener holds the message session of this scale set")

// session is the message session as the service uses it.
type session interface {
	listener.Client
	Close(ctx context.Context) error
}

// scaleSetRunner owns one scale set: its client, session, listener, scaler
// and backend.
type scaleSetRunner struct {
	cfg      *config.ScaleSet
	gh       *ghClient
	logger   *slog.Logger
	metrics  *metrics.Metrics
	rec      *metrics.ScaleSet
	newBE    BackendFactory
	owner    string
	retry    Backoff
	shutdown time.Duration
	// stateDir holds the scale set's start journal.
	stateDir string

	ready atomic.Bool
	// lastContact is when the Actions service last answered the message
	// session (the session opened, a message poll returned), in Unix
	// nanoseconds; pollErr is the last poll's error, nil once a poll
	// succeeds. With unreachableAfter they make readiness fail in a
	// GitHub outage, while the listener keeps retrying (see reachable).
	lastContact      atomic.Int64
	pollErr          atomic.Pointer[error]
	unreachableAfter time.Duration
	// backendErr holds the backend's health problem (nil: healthy). While
	// it is set the listener offers GitHub no capacity.
	backendErr atomic.Pointer[error]
	// current is the running listener, for capacity changes.
	current atomic.Pointer[listener.Listener]
	// labelGroup is the runner group id when the scale set's labels
	// differ from the configured ones (0: they match or were updated).
	labelGroup atomic.Int64
	// standby is true while another listener holds the message session:
	// this instance waits and changes nothing.
	standby    atomic.Bool
	scaler     atomic.Pointer[scaler.Scaler]
	scaleSetID atomic.Int64
}

// listenerRecorder fans listener hooks out to metrics and the scaler.
type listenerRecorder struct {
	rec *metrics.ScaleSet
	s   *scaler.Scaler
}

func (l listenerRecorder) RecordStatistics(st *scaleset.RunnerScaleSetStatistic) {
	l.rec.RecordStatistics(st)
	l.s.ObserveStatistics(st)
}
func (l listenerRecorder) RecordJobStarted(m *scaleset.JobStarted)     { l.rec.RecordJobStarted(m) }
func (l listenerRecorder) RecordJobCompleted(m *scaleset.JobCompleted) { l.rec.RecordJobCompleted(m) }
func (l listenerRecorder) RecordDesiredRunners(n int)                  { l.rec.RecordDesiredRunners(n) }

// run drives the scale set until ctx ends. It returns nil on a clean
// shutdown and an error only for conditions retrying cannot fix (a session
// conflict that outlived its timeout, a backend that cannot be built).
func (r *scaleSetRunner) run(ctx context.Context) error {
	rs, err := r.ensureScaleSet(ctx)
	if err != nil {
		return err
	}
	log := r.logger.With("scale_set_id", rs.ID)
	journal, err := openJournal(r.stateDir, rs.ID)
	if err != nil {
		return fmt.Errorf("scale set %q: %w", r.cfg.Name, err)
	}

	be, err := r.newBE(ctx, r.cfg, r.logger)
	if err != nil {
		return fmt.Errorf("scale set %q: failed to create %s backend: %w", r.cfg.Name, r.cfg.Backend, err)
	}
	if wp, ok := be.(backend.WarmPool); ok {
		defer r.rec.ObserveWarmPool(wp)()
	}
	sc, err := scaler.New(scaler.Config{
		ScaleSetID:        rs.ID,
		NamePrefix:        r.cfg.RunnerNamePrefix,
		NameTag:           nameTag(),
		MinRunners:        r.cfg.MinRunners,
		MaxRunners:        r.cfg.Max(),
		OnlineTimeout:     r.cfg.Durations.RunnerOnlineTimeout,
		QueueTimeout:      r.cfg.Durations.RunnerQueueTimeout,
		ReconcileInterval: r.cfg.Durations.ReconcileInterval,
		StartBackoffMin:   r.cfg.Durations.StartBackoffMin,
		StartBackoffMax:   r.cfg.Durations.StartBackoffMax,
	}, r.gh, be, scaler.WithLogger(r.logger.With("component", "scaler")), scaler.WithRecorder(r.rec),
		scaler.WithHealthHook(func(healthy bool, err error) { r.backendHealth(log, healthy, err) }),
		scaler.WithJournal(journal))
	if err != nil {
		be.Shutdown(context.WithoutCancel(ctx))
		return fmt.Errorf("scale set %q: %w", r.cfg.Name, err)
	}
	r.scaler.Store(sc)

	var wg sync.WaitGroup
	scalerCtx, stopScaler := context.WithCancel(context.WithoutCancel(ctx))
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc.Run(scalerCtx)
	}()

	runErr := r.listen(ctx, rs.ID, sc, log)

	// Graceful shutdown: stop scaling, optionally remove idle runners,
	// stop the backend. The session is already deleted by listen.
	stopScaler()
	wg.Wait()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.shutdown)
	defer cancel()
	sc.Shutdown(sctx, r.cfg.RemoveIdleRunnersOnShutdown)
	be.Shutdown(sctx)
	log.Info("scale set stopped", "remove_idle_runners", r.cfg.RemoveIdleRunnersOnShutdown)
	return runErr
}

// ensureScaleSet gets the scale set by name (creating it, or updating its
// labels) with backoff until it succeeds or ctx ends.
func (r *scaleSetRunner) ensureScaleSet(ctx context.Context) (*scaleset.RunnerScaleSet, error) {
	var attempt int
	for {
		rs, err := r.getOrCreate(ctx)
		if err == nil {
			r.scaleSetID.Store(int64(rs.ID))
			r.gh.SetSystemInfo(systemInfo(rs.ID))
			return rs, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		attempt++
		d := r.retry.Delay(attempt)
		r.logger.Error("failed to get or create scale set, retrying", "error", err, "attempt", attempt, "retry_in", d.String())
		if !sleep(ctx, d) {
			return nil, ctx.Err()
		}
	}
}

func (r *scaleSetRunner) getOrCreate(ctx context.Context) (*scaleset.RunnerScaleSet, error) {
	groupID := 1
	if r.cfg.RunnerGroup != scaleset.DefaultRunnerGroup {
		g, err := r.gh.client().GetRunnerGroupByName(ctx, r.cfg.RunnerGroup)
		if err != nil {
			return nil, fmt.Errorf("failed to look up runner_group %q: %w", r.cfg.RunnerGroup, err)
		}
		groupID = g.ID
	}
	labels := r.labels()
	rs, err := r.gh.client().GetRunnerScaleSet(ctx, groupID, r.cfg.RunnerScaleSetName)
	if err != nil {
		return nil, fmt.Errorf("failed to look up scale set %q: %w", r.cfg.RunnerScaleSetName, err)
	}
	if rs == nil {
		rs, err = r.gh.client().CreateRunnerScaleSet(ctx, &scaleset.RunnerScaleSet{
			Name:          r.cfg.RunnerScaleSetName,
			RunnerGroupID: groupID,
			Labels:        labels,
			RunnerSetting: scaleset.RunnerSetting{DisableUpdate: true},
		})
		if err != nil {
			return nil, fmt.Errorf("failed to create scale set %q: %w", r.cfg.RunnerScaleSetName, err)
		}
		r.logger.Info("created scale set", "scale_set_id", rs.ID, "runner_group_id", groupID)
		return rs, nil
	}
	if !sameLabels(rs.Labels, labels) {
		// Changing the labels changes the scale set: only its owner may,
		// once it holds the message session (see updateLabels).
		r.labelGroup.Store(int64(groupID))
		r.logger.Info("found scale set; its labels differ and are updated once this process holds the session", "scale_set_id", rs.ID)
		return rs, nil
	}
	r.logger.Info("found scale set", "scale_set_id", rs.ID)
	return rs, nil
}

// updateLabels sets the configured labels on the scale set when they
// differed at start-up. Called with the message session held; a failure
// is logged and tried again at the next session.
func (r *scaleSetRunner) updateLabels(ctx context.Context, scaleSetID int, log *slog.Logger) {
	groupID := r.labelGroup.Load()
	if groupID == 0 {
		return
	}
	_, err := r.gh.client().UpdateRunnerScaleSet(ctx, scaleSetID, &scaleset.RunnerScaleSet{
		RunnerGroupID: int(groupID), Labels: r.labels(), RunnerSetting: scaleset.RunnerSetting{DisableUpdate: true},
	})
	if err != nil {
		log.Warn("failed to update scale set labels, will retry with the next session", "error", err)
		return
	}
	r.labelGroup.Store(0)
	log.Info("updated scale set labels")
}

func (r *scaleSetRunner) labels() []scaleset.Label {
	names := r.cfg.Labels
	if len(names) == 0 {
		names = []string{r.cfg.RunnerScaleSetName}
	}
	out := make([]scaleset.Label, 0, len(names))
	for _, n := range names {
		out = append(out, scaleset.Label{Type: "System", Name: n})
	}
	return out
}

func sameLabels(a, b []scaleset.Label) bool {
	names := func(ls []scaleset.Label) []string {
		var out []string
		for _, l := range ls {
			out = append(out, strings.ToLower(l.Name))
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(names(a), names(b))
}

func systemInfo(scaleSetID int) scaleset.SystemInfo {
	return scaleset.SystemInfo{
		System:     systemName,
		Version:    version.String(),
		CommitSHA:  version.GitCommit,
		ScaleSetID: scaleSetID,
		Subsystem:  "listener",
	}
}

// listen keeps a session and a listener running until ctx ends. A failed
// listener is restarted with backoff, on the same session unless the
// session was lost. It deletes the session before returning.
func (r *scaleSetRunner) listen(ctx context.Context, scaleSetID int, sc *scaler.Scaler, log *slog.Logger) error {
	var sess session
	defer func() {
		if sess == nil {
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.shutdown)
		defer cancel()
		if err := sess.Close(cctx); err != nil {
			log.Warn("failed to delete message session", "error", err)
			return
		}
		log.Info("deleted message session")
	}()

	failures := 0
	for {
		if sess == nil {
			// Whoever holds the session owns the scale set: until this
			// process holds it again, the scaler changes nothing.
			sc.SetOwner(false)
			r.rec.SetSessionOwner(false)
			s, err := r.openSession(ctx, scaleSetID, log)
			if err != nil {
				return err
			}
			sess = s
			sc.SetOwner(true)
			r.rec.SetSessionOwner(true)
			r.updateLabels(ctx, scaleSetID, log)
		}
		l, err := listener.New(contactSession{session: sess, r: r}, listener.Config{
			ScaleSetID: scaleSetID,
			MaxRunners: r.capacity(),
			Logger:     r.logger.With("component", "listener"),
		}, listener.WithMetricsRecorder(listenerRecorder{rec: r.rec, s: sc}))
		if err != nil {
			return fmt.Errorf("scale set %q: failed to create listener: %w", r.cfg.Name, err)
		}
		began := time.Now()
		r.current.Store(l)
		l.SetMaxRunners(r.capacity()) // the health may have changed meanwhile
		r.ready.Store(true)
		r.rec.SetReady(r.backendErr.Load() == nil)
		log.Info("listening for jobs", "max_runners", r.cfg.Max(), "capacity", r.capacity())
		err = l.Run(ctx, sc)
		r.ready.Store(false)
		r.rec.SetReady(false)
		r.current.Store(nil)
		if ctx.Err() != nil {
			return nil
		}
		r.rec.ListenerRestarted()
		if time.Since(began) > time.Minute {
			failures = 0
		}
		failures++
		if sessionLost(err) {
			log.Warn("message session lost, opening a new one", "error", err)
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_ = sess.Close(cctx) // usually already gone on the service
			cancel()
			sess = nil
		}
		d := r.retry.Delay(failures)
		log.Warn("listener stopped, restarting", "error", err, "attempt", failures, "retry_in", d.String())
		if !sleep(ctx, d) {
			return nil
		}
	}
}

// capacity is what the listener offers GitHub: max_runners while the
// backend is healthy, none while it is not, so jobs wait for a scale set
// that can run them instead of being assigned to this one.
func (r *scaleSetRunner) capacity() int {
	if r.backendErr.Load() != nil {
		return 0
	}
	return r.cfg.Max()
}

// backendHealth is the scaler's health hook: it sets the capacity of the
// running listener and says so once per change.
func (r *scaleSetRunner) backendHealth(log *slog.Logger, healthy bool, err error) {
	if healthy {
		r.backendErr.Store(nil)
		log.Info("backend healthy again: offering capacity to GitHub", "max_runners", r.cfg.Max())
	} else {
		r.backendErr.Store(&err)
		log.Warn("backend failing: offering no capacity to GitHub until it recovers", "error", err)
	}
	r.rec.SetBackendHealthy(healthy)
	r.rec.SetReady(healthy && r.ready.Load())
	if l := r.current.Load(); l != nil {
		l.SetMaxRunners(r.capacity())
	}
}

// nameTag is a short random tag per process that goes into runner names
// (<prefix>-<tag>-<n>), so names never repeat across restarts.
func nameTag() string {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 4)
	for i := range b {
		b[i] = digits[rand.IntN(len(digits))]
	}
	return string(b)
}

// sessionLost tells a listener error that needs a new session (refresh
// refused, session unknown) from a transient one (5xx, network).
func sessionLost(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "refresh message session") ||
		strings.Contains(msg, "initial session") ||
		errors.Is(err, scaleset.MessageQueueTokenExpiredError) ||
		strings.Contains(msg, `status="404`) ||
		unauthorized(err) // the service forgot the session (its restart)
}

// isSessionConflict reports a 409 RunnerScaleSetSessionConflictException.
func isSessionConflict(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "SessionConflictException") || strings.Contains(msg, `status="409`)
}

// openSession creates the message session. A 409 (another listener holds
// it, or our own previous process died without deleting it) is retried
// until session_conflict_timeout; other failures are retried with backoff
// until ctx ends.
func (r *scaleSetRunner) openSession(ctx context.Context, scaleSetID int, log *slog.Logger) (session, error) {
	var conflictSince time.Time
	defer r.standby.Store(false) // set while a conflict lasts
	attempt := 0
	for {
		s, err := r.gh.MessageSessionClient(ctx, scaleSetID, r.owner)
		if err == nil {
			r.contact(nil)
			log.Info("opened message session", "owner", r.owner)
			return s, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		attempt++
		d := r.retry.Delay(attempt)
		if isSessionConflict(err) {
			r.rec.SessionConflict()
			if conflictSince.IsZero() {
				conflictSince = time.Now()
				r.standby.Store(true)
				log.Warn("another listener holds the message session: standing by, read-only (no runners started or removed) until it is released",
					"timeout", r.cfg.Durations.SessionConflictTimeout.String())
			}
			waited := time.Since(conflictSince)
			left := r.cfg.Durations.SessionConflictTimeout - waited
			if left <= 0 {
				return nil, fmt.Errorf("scale set %q (id %d): %w after %s; stop the other listener or wait for its session to expire: %w",
					r.cfg.RunnerScaleSetName, scaleSetID, ErrSessionConflict, waited.Round(100*time.Millisecond), err)
			}
			// The last try lands on the deadline, not a backoff step past
			// it: the timeout holds within a request's time.
			d = min(max(d, min(5*time.Second, r.cfg.Durations.SessionConflictTimeout/4)), left)
			log.Warn("another listener holds the message session, retrying",
				"waited", waited.Round(time.Second).String(), "timeout", r.cfg.Durations.SessionConflictTimeout.String(), "retry_in", d.String())
		} else {
			log.Error("failed to open message session, retrying", "error", err, "retry_in", d.String())
		}
		if !sleep(ctx, d) {
			return nil, ctx.Err()
		}
	}
}

// Backoff is capped exponential backoff (Min, 2×Min, ... up to Max)
// between listener restarts and start-up retries.
type Backoff struct{ Min, Max time.Duration }

// Delay is the wait before the attempt-th retry (1-based).
func (b Backoff) Delay(attempt int) time.Duration { return backoff.Exponential(b).Delay(attempt) }

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
