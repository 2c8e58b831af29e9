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

// plan is what one reconcile pass will do, decided under the lock.
type plan struct {
	starts  []*runner
	removes []*runner // phase set to PhaseRemoving; removeReason says why
	probe   []string  // names to look up on GitHub (orphan registrations)
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
// active, and kick another pass when they end.
func (s *Scaler) pass(ctx context.Context) error {
	s.passMu.Lock()
	defer s.passMu.Unlock()

	listedAt := s.clock.Now()
	list, err := s.be.ListRunners(ctx)
	if err != nil {
		s.metrics.BackendError("list")
		return fmt.Errorf("failed to list runners on backend %s: %w", s.be.Name(), err)
	}

	s.mu.Lock()
	s.merge(list, listedAt)
	p := s.decide(s.clock.Now())
	s.mu.Unlock()

	opCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.OpTimeout)
	defer cancel()
	if len(p.probe) > 0 {
		s.removeOrphans(opCtx, p.probe)
	}
	s.execute(opCtx, p)
	for _, r := range p.starts {
		s.launch(ctx, r)
	}
	return nil
}

// launch starts one runner in the background, at most MaxParallelOps at
// once across passes.
func (s *Scaler) launch(ctx context.Context, r *runner) {
	s.starts.Go(func() {
		s.startSem <- struct{}{}
		defer func() { <-s.startSem }()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.OpTimeout)
		defer cancel()
		s.start(sctx, r)
		s.Kick()
	})
}

// waitStarts waits for background starts, or until ctx ends.
func (s *Scaler) waitStarts(ctx context.Context) {
	_ = waitgroup.Wait(ctx, &s.starts) // an ended ctx fails the calls that follow
}

// merge folds the backend's list into the tracked runners. Caller holds mu.
func (s *Scaler) merge(list []backend.Runner, listedAt time.Time) {
	now := s.clock.Now()
	seen := make(map[string]bool, len(list))
	for _, br := range list {
		slot, ours := s.slotOf(br.Name)
		if !ours {
			continue
		}
		seen[br.Name] = true
		r := s.runners[br.Name]
		if r == nil {
			r = s.adopt(br, slot, now)
			s.runners[br.Name] = r
			continue
		}
		if r.resourceID == "" {
			r.resourceID = br.ResourceID
		}
		if r.phase == PhaseStarting || r.acceptedAt.IsZero() || r.acceptedAt.After(listedAt) {
			// The list predates the end of the start: a container still
			// "created", say, is not a failed one.
			continue
		}
		s.applyState(r, br, now)
	}
	for name, r := range s.runners {
		if seen[name] {
			continue
		}
		switch r.phase {
		case PhaseStarting, PhaseRemoving:
			// in flight; the operation settles the record
		case PhaseDone:
			// already gone from the backend: nothing left to remove
			if !r.acceptedAt.After(listedAt) {
				delete(s.runners, name)
			}
		default:
			if r.acceptedAt.IsZero() || r.acceptedAt.After(listedAt) {
				continue // accepted after the list was taken
			}
			// The backend lost it (or it removed itself): make sure GitHub
			// does not keep the registration.
			s.logger.Info("runner disappeared from the backend", "runner_name", name, "phase", string(r.phase))
			r.resourceID = ""
			r.phase = PhaseFailed
			r.removeReason = "vanished"
		}
	}
}

// adopt tracks a runner found on the backend but not in memory (a restart).
func (s *Scaler) adopt(br backend.Runner, slot int, now time.Time) *runner {
	r := &runner{name: br.Name, slot: slot, resourceID: br.ResourceID, createdAt: br.CreatedAt}
	if r.createdAt.IsZero() {
		r.createdAt = now
	}
	r.acceptedAt = r.createdAt
	switch br.State {
	case backend.StateRunning:
		r.phase, r.onlineAt = PhaseIdle, now
	case backend.StatePending:
		r.phase = PhasePending
	case backend.StateExited:
		r.phase, r.removeReason = PhaseDone, "done"
	default:
		r.phase, r.removeReason = PhaseFailed, "failed"
	}
	if id, busy := s.busyHint[br.Name]; busy && r.phase == PhaseIdle {
		r.phase, r.runnerID = PhaseBusy, id
		delete(s.busyHint, br.Name)
	}
	s.logger.Info("adopted runner found on the backend", "runner_name", br.Name, "state", string(br.State), "phase", string(r.phase))
	return r
}

// applyState moves a tracked runner by what the backend reports.
func (s *Scaler) applyState(r *runner, br backend.Runner, now time.Time) {
	switch br.State {
	case backend.StateRunning:
		if r.phase == PhasePending {
			r.phase, r.onlineAt = PhaseIdle, now
			s.failures = 0
			s.metrics.RunnerOnline(now.Sub(r.createdAt))
			s.logger.Debug("runner came online", "runner_name", r.name)
		}
	case backend.StateExited:
		if r.phase == PhasePending || r.phase == PhaseIdle || r.phase == PhaseBusy {
			if r.phase != PhasePending && !r.jobCompleted {
				s.finishing[r.name] = now
			}
			r.phase, r.removeReason = PhaseDone, "done"
		}
	case backend.StateFailed:
		switch r.phase {
		case PhaseBusy:
			if !r.jobCompleted {
				s.finishing[r.name] = now
			}
			r.phase, r.removeReason = PhaseDone, "done"
		case PhasePending, PhaseIdle:
			s.noteFailure(now)
			s.logger.Warn("runner failed on the backend", "runner_name", r.name, "reason", br.Reason)
			r.phase, r.removeReason = PhaseFailed, "failed"
		}
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

// decide turns the tracked state into a plan. Caller holds mu.
func (s *Scaler) decide(now time.Time) plan {
	var p plan
	target := Target(s.cfg.MinRunners, s.cfg.MaxRunners, s.assigned)
	idle, pending, active := s.classify(now, &p)
	active += s.recentlyFinished(now)

	if !s.probed {
		// First pass after start: find GitHub registrations of this scale
		// set's names that no backend resource backs (a crash between JIT
		// generation and backend start). Nothing starts before that.
		s.probed = true
		p.probe = s.untrackedNames()
	}

	switch {
	case active < target && !now.Before(s.nextStartAfter):
		p.starts = s.newRunners(now, min(target-active, s.cfg.MaxParallelOps))
	case active > target:
		p.removes = append(p.removes, surplus(pending, idle, active-target)...)
	}
	for _, r := range p.removes {
		r.phase = PhaseRemoving
	}
	return p
}

// classify adds finished, failed and timed-out runners to p.removes and
// returns the idle and pending runners (candidates for scale-down) and the
// number of runners that count towards the target. Caller holds mu.
func (s *Scaler) classify(now time.Time, p *plan) (idle, pending []*runner, active int) {
	for _, r := range s.runners {
		switch r.phase {
		case PhaseDone, PhaseFailed:
			p.removes = append(p.removes, r)
			continue
		case PhasePending:
			if now.Sub(r.createdAt) > s.cfg.OnlineTimeout {
				s.neverOnline(r, now, "not running on the backend")
				p.removes = append(p.removes, r)
				continue
			}
			pending = append(pending, r)
		case PhaseIdle:
			if s.waiting > 0 {
				if r.waitingSince.IsZero() {
					r.waitingSince = now
				} else if now.Sub(r.waitingSince) > s.cfg.OnlineTimeout {
					s.neverOnline(r, now, "idle while jobs waited")
					p.removes = append(p.removes, r)
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
	for name, at := range s.finishing {
		if now.Sub(at) > s.cfg.FinishGrace {
			delete(s.finishing, name)
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

// untrackedNames lists the runner names of every slot no tracked runner
// holds. Caller holds mu.
func (s *Scaler) untrackedNames() []string {
	var names []string
	for slot := 0; slot < s.slotLimit(); slot++ {
		if name := s.RunnerName(slot); s.runners[name] == nil {
			names = append(names, name)
		}
	}
	return names
}

// newRunners tracks up to n new runners in free slots, phase starting.
// Caller holds mu.
func (s *Scaler) newRunners(now time.Time, n int) []*runner {
	var out []*runner
	for range n {
		slot, ok := s.freeSlot()
		if !ok {
			break
		}
		r := &runner{name: s.RunnerName(slot), slot: slot, phase: PhaseStarting, createdAt: now}
		s.runners[r.name] = r
		out = append(out, r)
	}
	return out
}

// surplus picks n runners to scale down: pending runners first (not doing
// anything yet, newest first), then the idle runners that came online last.
func surplus(pending, idle []*runner, n int) []*runner {
	sort.Slice(pending, func(i, j int) bool { return pending[i].createdAt.After(pending[j].createdAt) })
	sort.Slice(idle, func(i, j int) bool { return idle[i].onlineAt.After(idle[j].onlineAt) })
	var out []*runner
	for _, r := range append(pending, idle...) {
		if len(out) == n {
			break
		}
		r.removeReason = "surplus"
		out = append(out, r)
	}
	return out
}

func (s *Scaler) neverOnline(r *runner, now time.Time, why string) {
	s.logger.Warn("removing runner that never came online", "runner_name", r.name, "why", why, "timeout", s.cfg.OnlineTimeout.String())
	r.removeReason = "never_online"
	s.noteFailure(now)
}

// slotLimit bounds runner slots: twice max_runners leaves room for runners
// still being removed while their replacements start.
func (s *Scaler) slotLimit() int { return 2 * s.cfg.MaxRunners }

func (s *Scaler) freeSlot() (int, bool) {
	used := make(map[int]bool, len(s.runners)+len(s.finishing))
	for _, r := range s.runners {
		used[r.slot] = true
	}
	// A runner that exited before its JobCompleted arrived keeps its name
	// until then: a new runner under that name would otherwise take the
	// late JobCompleted for its own and be removed mid-job.
	for name := range s.finishing {
		if slot, ok := s.slotOf(name); ok {
			used[slot] = true
		}
	}
	for slot := 0; slot < s.slotLimit(); slot++ {
		if !used[slot] {
			return slot, true
		}
	}
	return 0, false
}

// execute carries out a plan's removals with bounded concurrency. They
// finish before any start of the pass is launched, so that the backend
// never holds more than max_runners resources at once.
func (s *Scaler) execute(ctx context.Context, p plan) {
	sem := make(chan struct{}, s.cfg.MaxParallelOps)
	var wg sync.WaitGroup
	for _, r := range p.removes {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s.remove(ctx, r)
		})
	}
	wg.Wait()
}

// start generates a JIT config and starts the runner on the backend. On
// failure it removes the registration so nothing is left on GitHub.
func (s *Scaler) start(ctx context.Context, r *runner) {
	jit, err := s.generateJIT(ctx, r.name)
	if err != nil {
		s.metrics.BackendError("generate_jit")
		s.logger.Error("failed to generate JIT config", "runner_name", r.name, "error", err)
		s.mu.Lock()
		delete(s.runners, r.name)
		s.noteFailure(s.clock.Now())
		s.mu.Unlock()
		return
	}
	runnerID := 0
	if jit.Runner != nil {
		runnerID = jit.Runner.ID
	}
	s.mu.Lock()
	r.runnerID = runnerID
	s.mu.Unlock()

	began := s.clock.Now()
	resourceID, err := s.be.StartRunner(ctx, r.name, jit.EncodedJITConfig)
	took := s.clock.Now().Sub(began)
	if err != nil {
		s.metrics.BackendError("start")
		s.logger.Error("failed to start runner", "runner_name", r.name, "backend", s.be.Name(), "error", err)
		if runnerID != 0 {
			if err := s.removeRegistration(ctx, runnerID); err != nil {
				s.metrics.BackendError("github_remove")
				s.logger.Warn("failed to remove registration of a runner that did not start", "runner_name", r.name, "error", err)
			}
		}
		s.mu.Lock()
		delete(s.runners, r.name)
		s.noteFailure(s.clock.Now())
		s.mu.Unlock()
		return
	}
	s.metrics.RunnerStarted(took)
	s.mu.Lock()
	r.resourceID = resourceID
	r.acceptedAt = s.clock.Now()
	switch {
	case r.jobCompleted:
		r.phase, r.removeReason = PhaseDone, "done"
	case r.phase == PhaseStarting && r.sawJob:
		r.phase, r.onlineAt = PhaseBusy, r.acceptedAt
		s.failures = 0
	case r.phase == PhaseStarting:
		r.phase = PhasePending
	}
	s.mu.Unlock()
	s.logger.Info("started runner", "runner_name", r.name, "runner_id", runnerID, "backend", s.be.Name(), "took", took.String())
}

// generateJIT asks for a JIT config; a name clash with a stale
// registration of the same scale set removes it and tries once more.
func (s *Scaler) generateJIT(ctx context.Context, name string) (*scaleset.RunnerScaleSetJitRunnerConfig, error) {
	jit, err := s.requestJIT(ctx, name)
	if err == nil || !errors.Is(err, scaleset.RunnerExistsError) {
		return jit, err
	}
	ref, lerr := s.gh.GetRunnerByName(ctx, name)
	if lerr != nil {
		return nil, fmt.Errorf("runner %q exists and looking it up failed: %w", name, lerr)
	}
	if ref != nil {
		if ref.RunnerScaleSetID != 0 && ref.RunnerScaleSetID != s.cfg.ScaleSetID {
			return nil, fmt.Errorf("runner name %q is taken by scale set %d", name, ref.RunnerScaleSetID)
		}
		if rerr := s.removeRegistration(ctx, ref.ID); rerr != nil {
			return nil, fmt.Errorf("failed to remove stale runner %q: %w", name, rerr)
		}
	}
	return s.requestJIT(ctx, name)
}

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

// remove deletes a runner: GitHub first (which refuses a busy runner, so
// scale-down can never kill a job), then the backend resource.
func (s *Scaler) remove(ctx context.Context, r *runner) {
	s.mu.Lock()
	name, resourceID, runnerID, reason, completed := r.name, r.resourceID, r.runnerID, r.removeReason, r.jobCompleted
	s.mu.Unlock()

	if !completed {
		err := s.deregister(ctx, name, runnerID)
		alive := reason == "surplus" || reason == "never_online"
		switch {
		case err == nil:
		case errors.Is(err, scaleset.JobStillRunningError) && alive:
			// Scale-down raced with a job start: keep the runner.
			s.logger.Info("runner is running a job, keeping it", "runner_name", name)
			s.mu.Lock()
			r.phase = PhaseBusy
			s.mu.Unlock()
			return
		case errors.Is(err, scaleset.JobStillRunningError):
			// The process is gone but GitHub still sees its job; GitHub
			// fails the job and drops the registration itself.
			s.logger.Info("runner exited while GitHub still sees its job", "runner_name", name)
		default:
			s.metrics.BackendError("github_remove")
			s.logger.Warn("failed to remove runner registration, will retry", "runner_name", name, "error", err)
			s.restore(r)
			return
		}
	}
	if resourceID != "" {
		if err := s.be.RemoveRunner(ctx, resourceID); err != nil {
			s.metrics.BackendError("remove")
			s.logger.Warn("failed to remove runner from backend, will retry", "runner_name", name, "error", err)
			s.mu.Lock()
			r.jobCompleted = true // GitHub side is done
			s.mu.Unlock()
			s.restore(r)
			return
		}
	}
	s.metrics.RunnerRemoved(reason)
	s.logger.Info("removed runner", "runner_name", name, "reason", reason)
	s.mu.Lock()
	if s.runners[name] == r {
		delete(s.runners, name)
	}
	s.mu.Unlock()
}

// restore puts a runner whose removal failed back in line for the next pass.
func (s *Scaler) restore(r *runner) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.removeReason == "surplus" {
		r.phase = PhaseIdle
		return
	}
	r.phase = PhaseFailed
	if r.removeReason == "done" {
		r.phase = PhaseDone
	}
}

// deregister removes the GitHub registration; not found counts as success.
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

// removeOrphans removes registrations of this scale set's runner names that
// no backend resource backs. Lookups that fail are retried on the next
// start of the service only; a later JIT name clash also clears them.
func (s *Scaler) removeOrphans(ctx context.Context, names []string) {
	for _, name := range names {
		ref, err := s.gh.GetRunnerByName(ctx, name)
		if err != nil {
			s.metrics.BackendError("github_lookup")
			s.logger.Warn("failed to look up runner name", "runner_name", name, "error", err)
			continue
		}
		if ref == nil || (ref.RunnerScaleSetID != 0 && ref.RunnerScaleSetID != s.cfg.ScaleSetID) {
			continue
		}
		s.mu.Lock()
		tracked := s.runners[name] != nil
		s.mu.Unlock()
		if tracked {
			continue
		}
		if err := s.removeRegistration(ctx, ref.ID); err != nil {
			s.logger.Warn("failed to remove orphan registration", "runner_name", name, "error", err)
			continue
		}
		s.metrics.RunnerRemoved("orphan")
		s.logger.Info("removed orphan registration", "runner_name", name, "runner_id", ref.ID)
	}
}

// Shutdown cleans up before the process exits: finished and failed
// runners are always removed; with removeIdle, so are the runners not
// running a job (on GitHub and the backend). Busy runners are left to
// finish their job; a restarted service adopts them.
func (s *Scaler) Shutdown(ctx context.Context, removeIdle bool) {
	s.waitStarts(ctx)
	s.passMu.Lock()
	defer s.passMu.Unlock()
	// One last look at the backend, so runners that finished since the last
	// pass are cleaned up too.
	listedAt := s.clock.Now()
	list, err := s.be.ListRunners(ctx)
	s.mu.Lock()
	if err == nil {
		s.merge(list, listedAt)
	}
	var p plan
	for _, r := range s.runners {
		switch r.phase {
		case PhaseIdle, PhasePending:
			if !removeIdle {
				continue
			}
			fallthrough
		case PhaseDone, PhaseFailed:
			if r.removeReason == "" {
				r.removeReason = "shutdown"
			}
			r.phase = PhaseRemoving
			p.removes = append(p.removes, r)
		}
	}
	s.mu.Unlock()
	s.execute(ctx, p)
}
