// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package scaler

import (
	"context"
	"errors"
	"fmt"

	"github.com/actions/scaleset"
)

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
			if s.fire(r, evRemovalRefused) {
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
				s.fire(r, evRemovalAborted)
			} else {
				s.fire(r, evRemovalFailed)
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
			s.fire(r, evRemovalFailed)
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
		s.fire(r, evRemovalFailed)
		s.mu.Unlock()
		return
	}
	s.metrics.RunnerRemoved(string(reason))
	s.logger.Info("removed runner", "runner_name", name, "runner_id", runnerID, "reason", string(reason))
	s.mu.Lock()
	s.fire(r, evRemoved)
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
				ts = append(ts, transition{r: r, ev: evRemovalRequested, reason: ReasonShutdown})
			}
		case PhaseDone, PhaseFailed:
			ts = append(ts, transition{r: r, ev: evRemovalRequested, reason: r.removeReason})
		}
	}
	removes := s.apply(ts)
	s.mu.Unlock()
	s.execute(ctx, removes)
}
