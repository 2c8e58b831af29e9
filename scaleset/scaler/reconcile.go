// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package scaler

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/tartnomad/nomad-driver-tart/internal/waitgroup"
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

// reconcile runs one pass and waits for the runner starts it launched:
// read the backend, merge it with what is tracked, decide, and carry out
// the removals and starts. It is idempotent: running it again with nothing
// changed does nothing. Operations run on a context detached from ctx
// (bounded by OpTimeout) so that a shutdown in the middle of a pass does
// not leave a JIT registration without its runner.
func (s *Scaler) reconcile(ctx context.Context) error {
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
		s.fire(r, evStartFailed) // not started: a later pass decides again
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
		s.requestPass()
	})
}

// waitStarts waits for background starts, or until ctx ends.
func (s *Scaler) waitStarts(ctx context.Context) {
	_ = waitgroup.Wait(ctx, &s.starts) // an ended ctx fails the calls that follow
}

// decide turns the tracked state into a plan: the removals as transitions
// (applied here, in one place) and the runners to start. Nothing is
// started or removed as surplus before the demand is known. Caller holds
// mu.
func (s *Scaler) decide(now time.Time) plan {
	var p plan
	var ts []transition
	target := targetRunners(s.cfg.MinRunners, s.cfg.MaxRunners, s.assigned)
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
			*ts = append(*ts, transition{r: r, ev: evRemovalRequested, reason: r.removeReason})
			continue
		case PhasePending:
			if why := s.pendingTooLong(r, now); why != "" {
				s.neverOnline(r, now, why)
				*ts = append(*ts, transition{r: r, ev: evRemovalRequested, reason: ReasonNeverOnline})
				continue
			}
			pending = append(pending, r)
		case PhaseIdle:
			if s.waiting > 0 {
				if r.waitingSince.IsZero() {
					r.waitingSince = now
				} else if now.Sub(r.waitingSince) > s.cfg.OnlineTimeout {
					s.neverOnline(r, now, "idle while jobs waited")
					*ts = append(*ts, transition{r: r, ev: evRemovalRequested, reason: ReasonNeverOnline})
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
		s.fire(r, evStartRequested)
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
		out = append(out, transition{r: r, ev: evRemovalRequested, reason: ReasonSurplus})
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
