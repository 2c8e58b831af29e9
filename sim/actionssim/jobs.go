// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package actionssim

import (
	"fmt"
	"slices"
	"time"
)

// This file is the job queue: queueing, matching, assignment, the
// statistics derived from it, and the background loop for timeouts.

// QueueJob queues one workflow job and returns its snapshot. Matching and
// assignment happen at once when a scale set can take it.
func (s *Simulator) QueueJob(spec JobSpec) Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	j := s.newJobLocked(spec, now)
	s.jobs = append(s.jobs, j)
	s.dispatchLocked(now)
	s.changedLocked()
	return j.Job
}

// QueueJobs queues n jobs that each run for duration, with the given
// runs-on labels (none: the scale set with the lowest id). It returns their
// snapshots.
func (s *Simulator) QueueJobs(n int, duration time.Duration, labels ...string) []Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	created := make([]*job, 0, n)
	for range n {
		j := s.newJobLocked(JobSpec{Labels: labels, Duration: duration}, now)
		s.jobs = append(s.jobs, j)
		created = append(created, j)
	}
	s.dispatchLocked(now)
	s.changedLocked()
	out := make([]Job, 0, n)
	for _, j := range created {
		out = append(out, j.Job)
	}
	return out
}

func (s *Simulator) newJobLocked(spec JobSpec, now time.Time) *job {
	s.nextRequest++
	s.nextRunID++
	j := &job{Job: Job{
		ID: newUUID(), RunnerRequestID: s.nextRequest, WorkflowRunID: s.nextRunID,
		Labels: slices.Clone(spec.Labels), Duration: spec.Duration, Result: spec.Result,
		State: JobQueued, Owner: spec.Owner, Repository: spec.Repository,
		WorkflowRef: spec.WorkflowRef, DisplayName: spec.DisplayName, EventName: spec.EventName,
		QueuedAt: now,
	}, target: spec.ScaleSetID}
	if j.Result == "" {
		j.Result = ResultSucceeded
	}
	if j.Owner == "" {
		j.Owner = "octo-org"
	}
	if j.Repository == "" {
		j.Repository = "octo-repo"
	}
	if j.WorkflowRef == "" {
		j.WorkflowRef = fmt.Sprintf("%s/%s/.github/workflows/ci.yml@refs/heads/main", j.Owner, j.Repository)
	}
	if j.DisplayName == "" {
		j.DisplayName = "build"
	}
	if j.EventName == "" {
		j.EventName = "push"
	}
	return j
}

// targetLocked picks the scale set for a queued job, or nil.
func (s *Simulator) targetLocked(j *job) *scaleSet {
	if j.target != 0 {
		return s.scaleSets[j.target]
	}
	for _, ss := range s.sortedScaleSetsLocked() {
		if ss.matches(j.Labels) {
			return ss
		}
	}
	return nil
}

// jobLocked returns the job with this id, or nil. Callers hold s.mu.
func (s *Simulator) jobLocked(id string) *job {
	if i := slices.IndexFunc(s.jobs, func(j *job) bool { return j.ID == id }); i >= 0 {
		return s.jobs[i]
	}
	return nil
}

// dispatchLocked moves queued jobs to scale sets and acquired jobs to
// assigned, within each scale set's reported capacity. Callers hold s.mu.
func (s *Simulator) dispatchLocked(now time.Time) {
	assigned := map[int]int{}
	for _, j := range s.jobs {
		if j.State == JobAssigned || j.State == JobRunning {
			assigned[j.ScaleSetID]++
		}
	}
	hasRoom := func(ss *scaleSet) bool {
		return ss.maxCapacity < 0 || assigned[ss.id] < ss.maxCapacity
	}
	for _, j := range s.jobs {
		switch j.State {
		case JobQueued:
			if now.Before(j.notBefore) {
				continue
			}
			ss := s.targetLocked(j)
			if ss == nil {
				continue
			}
			if s.opts.JobAcquisition {
				j.State, j.ScaleSetID = JobAvailable, ss.id
				url := fmt.Sprintf("/_services/%d/_apis/runtime/runnerscalesets/%d/acquirejobs", ss.tenant.id, ss.id)
				m := s.jobMessage(j, "JobAvailable")
				m.AcquireJobURL = &url
				s.emitLocked(ss, m)
				continue
			}
			if hasRoom(ss) {
				s.assignLocked(j, ss, now)
				assigned[ss.id]++
			}
		case JobAcquired:
			ss := s.scaleSets[j.ScaleSetID]
			if ss != nil && hasRoom(ss) {
				s.assignLocked(j, ss, now)
				assigned[ss.id]++
			}
		}
	}
}

func (s *Simulator) assignLocked(j *job, ss *scaleSet, now time.Time) {
	j.State, j.ScaleSetID, j.AssignedAt = JobAssigned, ss.id, now
	j.Attempts++
	s.emitLocked(ss, s.jobMessage(j, "JobAssigned"))
	s.log.Debug("assigned job", "job_id", j.ID, "scale_set_id", ss.id, "attempt", j.Attempts)
}

// jobMessage builds the common part of a job message.
func (s *Simulator) jobMessage(j *job, typ string) wireJobMessage {
	m := wireJobMessage{
		MessageType: typ, RunnerRequestID: j.RunnerRequestID, RepositoryName: j.Repository,
		OwnerName: j.Owner, JobID: j.ID, JobWorkflowRef: j.WorkflowRef, JobDisplayName: j.DisplayName,
		WorkflowRunID: j.WorkflowRunID, EventName: j.EventName, RequestLabels: slices.Clone(j.Labels),
		QueueTime: j.QueuedAt.UTC(), ScaleSetAssignTime: j.AssignedAt.UTC(),
		RunnerAssignTime: j.StartedAt.UTC(), FinishTime: j.CompletedAt.UTC(),
	}
	if m.RequestLabels == nil {
		m.RequestLabels = []string{}
	}
	return m
}

func withRunner(m wireJobMessage, id int, name string) wireJobMessage {
	m.RunnerID, m.RunnerName = &id, &name
	return m
}

func (s *Simulator) emitLocked(ss *scaleSet, m wireJobMessage) {
	ss.pending = append(ss.pending, m)
}

// finishJobLocked completes a job with result and emits JobCompleted. The
// runner, if any, is deleted (ephemeral).
func (s *Simulator) finishJobLocked(j *job, result string, now time.Time) {
	j.State, j.Result, j.CompletedAt = JobCompleted, result, now
	ss := s.scaleSets[j.ScaleSetID]
	if ss != nil {
		m := withRunner(s.jobMessage(j, "JobCompleted"), j.RunnerID, j.RunnerName)
		m.Result = &result
		s.emitLocked(ss, m)
	}
	if rn, ok := s.runners[j.RunnerID]; ok && rn.JobID == j.ID {
		s.deleteRunnerLocked(rn, now)
	}
	s.log.Info("completed job", "job_id", j.ID, "result", result)
}

// statsLocked derives a scale set's statistics from the job queue and the
// runners. Registered runners are those online (idle or busy); a runner
// whose JIT config is not yet used is not counted.
func (s *Simulator) statsLocked(ss *scaleSet) Statistics {
	var st Statistics
	for _, j := range s.jobs {
		if j.ScaleSetID != ss.id {
			continue
		}
		switch j.State {
		case JobAvailable:
			st.TotalAvailableJobs++
		case JobAcquired:
			st.TotalAcquiredJobs++
		case JobAssigned:
			st.TotalAssignedJobs++
		case JobRunning:
			st.TotalAssignedJobs++
			st.TotalRunningJobs++
		}
	}
	for _, r := range s.runners {
		if r.ScaleSetID != ss.id {
			continue
		}
		switch r.State {
		case RunnerIdle:
			st.TotalIdleRunners++
		case RunnerBusy:
			st.TotalBusyRunners++
		}
	}
	st.TotalRegisteredRunners = st.TotalIdleRunners + st.TotalBusyRunners
	return st
}

// loop runs the time-driven parts of the service until Close.
func (s *Simulator) loop() {
	defer close(s.loopDone)
	tick := min(s.opts.AssignTimeout, s.opts.SessionIdleTimeout, s.opts.RunnerLostTimeout) / 4
	if s.opts.RequeueDelay > 0 {
		tick = min(tick, s.opts.RequeueDelay/2)
	}
	tick = max(10*time.Millisecond, min(tick, time.Second))
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			s.mu.Lock()
			s.changedLocked() // wake WaitFor and long polls
			s.mu.Unlock()
			return
		case now := <-t.C:
			s.mu.Lock()
			if s.tickLocked(now) {
				s.changedLocked()
			}
			s.mu.Unlock()
		}
	}
}

// tickLocked handles assignment timeouts, requeue delays, idle sessions and
// lost runners. It reports whether anything changed.
func (s *Simulator) tickLocked(now time.Time) bool {
	changed := false
	for _, j := range s.jobs {
		switch {
		case j.State == JobAssigned && now.Sub(j.AssignedAt) > s.opts.AssignTimeout:
			s.cancelAssignmentLocked(j, now)
			changed = true
		case j.State == JobQueued && !j.notBefore.IsZero() && !now.Before(j.notBefore):
			j.notBefore = time.Time{}
			changed = true
		}
	}
	for _, ss := range s.scaleSets {
		if ss.session != nil && s.sessionExpiredLocked(ss.session, now) {
			s.log.Info("expired idle message session", "scale_set_id", ss.id)
			ss.session = nil
			changed = true
		}
	}
	for _, rn := range s.runners {
		if (rn.State == RunnerIdle || rn.State == RunnerBusy) && rn.polls == 0 && now.Sub(rn.lastSeen) > s.opts.RunnerLostTimeout {
			s.log.Info("lost runner", "runner_name", rn.Name, "runner_id", rn.ID)
			s.runnerGoneLocked(rn, now)
			changed = true
		}
	}
	if changed {
		s.dispatchLocked(now)
	}
	return changed
}

// cancelAssignmentLocked ends an assignment that no runner took: it emits
// JobCompleted "canceled" with no runner and requeues the job, or gives it
// up after MaxAssignAttempts.
func (s *Simulator) cancelAssignmentLocked(j *job, now time.Time) {
	ss := s.scaleSets[j.ScaleSetID]
	if ss != nil {
		canceled := ResultCanceled
		m := withRunner(s.jobMessage(j, "JobCompleted"), 0, "")
		m.Result = &canceled
		m.FinishTime = now.UTC()
		s.emitLocked(ss, m)
	}
	if j.Attempts >= s.opts.MaxAssignAttempts {
		j.State, j.Result, j.CompletedAt = JobCompleted, ResultCanceled, now
		s.log.Info("gave up job after assignment timeouts", "job_id", j.ID, "attempts", j.Attempts)
		return
	}
	j.State, j.ScaleSetID = JobQueued, 0
	j.notBefore = now.Add(time.Duration(j.Attempts) * s.opts.RequeueDelay)
	s.log.Info("requeued job after assignment timeout", "job_id", j.ID, "attempts", j.Attempts)
}
