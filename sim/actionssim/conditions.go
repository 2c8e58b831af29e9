// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package actionssim

import "time"

// Ready-made WaitFor conditions and latency helpers.

// JobsCompleted holds when at least n jobs are completed.
func JobsCompleted(n int) func(Snapshot) bool {
	return func(s Snapshot) bool { return len(s.JobsIn(JobCompleted)) >= n }
}

// JobsInState holds when exactly n jobs are in state.
func JobsInState(state JobState, n int) func(Snapshot) bool {
	return func(s Snapshot) bool { return len(s.JobsIn(state)) == n }
}

// RunnersInState holds when exactly n runners are in state.
func RunnersInState(state RunnerState, n int) func(Snapshot) bool {
	return func(s Snapshot) bool { return len(s.RunnersIn(state)) == n }
}

// StatsEqual holds when the scale set exists and its statistics equal want.
func StatsEqual(scaleSetID int, want Statistics) func(Snapshot) bool {
	return func(s Snapshot) bool {
		for _, ss := range s.ScaleSets {
			if ss.ID == scaleSetID {
				return ss.Statistics == want
			}
		}
		return false
	}
}

// HasSession holds when the named scale set exists and has a session.
func HasSession(scaleSetName string) func(Snapshot) bool {
	return func(s Snapshot) bool {
		ss, ok := s.ScaleSetByName(scaleSetName)
		return ok && ss.SessionID != ""
	}
}

// PickupLatency is the time from queueing to a runner starting the job
// (zero until started). It includes every assignment attempt.
func (j Job) PickupLatency() time.Duration {
	if j.StartedAt.IsZero() {
		return 0
	}
	return j.StartedAt.Sub(j.QueuedAt)
}

// RunTime is the time from start to completion (zero until completed or
// when never started).
func (j Job) RunTime() time.Duration {
	if j.StartedAt.IsZero() || j.CompletedAt.IsZero() {
		return 0
	}
	return j.CompletedAt.Sub(j.StartedAt)
}

// TotalLatency is the time from queueing to completion (zero until
// completed).
func (j Job) TotalLatency() time.Duration {
	if j.CompletedAt.IsZero() {
		return 0
	}
	return j.CompletedAt.Sub(j.QueuedAt)
}
