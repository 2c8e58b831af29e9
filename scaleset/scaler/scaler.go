// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package scaler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
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
	StartRunner(ctx context.Context, name string, jitConfig string) (resourceID string, err error)
	RemoveRunner(ctx context.Context, resourceID string) error
	ListRunners(ctx context.Context) ([]backend.Runner, error)
}

var _ Backend = (backend.Backend)(nil)

// Clock is the time seam.
type Clock interface{ Now() time.Time }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Recorder receives what one scale set's scaler measures; it is bound to
// that scale set and its backend, so the calls name neither. Every method
// must be cheap and safe for concurrent use.
type Recorder interface {
	// RunnerStarted is called when the backend accepted a runner, with the
	// time the backend call took.
	RunnerStarted(took time.Duration)
	// RunnerOnline is called when a runner is first seen running, with the
	// time since its start was requested.
	RunnerOnline(took time.Duration)
	// BackendError counts a failed backend or GitHub operation.
	BackendError(operation string)
	// RunnerRemoved counts a removal, with why ("done", "surplus",
	// "never_online", "failed", "orphan", "shutdown").
	RunnerRemoved(reason string)
}

type nopRecorder struct{}

func (nopRecorder) RunnerStarted(time.Duration) {}
func (nopRecorder) RunnerOnline(time.Duration)  {}
func (nopRecorder) BackendError(string)         {}
func (nopRecorder) RunnerRemoved(string)        {}

// Config holds one scale set's scaling parameters. Zero durations take the
// defaults documented on each field.
type Config struct {
	ScaleSetID int
	// NamePrefix starts every runner name (<prefix>-<slot>); it should be
	// the scale set name so runners are recognisable.
	NamePrefix string
	MinRunners int
	MaxRunners int
	// OnlineTimeout: a runner not running on its backend this long after
	// its start, or idle this long while jobs wait, is removed. Default 5m.
	OnlineTimeout time.Duration
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

// Target is the number of runners the scale set should hold:
// min(max, min + assigned), never negative.
func Target(minRunners, maxRunners, assigned int) int {
	if assigned < 0 {
		assigned = 0
	}
	return max(0, min(maxRunners, minRunners+assigned))
}

// Phase is where a runner is in its life, as the scaler tracks it.
type Phase string

// Runner phases.
const (
	PhaseStarting Phase = "starting" // JIT config or backend start in flight
	PhasePending  Phase = "pending"  // accepted by the backend, not running yet
	PhaseIdle     Phase = "idle"     // running, no job
	PhaseBusy     Phase = "busy"     // running a job (JobStarted seen)
	PhaseDone     Phase = "done"     // finished; backend resource to remove
	PhaseFailed   Phase = "failed"   // to remove on GitHub and the backend
	PhaseRemoving Phase = "removing" // removal in flight
)

type runner struct {
	name       string
	slot       int
	resourceID string
	runnerID   int // GitHub id; 0 when unknown (adopted)
	phase      Phase
	createdAt  time.Time
	// acceptedAt is when the backend accepted the start; a backend list
	// taken before it may not show the runner yet.
	acceptedAt time.Time
	onlineAt   time.Time
	// waitingSince is when this idle runner was first seen idle while jobs
	// waited; zero when no job waits.
	waitingSince time.Time
	jobCompleted bool
	sawJob       bool // JobStarted arrived while starting
	removeReason string
}

// Counts is a snapshot of the runners by phase.
type Counts struct {
	Starting, Pending, Idle, Busy, Finishing int
	Target, Assigned                         int
	ConsecutiveFailures                      int
}

// Active is the number of runners that count towards the target.
func (c Counts) Active() int { return c.Starting + c.Pending + c.Idle + c.Busy }

// Scaler keeps one scale set's runners at the target. It implements
// listener.Scaler; its reconcile loop (Run) does the work.
type Scaler struct {
	cfg     Config
	gh      GitHub
	be      Backend
	clock   Clock
	logger  *slog.Logger
	metrics Recorder

	kick chan struct{}
	// passMu serialises reconcile passes.
	passMu sync.Mutex
	// starts tracks background runner starts; startSem bounds them.
	starts   sync.WaitGroup
	startSem chan struct{}

	mu       sync.Mutex // guards everything below
	runners  map[string]*runner
	assigned int
	// waiting is assigned minus running jobs from the latest statistics;
	// -1 until statistics arrive.
	waiting int
	// busyHint records JobStarted for runners not (yet) tracked, so that
	// adoption after a restart marks them busy.
	busyHint map[string]int
	// finishing holds runners that exited before their JobCompleted was
	// seen, with when; they count as active for FinishGrace.
	finishing map[string]time.Time
	// completedAwaitingCount holds when each JobCompleted arrived since the
	// last desired count. The listener hands a message's JobCompleted
	// events to the scaler before that message's statistics, so until the
	// new count arrives the old one still includes those jobs; counting the
	// finished runners as active (for at most FinishGrace) keeps a pass in
	// between from starting a runner nobody needs.
	completedAwaitingCount []time.Time
	failures               int
	nextStartAfter         time.Time
	probed                 bool
}

var _ listener.Scaler = (*Scaler)(nil)

// Option configures a Scaler.
type Option func(*Scaler)

// WithClock replaces the wall clock.
func WithClock(c Clock) Option { return func(s *Scaler) { s.clock = c } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(s *Scaler) { s.logger = l } }

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
		busyHint:  map[string]int{},
		finishing: map[string]time.Time{},
		waiting:   -1,
	}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// Kick asks the reconcile loop for a pass soon; it never blocks.
func (s *Scaler) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// RunnerName is the name of the runner in a slot.
func (s *Scaler) RunnerName(slot int) string { return s.cfg.NamePrefix + "-" + strconv.Itoa(slot) }

// slotOf parses a runner name of this scale set; ok is false for others.
func (s *Scaler) slotOf(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, s.cfg.NamePrefix+"-")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 0 || strconv.Itoa(n) != rest {
		return 0, false
	}
	return n, true
}

// HandleDesiredRunnerCount records the assigned job count and asks for a
// reconcile pass. It returns the target without waiting for the pass.
func (s *Scaler) HandleDesiredRunnerCount(_ context.Context, count int) (int, error) {
	s.mu.Lock()
	s.assigned = count
	s.completedAwaitingCount = nil
	t := Target(s.cfg.MinRunners, s.cfg.MaxRunners, count)
	s.mu.Unlock()
	s.Kick()
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

// HandleJobStarted marks the runner busy so scale-down never removes it.
// Unknown runner names are tolerated.
func (s *Scaler) HandleJobStarted(_ context.Context, job *scaleset.JobStarted) error {
	if job == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.runners[job.RunnerName]
	if r == nil || (r.runnerID != 0 && job.RunnerID != 0 && r.runnerID != job.RunnerID) {
		if _, ours := s.slotOf(job.RunnerName); ours {
			s.busyHint[job.RunnerName] = job.RunnerID
		}
		s.logger.Debug("job started on an untracked runner", "runner_name", job.RunnerName, "job_id", job.JobID)
		return nil
	}
	switch r.phase {
	case PhaseStarting:
		// The runner took a job before StartRunner returned: start
		// settles it as busy.
		r.sawJob = true
	case PhasePending, PhaseIdle:
		if r.onlineAt.IsZero() {
			r.onlineAt = s.clock.Now()
			s.metrics.RunnerOnline(r.onlineAt.Sub(r.createdAt))
		}
		r.phase = PhaseBusy
		r.waitingSince = time.Time{}
		s.failures = 0
	}
	if r.runnerID == 0 {
		r.runnerID = job.RunnerID
	}
	s.logger.Info("job started", "runner_name", r.name, "job_id", job.JobID)
	return nil
}

// HandleJobCompleted marks the runner done; the reconcile loop removes its
// backend resource. Unknown or empty runner names (a cancelled assignment)
// are tolerated.
func (s *Scaler) HandleJobCompleted(_ context.Context, job *scaleset.JobCompleted) error {
	if job == nil {
		return nil
	}
	s.mu.Lock()
	delete(s.busyHint, job.RunnerName)
	delete(s.finishing, job.RunnerName)
	r := s.runners[job.RunnerName]
	if r != nil && (r.runnerID == 0 || job.RunnerID == 0 || r.runnerID == job.RunnerID) {
		switch r.phase {
		case PhaseStarting:
			// A runner still starting can only have completed a job it
			// was seen to start; otherwise this is a late event of an
			// earlier runner with the same name.
			if !r.sawJob {
				s.mu.Unlock()
				s.logger.Debug("job completed for an earlier runner of the same name", "runner_name", job.RunnerName, "job_id", job.JobID)
				return nil
			}
			r.jobCompleted = true
		case PhaseRemoving, PhaseDone, PhaseFailed:
			// a removal in flight finishes the record itself
			r.jobCompleted = true
		default:
			r.phase = PhaseDone
			r.jobCompleted = true
			r.removeReason = "done"
		}
		s.completedAwaitingCount = append(s.completedAwaitingCount, s.clock.Now())
		s.logger.Info("job completed", "runner_name", r.name, "job_id", job.JobID, "result", job.Result)
	}
	s.mu.Unlock()
	s.Kick()
	return nil
}

// Counts returns a snapshot of the runners by phase.
func (s *Scaler) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := Counts{
		Assigned:            s.assigned,
		Target:              Target(s.cfg.MinRunners, s.cfg.MaxRunners, s.assigned),
		ConsecutiveFailures: s.failures,
	}
	for _, r := range s.runners {
		switch r.phase {
		case PhaseStarting:
			c.Starting++
		case PhasePending:
			c.Pending++
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
