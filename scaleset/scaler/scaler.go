// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package scaler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/actions/scaleset"
	"github.com/actions/scaleset/listener"

	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
)

// GitHub is what the scaler needs from the scale set API: JIT config
// generation, runner lookup by name and runner removal.
type GitHub interface {
	GenerateJitRunnerConfig(ctx context.Context, setting *scaleset.RunnerScaleSetJitRunnerSetting, scaleSetID int) (*scaleset.RunnerScaleSetJitRunnerConfig, error)
	GetRunnerByName(ctx context.Context, name string) (*scaleset.RunnerReference, error)
	RemoveRunner(ctx context.Context, runnerID int64) error
}

var _ GitHub = (*scaleset.Client)(nil)

// Backend is what the scaler needs from a runner backend.
type Backend interface {
	Name() string
	StartIdentified(ctx context.Context, id backend.Identity, jitConfig string) (resourceID string, err error)
	RemoveRunner(ctx context.Context, resourceID string) error
	ListRunners(ctx context.Context) ([]backend.Runner, error)
}

var _ Backend = (backend.Backend)(nil)

// clockSource is the time seam.
type clockSource interface{ Now() time.Time }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Recorder receives what one scale set's scaler measures; it is bound to
// that scale set and its backend, so the calls name neither. Every method
// must be cheap and safe for concurrent use.
type Recorder interface {
	// RunnerStarted is called when the backend accepted a runner, with the
	// time the backend call took and how the runner's machine was started
	// (backend.StartPathReporter; "" when the backend does not say).
	RunnerStarted(took time.Duration, path string)
	// RunnerOnline is called when a runner is first seen running, with the
	// time since its start was requested.
	RunnerOnline(took time.Duration)
	// BackendError counts a failed backend or GitHub operation.
	BackendError(operation string)
	// RunnerRemoved counts a removal, with why ("done", "surplus",
	// "never_online", "failed", "vanished", "shutdown", "orphaned").
	RunnerRemoved(reason string)
	// StaleMessage counts a message applied to no runner (kind is
	// "job_started" or "job_completed"): an earlier runner's, an earlier
	// process's, a redelivery or a duplicate.
	StaleMessage(kind string)
}

type nopRecorder struct{}

func (nopRecorder) RunnerStarted(time.Duration, string) {}
func (nopRecorder) RunnerOnline(time.Duration)          {}
func (nopRecorder) BackendError(string)                 {}
func (nopRecorder) RunnerRemoved(string)                {}
func (nopRecorder) StaleMessage(string)                 {}

// Config holds one scale set's scaling parameters. Zero durations take the
// defaults documented on each field.
type Config struct {
	ScaleSetID int
	// NamePrefix starts every runner name; it should be the scale set name
	// so runners are recognisable.
	NamePrefix string
	// NameTag, when set, goes between the prefix and the runner number
	// (<prefix>-<tag>-<n>); the service sets a random one per process so
	// that names never repeat across restarts.
	NameTag    string
	MinRunners int
	MaxRunners int
	// OnlineTimeout: a runner not running on its backend this long after
	// its start (or after it left the capacity queue), or idle this long
	// while jobs wait, is removed. Default 5m.
	OnlineTimeout time.Duration
	// QueueTimeout: a runner the backend reports waiting for capacity
	// (queued by the platform's scheduler, not failed) is kept this long
	// after its start instead of OnlineTimeout. Default 1h.
	QueueTimeout time.Duration
	// ReconcileInterval is the period of the reconcile loop. Default 10s.
	ReconcileInterval time.Duration
	// StartBackoffMin/Max bound the delay after failed starts. Defaults 1s
	// and 2m.
	StartBackoffMin time.Duration
	StartBackoffMax time.Duration
	// MaxParallelOps bounds concurrent backend/GitHub operations in one
	// pass. Default 16.
	MaxParallelOps int
	// OpTimeout bounds one start or removal. Default 10m (a cold VM boot).
	OpTimeout time.Duration
	// FinishGrace: a runner that exited while idle or busy, before its
	// JobCompleted arrived, still counts towards the target for this long,
	// because the assigned-jobs statistic still counts its job. Without it
	// every finished job would briefly start a surplus runner. Default 10s.
	FinishGrace time.Duration
}

func (c *Config) defaults() {
	if c.OnlineTimeout == 0 {
		c.OnlineTimeout = 5 * time.Minute
	}
	if c.QueueTimeout == 0 {
		c.QueueTimeout = time.Hour
	}
	if c.ReconcileInterval == 0 {
		c.ReconcileInterval = 10 * time.Second
	}
	if c.StartBackoffMin == 0 {
		c.StartBackoffMin = time.Second
	}
	if c.StartBackoffMax == 0 {
		c.StartBackoffMax = 2 * time.Minute
	}
	if c.MaxParallelOps == 0 {
		c.MaxParallelOps = 16
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = 10 * time.Minute
	}
	if c.FinishGrace == 0 {
		c.FinishGrace = 10 * time.Second
	}
}

// Validate applies defaults and returns a joined error naming each bad field.
func (c *Config) Validate() error {
	c.defaults()
	var errs []error
	if c.ScaleSetID <= 0 {
		errs = append(errs, fmt.Errorf("scale_set_id: must be positive, got %d", c.ScaleSetID))
	}
	if c.NamePrefix == "" {
		errs = append(errs, errors.New("name_prefix: must not be empty"))
	}
	if c.MinRunners < 0 {
		errs = append(errs, fmt.Errorf("min_runners: must be >= 0, got %d", c.MinRunners))
	}
	if c.MaxRunners < 1 {
		errs = append(errs, fmt.Errorf("max_runners: must be >= 1, got %d", c.MaxRunners))
	}
	if c.MinRunners > c.MaxRunners {
		errs = append(errs, fmt.Errorf("min_runners: %d is above max_runners %d", c.MinRunners, c.MaxRunners))
	}
	if c.StartBackoffMax < c.StartBackoffMin {
		errs = append(errs, errors.New("start_backoff_max: must be >= start_backoff_min"))
	}
	return errors.Join(errs...)
}

// targetRunners is the number of runners the scale set should hold:
// min(max, min + assigned), never negative.
func targetRunners(minRunners, maxRunners, assigned int) int {
	if assigned < 0 {
		assigned = 0
	}
	return max(0, min(maxRunners, minRunners+assigned))
}

type runner struct {
	name string
	// runnerID is the GitHub runner ID from the JIT config response (or,
	// for an adopted runner, what its backend recorded); 0 until known.
	// Messages are applied to a runner by this ID only.
	runnerID   int
	resourceID string
	phase      Phase
	createdAt  time.Time
	// acceptedAt is when the backend accepted the start; a backend list
	// taken before it may not show the runner yet.
	acceptedAt time.Time
	onlineAt   time.Time
	// waitingSince is when this idle runner was first seen idle while jobs
	// waited; zero when no job waits.
	waitingSince time.Time
	// waitingCapacity: the backend reports the runner queued for capacity
	// (not placed yet); QueueTimeout bounds it instead of OnlineTimeout.
	// queueReason says what is exhausted; leftQueueAt is when it was last
	// seen leaving the queue, from which OnlineTimeout then counts.
	waitingCapacity bool
	queueReason     string
	leftQueueAt     time.Time
	jobCompleted    bool
	// ended: the backend reported the runner process ended (exited or
	// failed); its resource no longer counts against max_runners.
	ended  bool
	sawJob bool // JobStarted arrived for it
	// lookedUp: an adopted runner without a recorded ID was looked up.
	lookedUp     bool
	removeReason RemoveReason
}

// Counts is a snapshot of the runners by phase.
type Counts struct {
	Starting, Pending, Idle, Busy, Finishing int
	// WaitingForCapacity are the Pending runners the backend has queued
	// for capacity.
	WaitingForCapacity  int
	Target, Assigned    int
	ConsecutiveFailures int
}

// Active is the number of runners that count towards the target.
func (c Counts) Active() int { return c.Starting + c.Pending + c.Idle + c.Busy }

// Scaler keeps one scale set's runners at the target. It implements
// listener.Scaler; its reconcile loop (Run) does the work.
type Scaler struct {
	cfg     Config
	gh      GitHub
	be      Backend
	clock   clockSource
	logger  *slog.Logger
	metrics Recorder
	// healthHook is told about backend health changes (may be nil).
	healthHook func(healthy bool, err error)
	// journal remembers the registrations runners hold (see StartJournal);
	// journalDone: this process has resolved the entries no runner backs.
	journal     StartJournal
	journalDone bool

	kick chan struct{}
	// owner is true while this process holds the scale set's message
	// session. Without it the scaler changes nothing, on GitHub or on the
	// backend: another instance owns the scale set (see SetOwner).
	owner atomic.Bool
	// passMu serialises reconcile passes.
	passMu sync.Mutex
	// startsCtx is the context of background starts (JIT generation and
	// the backend's StartRunner: pull, clone, boot, agent wait); Shutdown
	// cancels it, so a shutdown never waits for a boot that may take
	// minutes or never finish.
	startsCtx  context.Context
	stopStarts context.CancelFunc
	// starts tracks background runner starts; startSem bounds them.
	starts   sync.WaitGroup
	startSem chan struct{}

	mu sync.Mutex // guards everything below
	// runners by name (names are unique per runner: <prefix>-<tag>-<n>);
	// byID indexes the ones whose GitHub runner ID is known.
	runners  map[string]*runner
	byID     map[int]*runner
	seq      int // last runner number used in a name
	assigned int
	// demandKnown: the session's statistics have arrived since this
	// process became the owner. Until then nothing is started or removed
	// as surplus: after a restart, adopted runners may be exactly what the
	// waiting jobs need.
	demandKnown bool
	// healthy: the last backend list succeeded; healthErr says why not.
	healthy   bool
	healthErr error
	// waiting is assigned minus running jobs from the latest statistics;
	// -1 until statistics arrive.
	waiting int
	// busyHint records JobStarted for runner IDs not (yet) tracked, so
	// that adoption after a restart marks them busy.
	busyHint map[int]bool
	// finishing holds runners (by runner ID) that exited before their
	// JobCompleted was seen, with when; they count as active for
	// FinishGrace.
	finishing map[int]time.Time
	// lateIDs remembers the IDs of runners removed recently, so a late
	// message naming one is counted as stale rather than unknown.
	lateIDs map[int]time.Time
	// completedAwaitingCount holds when each JobCompleted arrived since the
	// last desired count. The listener hands a message's JobCompleted
	// events to the scaler before that message's statistics, so until the
	// new count arrives the old one still includes those jobs; counting the
	// finished runners as active (for at most FinishGrace) keeps a pass in
	// between from starting a runner nobody needs.
	completedAwaitingCount []time.Time
	failures               int
	nextStartAfter         time.Time
}

var _ listener.Scaler = (*Scaler)(nil)

// Option configures a Scaler.
type Option func(*Scaler)

// withClock replaces the wall clock.
func withClock(c clockSource) Option { return func(s *Scaler) { s.clock = c } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(s *Scaler) { s.logger = l } }

// WithHealthHook calls f whenever the backend's health changes (a list
// failed after succeeding, or the reverse). It runs on the reconcile
// loop and must not block.
func WithHealthHook(f func(healthy bool, err error)) Option {
	return func(s *Scaler) { s.healthHook = f }
}

// WithRecorder sets the metrics sink (default: none).
func WithRecorder(r Recorder) Option { return func(s *Scaler) { s.metrics = r } }

// New returns a Scaler for one scale set.
func New(cfg Config, gh GitHub, be Backend, opts ...Option) (*Scaler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid scaler config: %w", err)
	}
	if gh == nil || be == nil {
		return nil, errors.New("scaler: GitHub client and backend are required")
	}
	s := &Scaler{
		cfg:       cfg,
		gh:        gh,
		be:        be,
		clock:     realClock{},
		logger:    slog.New(slog.DiscardHandler),
		metrics:   nopRecorder{},
		kick:      make(chan struct{}, 1),
		startSem:  make(chan struct{}, cfg.MaxParallelOps),
		runners:   map[string]*runner{},
		byID:      map[int]*runner{},
		busyHint:  map[int]bool{},
		finishing: map[int]time.Time{},
		lateIDs:   map[int]time.Time{},
		waiting:   -1,
		healthy:   true,
		journal:   newMemJournal(),
	}
	for _, o := range opts {
		o(s)
	}
	s.startsCtx, s.stopStarts = context.WithCancel(context.Background())
	return s, nil
}

// SetOwner says whether this process holds the scale set's message session.
// Only the owner mutates the scale set (JIT configs, runner removals,
// orphan cleanup, min_runners starts): a second instance waiting for the
// session must not touch the runners of the first. A new Scaler is not the
// owner; the service sets it once the session is open.
func (s *Scaler) SetOwner(owner bool) {
	if !owner {
		// A new session brings new statistics; until then the demand is
		// unknown again.
		s.mu.Lock()
		s.demandKnown = false
		s.mu.Unlock()
	}
	if s.owner.Swap(owner) != owner && owner {
		s.requestPass()
	}
}

// health reports whether the backend answered the last reconcile pass, and
// why not. The service offers no capacity to GitHub while it is unhealthy.
func (s *Scaler) health() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.healthy, s.healthErr
}

// requestPass asks the reconcile loop for a pass soon; it never blocks.
func (s *Scaler) requestPass() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// newName returns a name no runner of this process had: <prefix>-<n>, or
// <prefix>-<tag>-<n> with Config.NameTag (the service sets a random tag
// per process, so names stay unique across restarts too). Names are for
// people; identity is the GitHub runner ID. Caller holds mu.
func (s *Scaler) newName() string {
	for {
		s.seq++
		name := s.cfg.NamePrefix + "-" + strconv.Itoa(s.seq-1)
		if s.cfg.NameTag != "" {
			name = s.cfg.NamePrefix + "-" + s.cfg.NameTag + "-" + strconv.Itoa(s.seq)
		}
		if s.runners[name] == nil { // an adopted runner may hold it
			return name
		}
	}
}

// track adds r to the index maps. Caller holds mu.
func (s *Scaler) track(r *runner) {
	s.runners[r.name] = r
	if r.runnerID != 0 {
		s.byID[r.runnerID] = r
	}
}

// setID records r's GitHub runner ID. Caller holds mu.
func (s *Scaler) setID(r *runner, id int) {
	if id == 0 || r.runnerID == id {
		return
	}
	r.runnerID = id
	s.byID[id] = r
}

// forget drops a gone runner from the maps, remembering its ID for a
// while so late messages naming it are recognised. Caller holds mu.
func (s *Scaler) forget(r *runner) {
	if s.runners[r.name] == r {
		delete(s.runners, r.name)
	}
	if r.runnerID != 0 && s.byID[r.runnerID] == r {
		delete(s.byID, r.runnerID)
		s.lateIDs[r.runnerID] = s.clock.Now()
	}
}

// HandleDesiredRunnerCount records the assigned job count and asks for a
// reconcile pass. It returns the target without waiting for the pass.
func (s *Scaler) HandleDesiredRunnerCount(_ context.Context, count int) (int, error) {
	s.mu.Lock()
	s.assigned = count
	s.demandKnown = true
	s.completedAwaitingCount = nil
	t := targetRunners(s.cfg.MinRunners, s.cfg.MaxRunners, count)
	s.mu.Unlock()
	s.requestPass()
	return t, nil
}

// ObserveStatistics records the latest statistics (jobs waiting for a
// runner feed the never-online check).
func (s *Scaler) ObserveStatistics(st *scaleset.RunnerScaleSetStatistic) {
	if st == nil {
		return
	}
	s.mu.Lock()
	s.waiting = max(0, st.TotalAssignedJobs-st.TotalRunningJobs)
	s.mu.Unlock()
}

// stale counts and logs a message that applies to no tracked runner.
// Caller holds mu.
func (s *Scaler) stale(kind, why string, runnerID int, runnerName, jobID string) {
	s.metrics.StaleMessage(kind)
	s.logger.Debug("ignored stale message", "kind", kind, "why", why, "runner_id", runnerID, "runner_name", runnerName, "job_id", jobID)
}

// HandleJobStarted marks the runner the message names by ID busy, so
// scale-down never removes it. A message for an unknown ID is kept as a
// hint for adoption (after a restart the backend list may come later) and
// counted; one for a runner that already finished is stale.
func (s *Scaler) HandleJobStarted(_ context.Context, job *scaleset.JobStarted) error {
	if job == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if job.RunnerID == 0 {
		s.stale("job_started", "no runner id", 0, job.RunnerName, job.JobID)
		return nil
	}
	r := s.byID[job.RunnerID]
	if r == nil {
		if _, late := s.lateIDs[job.RunnerID]; late {
			s.stale("job_started", "runner already removed", job.RunnerID, job.RunnerName, job.JobID)
			return nil
		}
		s.busyHint[job.RunnerID] = true
		s.stale("job_started", "runner not tracked (yet)", job.RunnerID, job.RunnerName, job.JobID)
		return nil
	}
	if r.jobCompleted || r.sawJob && r.phase != PhaseStarting {
		s.stale("job_started", "duplicate", r.runnerID, r.name, job.JobID)
		return nil
	}
	from := r.phase
	if !s.fire(r, evJobStarted) {
		s.stale("job_started", "not applicable in phase "+string(from), r.runnerID, r.name, job.JobID)
		return nil
	}
	r.sawJob = true
	if r.phase == PhaseBusy {
		if r.onlineAt.IsZero() {
			r.onlineAt = s.clock.Now()
			s.metrics.RunnerOnline(r.onlineAt.Sub(r.createdAt))
		}
		r.waitingSince = time.Time{}
		s.failures = 0
	}
	s.logger.Info("job started", "runner_name", r.name, "runner_id", r.runnerID, "job_id", job.JobID)
	return nil
}

// HandleJobCompleted marks the runner the message names by ID done; the
// reconcile loop removes its backend resource. A message without a runner
// (a cancelled assignment), for an unknown or removed runner, or repeated,
// is ignored and counted.
func (s *Scaler) HandleJobCompleted(_ context.Context, job *scaleset.JobCompleted) error {
	if job == nil {
		return nil
	}
	s.mu.Lock()
	if job.RunnerID == 0 {
		s.stale("job_completed", "no runner id", 0, job.RunnerName, job.JobID)
		s.mu.Unlock()
		return nil
	}
	delete(s.busyHint, job.RunnerID)
	_, finishing := s.finishing[job.RunnerID]
	delete(s.finishing, job.RunnerID)
	r := s.byID[job.RunnerID]
	switch {
	case r == nil && finishing:
		// exited before this message and already cleaned up: expected
		s.completedAwaitingCount = append(s.completedAwaitingCount, s.clock.Now())
		s.logger.Info("job completed", "runner_name", job.RunnerName, "runner_id", job.RunnerID, "job_id", job.JobID, "result", job.Result)
	case r == nil:
		s.stale("job_completed", "runner not tracked", job.RunnerID, job.RunnerName, job.JobID)
	case r.jobCompleted:
		s.stale("job_completed", "duplicate", r.runnerID, r.name, job.JobID)
	default:
		r.jobCompleted = true
		if s.fire(r, evJobCompleted) && r.phase == PhaseDone && r.removeReason == "" {
			r.removeReason = ReasonDone
		}
		s.completedAwaitingCount = append(s.completedAwaitingCount, s.clock.Now())
		s.logger.Info("job completed", "runner_name", r.name, "runner_id", r.runnerID, "job_id", job.JobID, "result", job.Result)
	}
	s.mu.Unlock()
	s.requestPass()
	return nil
}

// Counts returns a snapshot of the runners by phase.
func (s *Scaler) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := Counts{
		Assigned:            s.assigned,
		Target:              targetRunners(s.cfg.MinRunners, s.cfg.MaxRunners, s.assigned),
		ConsecutiveFailures: s.failures,
	}
	for _, r := range s.runners {
		switch r.phase {
		case PhaseStarting:
			c.Starting++
		case PhasePending:
			c.Pending++
			if r.waitingCapacity {
				c.WaitingForCapacity++
			}
		case PhaseIdle:
			c.Idle++
		case PhaseBusy:
			c.Busy++
		default:
			c.Finishing++
		}
	}
	return c
}

// Run reconciles on every kick and every ReconcileInterval until ctx ends.
// Failed passes are logged and retried on the next tick; they never spin.
func (s *Scaler) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.ReconcileInterval)
	defer t.Stop()
	for {
		if err := s.pass(ctx); err != nil && ctx.Err() == nil {
			s.logger.Warn("failed to reconcile runners", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
	}
}
