// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadsim

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/nomad/api"
)

// schedule processes an evaluation in the background, like a scheduler
// worker. Caller holds mu.
func (s *Server) schedule(key jobKey, evalID string) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.process(key, evalID)
	}()
}

// process places the job's allocations or records why it cannot.
func (s *Server) process(key jobKey, evalID string) {
	s.mu.Lock()
	rec := s.jobs[key]
	place := s.place
	var job *api.Job
	if rec != nil {
		job = copyJob(rec.job)
	}
	s.mu.Unlock()
	if s.ctx.Err() != nil {
		return
	}
	var failure *api.AllocationMetric
	if job != nil && place != nil {
		failure = place(job)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	ev := s.evals[evalID]
	if ev == nil || ev.Status == evalStatusCanceled {
		return
	}
	if rec = s.jobs[key]; rec == nil || deref(rec.job.Stop) {
		idx := s.commit("evals")
		ev.Status, ev.ModifyIndex, ev.ModifyTime = evalStatusComplete, idx, time.Now().UnixNano()
		return
	}
	if failure != nil {
		s.failPlacement(rec, ev, failure)
		return
	}
	idx := s.commit("evals", "allocs", "job_summary")
	ev.Status, ev.ModifyIndex, ev.ModifyTime = evalStatusComplete, idx, time.Now().UnixNano()
	ev.FailedTGAllocs = nil
	ev.QueuedAllocations = map[string]int{}
	for _, tg := range rec.job.TaskGroups {
		ev.QueuedAllocations[deref(tg.Name)] = 0
		sum := rec.summary.Summary[deref(tg.Name)]
		sum.Queued = 0
		rec.summary.Summary[deref(tg.Name)] = sum
		for i := range deref(tg.Count) {
			s.placeAlloc(rec, tg, i, ev.ID, idx)
		}
	}
	rec.summary.ModifyIndex = idx
	s.setStatus(rec, idx)
}

// failPlacement completes ev with the failure metric and leaves a blocked
// evaluation behind, as Nomad's scheduler does. Caller holds mu.
func (s *Server) failPlacement(rec *jobRec, ev *api.Evaluation, m *api.AllocationMetric) {
	idx := s.commit("evals", "job_summary")
	now := time.Now().UnixNano()
	failed := map[string]*api.AllocationMetric{}
	for _, tg := range rec.job.TaskGroups {
		mc := *m
		failed[deref(tg.Name)] = &mc
		sum := rec.summary.Summary[deref(tg.Name)]
		sum.Queued = deref(tg.Count)
		rec.summary.Summary[deref(tg.Name)] = sum
	}
	rec.summary.ModifyIndex = idx
	if ev.Status == evalStatusPending && ev.TriggeredBy == "queued-allocs" {
		// an unblocked evaluation that still cannot place: blocked again
		ev.Status, ev.ModifyIndex, ev.ModifyTime = evalStatusBlocked, idx, now
		ev.FailedTGAllocs = failed
		s.setStatus(rec, idx)
		return
	}
	blocked := &api.Evaluation{
		ID: newUUID(), Namespace: ev.Namespace, Priority: ev.Priority, Type: ev.Type, TriggeredBy: "queued-allocs",
		JobID: ev.JobID, JobModifyIndex: ev.JobModifyIndex, Status: evalStatusBlocked,
		StatusDescription: blockedEvalFailedPlacements, PreviousEval: ev.ID,
		CreateIndex: idx, ModifyIndex: idx, CreateTime: now, ModifyTime: now,
		// Evaluation.CreateBlockedEval copies the failed placements
		FailedTGAllocs: copyMetrics(failed),
	}
	s.evals[blocked.ID] = blocked
	rec.evals = append(rec.evals, blocked.ID)
	ev.Status, ev.ModifyIndex, ev.ModifyTime = evalStatusComplete, idx, now
	ev.FailedTGAllocs, ev.BlockedEval = failed, blocked.ID
	ev.QueuedAllocations = map[string]int{}
	for tg := range failed {
		ev.QueuedAllocations[tg] = rec.summary.Summary[tg].Queued
	}
	s.setStatus(rec, idx)
}

// blockedEvalFailedPlacements is the scheduler's description of the
// blocked evaluation it creates when placements failed
// (scheduler/generic_sched.go).
const blockedEvalFailedPlacements = "created to place remaining allocations"

func copyMetrics(in map[string]*api.AllocationMetric) map[string]*api.AllocationMetric {
	out := make(map[string]*api.AllocationMetric, len(in))
	for k, v := range in {
		c := *v
		out[k] = &c
	}
	return out
}

// SetPlacement changes the placement decision and re-evaluates every
// blocked evaluation, as a node joining or freeing capacity does.
func (s *Server) SetPlacement(p Placement) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.place = p
	for key, rec := range s.jobs {
		for _, id := range rec.evals {
			if ev := s.evals[id]; ev.Status == evalStatusBlocked {
				idx := s.commit("evals")
				ev.Status, ev.ModifyIndex = evalStatusPending, idx
				s.schedule(key, id)
			}
		}
	}
}

// placeAlloc creates one allocation on the node and starts its task.
// Caller holds mu.
func (s *Server) placeAlloc(rec *jobRec, tg *api.TaskGroup, i int, evalID string, idx uint64) {
	now := time.Now()
	a := &allocRec{stub: api.AllocationListStub{
		ID: newUUID(), EvalID: evalID, Name: fmt.Sprintf("%s.%s[%d]", *rec.job.ID, deref(tg.Name), i),
		Namespace: deref(rec.job.Namespace), NodeID: NodeID, NodeName: NodeName, JobID: *rec.job.ID,
		JobType: deref(rec.job.Type), JobVersion: deref(rec.job.Version), TaskGroup: deref(tg.Name),
		DesiredStatus: allocDesiredRun, ClientStatus: allocClientPending, ClientDescription: "No tasks have started",
		TaskStates:  map[string]*api.TaskState{},
		CreateIndex: idx, ModifyIndex: idx, CreateTime: now.UnixNano(), ModifyTime: now.UnixNano(),
	}}
	var task *api.Task
	if len(tg.Tasks) > 0 {
		task = tg.Tasks[0]
		a.task = task.Name
		a.killTimeout = 5 * time.Second
		if task.KillTimeout != nil {
			a.killTimeout = *task.KillTimeout
		}
		for _, t := range tg.Tasks {
			a.stub.TaskStates[t.Name] = &api.TaskState{State: "pending", Events: []*api.TaskEvent{
				event("Received", "Task received by client", now),
				setupEvent(now),
			}}
		}
	}
	s.allocs[a.stub.ID] = a
	rec.allocs = append(rec.allocs, a.stub.ID)
	sum := rec.summary.Summary[deref(tg.Name)]
	sum.Starting++
	rec.summary.Summary[deref(tg.Name)] = sum
	if s.runner == nil || task == nil {
		return
	}
	t := Task{
		Namespace: deref(rec.job.Namespace), JobID: *rec.job.ID, ParentID: deref(rec.job.ParentID),
		AllocID: a.stub.ID, TaskGroup: deref(tg.Name), Task: task, Meta: cloneMeta(rec.job.Meta),
		Payload: slices.Clone(rec.job.Payload),
	}
	ctx, cancel := context.WithCancel(s.ctx)
	a.cancel, a.running = cancel, true
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		s.runTask(ctx, a.stub.ID, t)
	}()
}

// cloneMeta copies a meta map. Unlike maps.Clone it never returns nil,
// so a TaskRunner may add keys to Task.Meta. (Named so it does not hide
// the maps package.)
func cloneMeta(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
