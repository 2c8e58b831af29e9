// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package scaler

import (
	"time"

	"github.com/tartnomad/nomad-driver-tart/internal/backoff"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
)

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
		s.fire(r, evVanished)
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
	s.fire(r, evStartRequested)
	s.fire(r, evBackendAccepted)
	s.track(r)
	s.setID(r, br.RunnerID)
	switch br.State {
	case backend.StateRunning:
		s.fire(r, evBackendRunning)
		r.onlineAt = now
	case backend.StatePending:
		r.waitingCapacity = br.WaitingForCapacity
		if r.waitingCapacity {
			r.queueReason = br.Reason
		}
	case backend.StateExited:
		s.fire(r, evExited)
		r.removeReason, r.ended = ReasonDone, true
	default:
		s.fire(r, evFailed)
		r.removeReason, r.ended = ReasonFailed, true
	}
	if r.runnerID != 0 && s.busyHint[r.runnerID] {
		delete(s.busyHint, r.runnerID)
		if s.fire(r, evJobStarted) {
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
		if s.fire(r, evBackendRunning) {
			r.onlineAt = now
			s.failures = 0
			s.metrics.RunnerOnline(now.Sub(r.createdAt))
			s.logger.Debug("runner came online", "runner_name", r.name)
		}
	case backend.StateExited:
		from := r.phase
		if s.fire(r, evExited) && from != PhaseDone {
			if from != PhasePending {
				s.noteFinishing(r, now)
			}
			r.removeReason = ReasonDone
		}
	case backend.StateFailed:
		from := r.phase
		if !s.fire(r, evFailed) || from == PhaseDone || from == PhaseFailed {
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
