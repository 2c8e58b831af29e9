// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package scaler

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/actions/scaleset"

	"github.com/tartnomad/nomad-driver-tart/internal/backoff"
	"github.com/tartnomad/nomad-driver-tart/internal/waitgroup"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
)

// lateIDMemory is how long the ID of a removed runner is remembered, so a
// late message naming it is told apart from one for an unknown runner.
const lateIDMemory = 30 * time.Minute

// plan is what one reconcile pass will do, decided under the lock.
type plan struct {
	starts  []*runner
	removes []*runner // phase removing; removeReason says why
	// resolve: adopted runners whose backend recorded no runner ID; their
	// (unique) name is looked up on GitHub once.
	resolve []*runner
}

// Reconcile runs one pass and waits for the runner starts it launched:
// read the backend, merge it with what is tracked, decide, and carry out
// the removals and starts. It is idempotent: running it again with nothing
// changed does nothing. Operations run on a context detached from ctx
// (bounded by OpTimeout) so that a shutdown in the middle of a pass does
// not leave a JIT registration without its runner.
func (s *Scaler) Reconcile(ctx context.Context) error {
	err := s.pass(ctx)
	s.starts.Wait()
	return err
}

// pass is one reconcile pass. Removals finish before it returns; starts
// (a cold VM boot can take minutes) run on in the background, counted as
// active, and kick another pass when they end. A process that does not
// hold the message session changes nothing.
func (s *Scaler) pass(ctx context.Context) error {
	s.passMu.Lock()
	defer s.passMu.Unlock()
	if !s.owner.Load() {
		return nil // read-only: another instance owns the scale set
	}

	listedAt := s.clock.Now()
	list, err := s.be.ListRunners(ctx)
	if err != nil {
		s.metrics.BackendError("list")
		err = fmt.Errorf("failed to list runners on backend %s: %w", s.be.Name(), err)
		s.setHealth(err)
		return err
	}
	s.setHealth(nil)

	opCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.OpTimeout)
	defer cancel()
	if !s.journalDone {
		s.journalDone = s.resolveJournal(opCtx, list)
	}

	s.mu.Lock()
	s.merge(list, listedAt)
	p := s.decide(s.clock.Now())
	s.mu.Unlock()

	s.resolveIDs(opCtx, p.resolve)
	s.execute(opCtx, p.removes)
	s.mu.Lock()
	p.starts = s.withinMax(p.starts)
	s.mu.Unlock()
	for _, r := range p.starts {
		s.launch(ctx, r)
	}
	return nil
}

// setHealth records whether the backend answered and tells the health
// hook when that changes.
func (s *Scaler) setHealth(err error) {
	s.mu.Lock()
	changed := s.healthy != (err == nil)
	s.healthy, s.healthErr = err == nil, err
	s.mu.Unlock()
	if changed && s.healthHook != nil {
		s.healthHook(err == nil, err)
	}
}

// withinMax drops planned starts that would make the backend hold more
// than max_runners live runners: a removal of this pass may have failed
// (a never-online runner GitHub would not let go of is still running).
// Caller holds mu.
func (s *Scaler) withinMax(starts []*runner) []*runner {
	planned := make(map[*runner]bool, len(starts))
	for _, r := range starts {
		planned[r] = true
	}
	held := 0
	for _, r := range s.runners {
		if !planned[r] && (r.phase == PhaseStarting || r.resourceID != "" && !r.ended) {
			held++
		}
	}
	room := max(0, s.cfg.MaxRunners-held)
	if len(starts) <= room {
		return starts
	}
	for _, r := range starts[room:] {
		s.fire(r, EvStartFailed) // not started: a later pass decides again
	}
	return starts[:room]
}

// launch starts one runner in the background, at most MaxParallelOps at
// once across passes.
func (s *Scaler) launch(ctx context.Context, r *runner) {
	s.starts.Go(func() {
		s.startSem <- struct{}{}
		defer func() { <-s.startSem }()
		sctx, cancel := context.WithTimeout(s.startsCtx, s.cfg.OpTimeout)
		defer cancel()
		s.start(sctx, r)
		s.Kick()
	})
}

// waitStarts waits for background starts, or until ctx ends.
func (s *Scaler) waitStarts(ctx context.Context) {
	_ = waitgroup.Wait(ctx, &s.starts) // an ended ctx fails the calls that follow
}

// merge folds the backend's list into the tracked runners: a listed
// resource is matched to a runner by its resource ID or by the GitHub
// runner ID the backend recorded, never by its name alone. Caller holds mu.
func (s *Scaler) merge(list []backend.Runner, listedAt time.Time) {
	now := s.clock.Now()
	byResource := make(map[string]*runner, len(s.runners))
	for _, r := range s.runners {
		if r.resourceID != "" {
			byResource[r.resourceID] = r
		}
	}
	seen := make(map[*runner]bool, len(list))
	for _, br := range list {
		r := byResource[br.ResourceID]
		if r == nil && br.RunnerID != 0 {
			r = s.byID[br.RunnerID]
		}
		if r == nil {
			if in := s.runners[br.Name]; in != nil && in.phase == PhaseStarting && br.RunnerID == 0 {
				// our own start in flight, listed before it returned
				// (names are unique per runner, so this is that runner)
				seen[in] = true
				continue
			}
			seen[s.adopt(br, now)] = true
			continue
		}
		seen[r] = true
		if r.resourceID == "" && r.phase != PhaseStarting {
			r.resourceID = br.ResourceID
		}
		s.setID(r, br.RunnerID)
		if r.phase == PhaseStarting || r.acceptedAt.IsZero() || r.acceptedAt.After(listedAt) {
			// The list predates the end of the start: a container still
			// "created", say, is not a failed one.
			continue
		}
		s.applyState(r, br, now)
	}
	for _, r := range s.runners {
		if seen[r] {
			continue
		}
		switch r.phase {
		case PhaseStarting, PhaseRemoving:
			continue // in flight; the operation settles the record
		}
		if r.acceptedAt.IsZero() || r.acceptedAt.After(listedAt) {
			continue // accepted after the list was taken
		}
		if r.phase != PhaseDone {
			// The backend lost it (or it removed itself): make sure GitHub
			// does not keep the registration.
			s.logger.Info("runner disappeared from the backend", "runner_name", r.name, "runner_id", r.runnerID, "phase", string(r.phase))
			if r.phase != PhaseFailed {
				r.removeReason = ReasonVanished
			}
			r.resourceID = ""
		}
		s.fire(r, EvVanished)
	}
}

// adopt tracks a runner found on the backend but not in memory (a
// restart), identified by the runner ID its backend recorded. Caller
// holds mu.
func (s *Scaler) adopt(br backend.Runner, now time.Time) *runner {
	r := &runner{name: br.Name, resourceID: br.ResourceID, createdAt: br.CreatedAt, phase: phaseGone}
	if r.createdAt.IsZero() {
		r.createdAt = now
	}
	r.acceptedAt = r.createdAt
	s.fire(r, EvStartRequested)
	s.fire(r, EvBackendAccepted)
	s.track(r)
	s.setID(r, br.RunnerID)
	switch br.State {
	case backend.StateRunning:
		s.fire(r, EvBackendRunning)
		r.onlineAt = now
	case backend.StatePending:
		r.waitingCapacity = br.WaitingForCapacity
		if r.waitingCapacity {
			r.queueReason = br.Reason
		}
	case backend.StateExited:
		s.fire(r, EvExited)
		r.removeReason, r.ended = ReasonDone, true
	default:
		s.fire(r, EvFailed)
		r.removeReason, r.ended = ReasonFailed, true
	}
	if r.runnerID != 0 && s.busyHint[r.runnerID] {
		delete(s.busyHint, r.runnerID)
		if s.fire(r, EvJobStarted) {
			r.sawJob = true
		}
	}
	s.logger.Info("adopted runner found on the backend", "runner_name", br.Name, "runner_id", r.runnerID, "state", string(br.State), "phase", string(r.phase))
	return r
}

// noteQueued records whether a pending runner waits for capacity, logs
// each change, and when it left the queue. Caller holds mu.
func (s *Scaler) noteQueued(r *runner, br backend.Runner, now time.Time) {
	queued := br.State == backend.StatePending && br.WaitingForCapacity
	switch {
	case queued && !r.waitingCapacity:
		s.logger.Info("runner waits for capacity", "runner_name", r.name, "runner_id", r.runnerID, "reason", br.Reason, "queue_timeout", s.cfg.QueueTimeout.String())
	case !queued && r.waitingCapacity:
		r.leftQueueAt = now
		s.logger.Info("runner left the capacity queue", "runner_name", r.name, "runner_id", r.runnerID, "state", string(br.State), "waited", now.Sub(r.createdAt).Round(time.Second).String())
	}
	r.waitingCapacity = queued
	if queued {
		r.queueReason = br.Reason
	}
}

// applyState moves a tracked runner by what the backend reports. Caller
// holds mu.
func (s *Scaler) applyState(r *runner, br backend.Runner, now time.Time) {
	if r.phase == PhasePending {
		s.noteQueued(r, br, now)
	}
	if br.State == backend.StateExited || br.State == backend.StateFailed {
		r.ended = true
	}
	switch br.State {
	case backend.StateRunning:
		if s.fire(r, EvBackendRunning) {
			r.onlineAt = now
			s.failures = 0
			s.metrics.RunnerOnline(now.Sub(r.createdAt))
			s.logger.Debug("runner came online", "runner_name", r.name)
		}
	case backend.StateExited:
		from := r.phase
		if s.fire(r, EvExited) && from != PhaseDone {
			if from != PhasePending {
				s.noteFinishing(r, now)
			}
			r.removeReason = ReasonDone
		}
	case backend.StateFailed:
		from := r.phase
		if !s.fire(r, EvFailed) || from == PhaseDone || from == PhaseFailed {
			return
		}
		if from == PhaseBusy {
			s.noteFinishing(r, now)
			r.removeReason = ReasonDone
			return
		}
		s.noteFailure(now)
		s.logger.Warn("runner failed on the backend", "runner_name", r.name, "runner_id", r.runnerID, "reason", br.Reason)
		r.removeReason = ReasonFailed
	}
}

// noteFinishing keeps counting a runner that exited before its
// JobCompleted arrived (see finishing). Caller holds mu.
func (s *Scaler) noteFinishing(r *runner, now time.Time) {
	if !r.jobCompleted && r.runnerID != 0 {
		s.finishing[r.runnerID] = now
	}
}

// noteFailure counts a failed start and pushes the next start back
// exponentially. Caller holds mu.
func (s *Scaler) noteFailure(now time.Time) {
	s.failures++
	d := backoff.Exponential{Min: s.cfg.StartBackoffMin, Max: s.cfg.StartBackoffMax}.Delay(s.failures)
	if next := now.Add(d); next.After(s.nextStartAfter) {
		s.nextStartAfter = next
	}
}

// decide turns the tracked state into a plan: the removals as transitions
// (applied here, in one place) and the runners to start. Nothing is
// started or removed as surplus before the demand is known. Caller holds
// mu.
func (s *Scaler) decide(now time.Time) plan {
	var p plan
	var ts []transition
	target := Target(s.cfg.MinRunners, s.cfg.MaxRunners, s.assigned)
	idle, pending, active := s.classify(now, &ts, &p)
	active += s.recentlyFinished(now)
	for id, at := range s.lateIDs {
		if now.Sub(at) > lateIDMemory {
			delete(s.lateIDs, id)
		}
	}
	if s.demandKnown {
		switch {
		case active < target && !now.Before(s.nextStartAfter):
			p.starts = s.newRunners(now, min(target-active, s.cfg.MaxParallelOps))
		case active > target:
			ts = append(ts, surplus(pending, idle, active-target)...)
		}
	}
	p.removes = s.apply(ts)
	return p
}

// classify decides the removal of finished, failed and timed-out runners
// and returns the idle and pending runners (candidates for scale-down) and
// the number of runners that count towards the target. Caller holds mu.
func (s *Scaler) classify(now time.Time, ts *[]transition, p *plan) (idle, pending []*runner, active int) {
	for _, r := range s.runners {
		if r.runnerID == 0 && r.phase != PhaseStarting && r.phase != PhaseRemoving && !r.lookedUp {
			r.lookedUp = true
			p.resolve = append(p.resolve, r)
		}
		switch r.phase {
		case PhaseDone, PhaseFailed:
			*ts = append(*ts, transition{r: r, ev: EvRemovalRequested, reason: r.removeReason})
			continue
		case PhasePending:
			if why := s.pendingTooLong(r, now); why != "" {
				s.neverOnline(r, now, why)
				*ts = append(*ts, transition{r: r, ev: EvRemovalRequested, reason: ReasonNeverOnline})
				continue
			}
			pending = append(pending, r)
		case PhaseIdle:
			if s.waiting > 0 {
				if r.waitingSince.IsZero() {
					r.waitingSince = now
				} else if now.Sub(r.waitingSince) > s.cfg.OnlineTimeout {
					s.neverOnline(r, now, "idle while jobs waited")
					*ts = append(*ts, transition{r: r, ev: EvRemovalRequested, reason: ReasonNeverOnline})
					continue
				}
			} else {
				r.waitingSince = time.Time{}
			}
			idle = append(idle, r)
		}
		if r.phase == PhaseStarting || r.phase == PhasePending || r.phase == PhaseIdle || r.phase == PhaseBusy {
			active++
		}
	}
	return idle, pending, active
}

// recentlyFinished counts the finished runners that still count as active
// (see finishing and completedAwaitingCount), forgetting exits older than
// FinishGrace. Caller holds mu.
func (s *Scaler) recentlyFinished(now time.Time) int {
	n := 0
	for id, at := range s.finishing {
		if now.Sub(at) > s.cfg.FinishGrace {
			delete(s.finishing, id)
			continue
		}
		n++
	}
	for _, at := range s.completedAwaitingCount {
		if now.Sub(at) <= s.cfg.FinishGrace {
			n++
		}
	}
	return n
}

// newRunners tracks n new runners under fresh names, phase starting.
// Caller holds mu.
func (s *Scaler) newRunners(now time.Time, n int) []*runner {
	out := make([]*runner, 0, n)
	for range n {
		r := &runner{name: s.newName(), phase: phaseGone, createdAt: now}
		s.fire(r, EvStartRequested)
		s.track(r)
		out = append(out, r)
	}
	return out
}

// surplus picks n runners to scale down: pending runners first (not doing
// anything yet, newest first), then the idle runners that came online
// last. Busy runners are never candidates.
func surplus(pending, idle []*runner, n int) []transition {
	sort.Slice(pending, func(i, j int) bool { return pending[i].createdAt.After(pending[j].createdAt) })
	sort.Slice(idle, func(i, j int) bool { return idle[i].onlineAt.After(idle[j].onlineAt) })
	var out []transition
	for _, r := range append(pending, idle...) {
		if len(out) == n {
			break
		}
		out = append(out, transition{r: r, ev: EvRemovalRequested, reason: ReasonSurplus})
	}
	return out
}

// pendingTooLong says why a pending runner is removed as never online, or
// "" to keep it: queued for capacity, it may wait QueueTimeout from its
// start; otherwise OnlineTimeout from its start or from when it left the
// queue. Caller holds mu.
func (s *Scaler) pendingTooLong(r *runner, now time.Time) string {
	if r.waitingCapacity {
		if now.Sub(r.createdAt) > s.cfg.QueueTimeout {
			return fmt.Sprintf("queued for capacity longer than queue_timeout %s (%s)", s.cfg.QueueTimeout, r.queueReason)
		}
		return ""
	}
	since := r.createdAt
	if r.leftQueueAt.After(since) {
		since = r.leftQueueAt
	}
	if now.Sub(since) > s.cfg.OnlineTimeout {
		return "not running on the backend"
	}
	return ""
}

func (s *Scaler) neverOnline(r *runner, now time.Time, why string) {
	s.logger.Warn("removing runner that never came online", "runner_name", r.name, "runner_id", r.runnerID, "why", why, "timeout", s.cfg.OnlineTimeout.String())
	s.noteFailure(now)
}

// execute carries out removals with bounded concurrency. They finish
// before any start of the pass is launched, so that the backend never
// holds more than max_runners resources at once.
func (s *Scaler) execute(ctx context.Context, removes []*runner) {
	sem := make(chan struct{}, s.cfg.MaxParallelOps)
	var wg sync.WaitGroup
	for _, r := range removes {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s.remove(ctx, r)
		})
	}
	wg.Wait()
}

// resolveIDs looks up the GitHub runner ID of adopted runners whose
// backend recorded none (resources started by an earlier version). Names
// are unique per runner, so the registration of that name is that runner.
func (s *Scaler) resolveIDs(ctx context.Context, rs []*runner) {
	for _, r := range rs {
		ref, err := s.gh.GetRunnerByName(ctx, r.name)
		if err != nil {
			s.metrics.BackendError("github_lookup")
			s.logger.Warn("failed to look up the runner id of an adopted runner", "runner_name", r.name, "error", err)
			s.mu.Lock()
			r.lookedUp = false // try again next pass
			s.mu.Unlock()
			continue
		}
		if ref == nil || (ref.RunnerScaleSetID != 0 && ref.RunnerScaleSetID != s.cfg.ScaleSetID) {
			continue
		}
		s.mu.Lock()
		if s.byID[ref.ID] == nil {
			s.setID(r, ref.ID)
		}
		s.mu.Unlock()
	}
}

// start generates a JIT config and starts the runner on the backend. On
// failure it removes the registration so nothing is left on GitHub.
func (s *Scaler) start(ctx context.Context, r *runner) {
	jit, err := s.generateJIT(ctx, r)
	if err != nil {
		s.metrics.BackendError("generate_jit")
		s.mu.Lock()
		name := r.name
		s.fire(r, EvStartFailed)
		s.noteFailure(s.clock.Now())
		s.mu.Unlock()
		s.logger.Error("failed to generate JIT config", "runner_name", name, "error", err)
		if !errors.Is(err, errNotJournaled) && !errors.Is(err, scaleset.RunnerExistsError) {
			// The request may have registered the runner before it
			// failed (a timeout): look the name up now; a failure
			// leaves the entry for the next process.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			s.resolveEntry(rctx, JournalEntry{Name: name})
			cancel()
		}
		return
	}
	runnerID := 0
	if jit.Runner != nil {
		runnerID = jit.Runner.ID
	}
	s.mu.Lock()
	s.setID(r, runnerID)
	id := backend.Identity{Name: r.name, RunnerID: runnerID}
	s.mu.Unlock()
	if runnerID != 0 {
		// Removal by ID from now on. Without this update the entry still
		// names the registration, so a failure is not fatal.
		if err := s.journalRecord(context.WithoutCancel(ctx), JournalEntry{Name: id.Name, RunnerID: runnerID}); err != nil {
			s.logger.Warn("failed to record the runner id in the start journal", "runner_name", id.Name, "runner_id", runnerID, "error", err)
		}
	}

	began := s.clock.Now()
	resourceID, err := s.be.StartIdentified(ctx, id, jit.EncodedJITConfig)
	took := s.clock.Now().Sub(began)
	if err != nil {
		s.metrics.BackendError("start")
		s.logger.Error("failed to start runner", "runner_name", id.Name, "runner_id", runnerID, "error", err)
		ev := EvStartFailed
		if runnerID != 0 {
			// Its own bound: ctx may have ended (Shutdown cancels starts).
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			err := s.removeRegistration(rctx, runnerID)
			cancel()
			if err != nil {
				s.metrics.BackendError("github_remove")
				s.logger.Warn("failed to remove registration of a runner that did not start, will retry", "runner_name", id.Name, "error", err)
				ev = EvFailed // kept (failed) so later passes remove the registration
			}
		}
		s.mu.Lock()
		r.removeReason, r.acceptedAt = ReasonFailed, s.clock.Now()
		s.fire(r, ev)
		s.noteFailure(s.clock.Now())
		s.mu.Unlock()
		if ev == EvStartFailed {
			s.journalDrop(ctx, id.Name)
		}
		return
	}
	path := ""
	if pr, ok := s.be.(backend.StartPathReporter); ok {
		path = pr.StartPath(resourceID)
	}
	s.metrics.RunnerStarted(took, path)
	s.mu.Lock()
	r.resourceID = resourceID
	r.acceptedAt = s.clock.Now()
	s.fire(r, EvBackendAccepted)
	s.settleStart(r)
	s.mu.Unlock()
	s.logger.Info("started runner", "runner_name", id.Name, "runner_id", runnerID, "took", took.String())
}

// settleStart applies the messages that arrived for r while its start was
// in flight. Caller holds mu.
func (s *Scaler) settleStart(r *runner) {
	switch {
	case r.jobCompleted:
		if s.fire(r, EvJobCompleted) {
			r.removeReason = ReasonDone
		}
	case r.sawJob:
		if s.fire(r, EvJobStarted) {
			r.onlineAt = r.acceptedAt
			s.failures = 0
		}
	}
}

// generateJIT asks for a JIT config. A name clash (a registration of that
// name exists, from another process or an earlier version) is not taken
// for this runner: the runner gets a fresh name and one more try.
//
// Each name is recorded in the start journal before its request, so a
// registration never exists that no journal entry, backend record or
// live process knows; a name that clashed is dropped (its registration is
// not this runner's).
func (s *Scaler) generateJIT(ctx context.Context, r *runner) (*scaleset.RunnerScaleSetJitRunnerConfig, error) {
	pending, err := s.journal.Pending(ctx)
	if err != nil {
		s.metrics.BackendError("journal")
		return nil, fmt.Errorf("%w: failed to read the start journal: %w", errNotJournaled, err)
	}
	held := make(map[string]bool, len(pending))
	for _, e := range pending {
		held[e.Name] = true
	}
	s.mu.Lock()
	for held[r.name] {
		// an earlier process's entry of the same name (names repeat
		// without a NameTag): never overwrite it
		s.rename(r)
	}
	name := r.name
	s.mu.Unlock()
	if err := s.journalRecord(ctx, JournalEntry{Name: name}); err != nil {
		return nil, fmt.Errorf("%w: %w", errNotJournaled, err)
	}
	jit, err := s.requestJIT(ctx, name)
	if err == nil || !errors.Is(err, scaleset.RunnerExistsError) {
		return jit, err
	}
	s.journalDrop(ctx, name)
	s.mu.Lock()
	for held[r.name] || r.name == name {
		s.rename(r)
	}
	renamed := r.name
	s.mu.Unlock()
	s.logger.Warn("runner name already registered, using a fresh name", "runner_name", name, "new_name", renamed)
	if err := s.journalRecord(ctx, JournalEntry{Name: renamed}); err != nil {
		return nil, fmt.Errorf("%w: %w", errNotJournaled, err)
	}
	jit, err = s.requestJIT(ctx, renamed)
	if errors.Is(err, scaleset.RunnerExistsError) {
		s.journalDrop(ctx, renamed)
	}
	return jit, err
}

// rename gives r a fresh name. Caller holds mu.
func (s *Scaler) rename(r *runner) {
	if s.runners[r.name] == r {
		delete(s.runners, r.name)
	}
	r.name = s.newName()
	s.runners[r.name] = r
}

// errNotJournaled: a start was refused because its journal entry could not
// be written; no JIT config was requested.
var errNotJournaled = errors.New("runner start not journaled")

// requestJIT asks GitHub for one JIT config; an empty answer is an error.
func (s *Scaler) requestJIT(ctx context.Context, name string) (*scaleset.RunnerScaleSetJitRunnerConfig, error) {
	jit, err := s.gh.GenerateJitRunnerConfig(ctx, &scaleset.RunnerScaleSetJitRunnerSetting{Name: name}, s.cfg.ScaleSetID)
	if err == nil && jit == nil {
		err = errors.New("empty JIT config response")
	}
	return jit, err
}

// removeRegistration deletes a runner registration on GitHub; one already
// gone is not an error.
func (s *Scaler) removeRegistration(ctx context.Context, runnerID int) error {
	if err := s.gh.RemoveRunner(ctx, int64(runnerID)); err != nil && !errors.Is(err, scaleset.RunnerNotFoundError) {
		return err
	}
	return nil
}

// remove deletes a runner. A runner that may still be alive (scale-down,
// never online, shutdown) is removed on GitHub first, which refuses a busy
// runner, so scale-down can never kill a job. A runner that is gone
// (finished, failed, vanished) has its backend resource removed even when
// GitHub cannot be reached; the registration is retried on later passes.
func (s *Scaler) remove(ctx context.Context, r *runner) {
	s.mu.Lock()
	name, resourceID, runnerID, reason, completed := r.name, r.resourceID, r.runnerID, r.removeReason, r.jobCompleted
	s.mu.Unlock()

	var ghErr error
	if !completed {
		err := s.deregister(ctx, name, runnerID)
		switch {
		case err == nil:
			s.mu.Lock()
			r.jobCompleted = true // nothing left on GitHub
			s.mu.Unlock()
		case errors.Is(err, scaleset.JobStillRunningError) && reason.alive():
			// Scale-down raced with a job start: keep the runner.
			s.logger.Info("runner is running a job, keeping it", "runner_name", name)
			s.mu.Lock()
			if s.fire(r, EvRemovalRefused) {
				r.sawJob = true
			}
			s.mu.Unlock()
			return
		case errors.Is(err, scaleset.JobStillRunningError):
			// The process is gone but GitHub still sees its job; GitHub
			// fails the job and drops the registration itself.
			s.logger.Info("runner exited while GitHub still sees its job", "runner_name", name)
			s.mu.Lock()
			r.jobCompleted = true
			s.mu.Unlock()
		case reason.alive():
			s.metrics.BackendError("github_remove")
			s.logger.Warn("failed to remove runner registration, will retry", "runner_name", name, "error", err)
			s.mu.Lock()
			if reason == ReasonSurplus {
				s.fire(r, EvRemovalAborted)
			} else {
				s.fire(r, EvRemovalFailed)
			}
			s.mu.Unlock()
			return
		default:
			s.metrics.BackendError("github_remove")
			ghErr = err
		}
	}
	if resourceID != "" {
		if err := s.be.RemoveRunner(ctx, resourceID); err != nil {
			s.metrics.BackendError("remove")
			s.logger.Warn("failed to remove runner from backend, will retry", "runner_name", name, "error", err)
			s.mu.Lock()
			s.fire(r, EvRemovalFailed)
			s.mu.Unlock()
			return
		}
		s.mu.Lock()
		r.resourceID = ""
		s.mu.Unlock()
	}
	if ghErr != nil {
		// The backend resource is gone; only the registration is left.
		s.logger.Warn("removed runner from the backend; its registration removal failed and is retried", "runner_name", name, "error", ghErr)
		s.mu.Lock()
		s.fire(r, EvRemovalFailed)
		s.mu.Unlock()
		return
	}
	s.metrics.RunnerRemoved(string(reason))
	s.logger.Info("removed runner", "runner_name", name, "runner_id", runnerID, "reason", string(reason))
	s.mu.Lock()
	s.fire(r, EvRemoved)
	s.mu.Unlock()
	s.journalDrop(ctx, name)
}

// deregister removes the GitHub registration; not found counts as success.
// Without a runner ID, the registration is found by the runner's name,
// which is unique per runner.
func (s *Scaler) deregister(ctx context.Context, name string, runnerID int) error {
	if runnerID == 0 {
		ref, err := s.gh.GetRunnerByName(ctx, name)
		if err != nil {
			return fmt.Errorf("failed to look up runner %q: %w", name, err)
		}
		if ref == nil {
			return nil
		}
		runnerID = ref.ID
	}
	if err := s.removeRegistration(ctx, runnerID); err != nil {
		return fmt.Errorf("failed to remove runner %q (id %d): %w", name, runnerID, err)
	}
	return nil
}

// Shutdown cleans up before the process exits. It cancels starts in
// progress (the backend deletes what they had created) and waits for them;
// finished and failed
// runners are always removed; with removeIdle, so are the runners not
// running a job (on GitHub and the backend). Busy runners are left to
// finish their job; a restarted service adopts them. A process that never
// held the session removes nothing.
func (s *Scaler) Shutdown(ctx context.Context, removeIdle bool) {
	s.stopStarts()
	s.waitStarts(ctx)
	s.passMu.Lock()
	defer s.passMu.Unlock()
	if !s.owner.Load() {
		return // never owned the scale set: nothing of it is ours to remove
	}
	// One last look at the backend, so runners that finished since the last
	// pass are cleaned up too.
	listedAt := s.clock.Now()
	list, err := s.be.ListRunners(ctx)
	s.mu.Lock()
	if err == nil {
		s.merge(list, listedAt)
	}
	var ts []transition
	for _, r := range s.runners {
		switch r.phase {
		case PhaseIdle, PhasePending:
			if removeIdle {
				ts = append(ts, transition{r: r, ev: EvRemovalRequested, reason: ReasonShutdown})
			}
		case PhaseDone, PhaseFailed:
			ts = append(ts, transition{r: r, ev: EvRemovalRequested, reason: r.removeReason})
		}
	}
	removes := s.apply(ts)
	s.mu.Unlock()
	s.execute(ctx, removes)
}
