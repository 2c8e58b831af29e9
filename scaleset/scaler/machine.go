// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package scaler

// This file is the runner state machine: the phases a runner goes through,
// the events that move it, and the one table that says which event moves
// which phase where. Every phase change in the package goes through fire;
// an event the table does not list for the current phase is ignored (a
// late, duplicated or stale input), never applied.

// Phase is where a runner is in its life, as the scaler tracks it.
type Phase string

// Runner phases.
const (
	PhaseStarting Phase = "starting" // JIT config or backend start in flight
	PhasePending  Phase = "pending"  // accepted by the backend, not running yet
	PhaseIdle     Phase = "idle"     // running (online), no job
	PhaseBusy     Phase = "busy"     // running a job (JobStarted seen)
	PhaseDone     Phase = "done"     // finished; backend resource to remove
	PhaseFailed   Phase = "failed"   // to remove on GitHub and the backend
	PhaseRemoving Phase = "removing" // removal in flight
	// phaseGone: no longer tracked (removed, or its start failed).
	phaseGone Phase = "gone"
)

// event is something that happened to a runner.
type event string

// Runner events.
const (
	// evStartRequested: the scaler decided to start a runner.
	evStartRequested event = "start_requested"
	// evStartFailed: JIT generation or the backend start failed.
	evStartFailed event = "start_failed"
	// evBackendAccepted: the backend accepted the start (resource exists).
	evBackendAccepted event = "backend_accepted"
	// evBackendRunning: the backend reports the runner process running;
	// the runner is online as far as the scaler can tell.
	evBackendRunning event = "backend_running"
	// evJobStarted: a JobStarted message named this runner's ID (busy).
	evJobStarted event = "job_started"
	// evJobCompleted: a JobCompleted message named this runner's ID.
	evJobCompleted event = "job_completed"
	// evExited: the backend reports the runner process ended cleanly.
	evExited event = "exited"
	// evFailed: the backend reports the runner failed.
	evFailed event = "failed"
	// evVanished: the backend no longer lists the runner.
	evVanished event = "vanished"
	// evRemovalRequested: a decision to remove the runner (with a reason).
	evRemovalRequested event = "removal_requested"
	// evRemovalRefused: GitHub refused to remove the runner because it is
	// running a job; it stays, busy.
	evRemovalRefused event = "removal_refused"
	// evRemovalFailed: a removal step failed; the next pass retries it.
	evRemovalFailed event = "removal_failed"
	// evRemovalAborted: a scale-down removal failed before anything was
	// removed; the runner is still a live, idle runner.
	evRemovalAborted event = "removal_aborted"
	// evRemoved: the registration and the backend resource are gone.
	evRemoved event = "removed"
)

// transitions is the state machine. A missing entry means the event does
// not apply in that phase and is ignored. Notable absences, which are the
// invariants the model tests check: a busy runner has no
// evRemovalRequested (scale-down never removes a busy runner); a runner in
// flight (starting, removing) is settled only by its own operation.
var transitions = map[Phase]map[event]Phase{
	phaseGone: {
		evStartRequested: PhaseStarting,
	},
	PhaseStarting: {
		evStartFailed: phaseGone,
		// the start failed and so did removing its registration: the
		// runner stays, failed, until the registration is gone
		evFailed:          PhaseFailed,
		evBackendAccepted: PhasePending,
		// Messages for a runner whose start is still in flight are noted
		// as flags and applied when the start settles (see settleStart).
		evJobStarted:   PhaseStarting,
		evJobCompleted: PhaseStarting,
	},
	PhasePending: {
		evBackendRunning:   PhaseIdle,
		evJobStarted:       PhaseBusy,
		evJobCompleted:     PhaseDone,
		evExited:           PhaseDone,
		evFailed:           PhaseFailed,
		evVanished:         PhaseFailed,
		evRemovalRequested: PhaseRemoving,
	},
	PhaseIdle: {
		evJobStarted:       PhaseBusy,
		evJobCompleted:     PhaseDone,
		evExited:           PhaseDone,
		evFailed:           PhaseFailed,
		evVanished:         PhaseFailed,
		evRemovalRequested: PhaseRemoving,
	},
	PhaseBusy: {
		evJobCompleted: PhaseDone,
		// A busy runner that ended, cleanly or not, finished (or lost)
		// its job: GitHub reports the result; what is left is cleanup.
		evExited:   PhaseDone,
		evFailed:   PhaseDone,
		evVanished: PhaseFailed,
	},
	PhaseDone: {
		evJobCompleted:     PhaseDone,
		evRemovalRequested: PhaseRemoving,
		// finished and already gone from the backend: nothing to remove
		evVanished: phaseGone,
	},
	PhaseFailed: {
		evJobCompleted:     PhaseFailed,
		evRemovalRequested: PhaseRemoving,
		evVanished:         PhaseFailed,
	},
	PhaseRemoving: {
		evJobStarted:     PhaseRemoving,
		evJobCompleted:   PhaseRemoving,
		evRemovalRefused: PhaseBusy,
		evRemovalFailed:  PhaseFailed,
		evRemovalAborted: PhaseIdle,
		evRemoved:        phaseGone,
	},
}

// allowed reports whether ev moves a runner in phase p, and where to.
func allowed(p Phase, ev event) (Phase, bool) {
	next, ok := transitions[p][ev]
	return next, ok
}

// RemoveReason says why a runner is removed; it labels the removal metric.
type RemoveReason string

// Removal reasons.
const (
	ReasonDone        RemoveReason = "done"         // finished its job or exited
	ReasonSurplus     RemoveReason = "surplus"      // idle above the target
	ReasonNeverOnline RemoveReason = "never_online" // timed out before taking a job
	ReasonFailed      RemoveReason = "failed"       // failed on the backend
	ReasonVanished    RemoveReason = "vanished"     // the backend lost it
	ReasonShutdown    RemoveReason = "shutdown"     // remove_idle_runners_on_shutdown
	// ReasonOrphaned: a journaled registration no backend runner backs
	// (its process died before the backend recorded the runner).
	ReasonOrphaned RemoveReason = "orphaned"
)

// alive reports whether a removal for reason r concerns a runner that may
// still be running (so GitHub refusing it means the runner took a job).
func (r RemoveReason) alive() bool {
	return r == ReasonSurplus || r == ReasonNeverOnline || r == ReasonShutdown
}

// transition is one decided phase change: the scaler's decisions are
// returned as transitions and applied in one place (apply).
type transition struct {
	r      *runner
	ev     event
	reason RemoveReason // for evRemovalRequested
}

// fire applies ev to r if the table allows it and reports whether it did.
// Caller holds mu.
func (s *Scaler) fire(r *runner, ev event) bool {
	next, ok := allowed(r.phase, ev)
	if !ok {
		s.logger.Debug("ignored runner event", "runner_name", r.name, "runner_id", r.runnerID, "phase", string(r.phase), "event", string(ev))
		return false
	}
	r.phase = next
	if next == phaseGone {
		s.forget(r)
	}
	return true
}

// apply carries out decided transitions. Caller holds mu.
func (s *Scaler) apply(ts []transition) []*runner {
	var moved []*runner
	for _, t := range ts {
		if t.ev == evRemovalRequested {
			t.r.removeReason = t.reason
		}
		if s.fire(t.r, t.ev) {
			moved = append(moved, t.r)
		}
	}
	return moved
}
