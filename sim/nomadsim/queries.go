// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadsim

import (
	"context"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/nomad/api"
)

// listStubs lists jobs sorted by ID. Caller holds mu.
func (s *Server) listStubs(ns, prefix string, withMeta bool) []*jobListStub {
	out := []*jobListStub{}
	for key, rec := range s.jobs {
		if (ns != allNamespaces && key.ns != ns) || !strings.HasPrefix(key.id, prefix) {
			continue
		}
		j := rec.job
		st := &jobListStub{
			ID: *j.ID, ParentID: deref(j.ParentID), Name: deref(j.Name), Namespace: key.ns,
			Datacenters: j.Datacenters, NodePool: deref(j.NodePool), Type: deref(j.Type), Priority: deref(j.Priority),
			Periodic: rec.hasPeriodic(), ParameterizedJob: rec.isParameterized(), Stop: deref(j.Stop),
			Status: deref(j.Status), StatusDescription: deref(j.StatusDescription), JobSummary: rec.summaryCopy(),
			CreateIndex: deref(j.CreateIndex), ModifyIndex: deref(j.ModifyIndex), JobModifyIndex: deref(j.JobModifyIndex),
			SubmitTime: deref(j.SubmitTime),
		}
		if withMeta {
			st.Meta = cloneMeta(j.Meta)
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, k int) bool {
		if out[i].ID == out[k].ID {
			return out[i].Namespace < out[k].Namespace
		}
		return out[i].ID < out[k].ID
	})
	return out
}

// allocStubs lists a job's allocations; a purged job's are gone (Nomad 2.x
// deletes them with the job). Caller holds mu.
func (s *Server) allocStubs(ns, jobID string) []*api.AllocationListStub {
	out := []*api.AllocationListStub{}
	for _, a := range s.allocs {
		if a.deleted || a.stub.Namespace != ns || a.stub.JobID != jobID {
			continue
		}
		c := a.stub
		c.TaskStates = map[string]*api.TaskState{}
		for k, v := range a.stub.TaskStates {
			ts := *v
			ts.Events = slices.Clone(v.Events)
			c.TaskStates[k] = &ts
		}
		out = append(out, &c)
	}
	sort.Slice(out, func(i, k int) bool { return out[i].CreateIndex < out[k].CreateIndex })
	return out
}

// evalsOf lists a job's evaluations. Caller holds mu.
func (s *Server) evalsOf(ns, jobID string) []*api.Evaluation {
	out := []*api.Evaluation{}
	for _, ev := range s.evals {
		if ev.Namespace == ns && ev.JobID == jobID {
			c := *ev
			out = append(out, &c)
		}
	}
	sort.Slice(out, func(i, k int) bool { return out[i].CreateIndex < out[k].CreateIndex })
	return out
}

// JobIDs returns the IDs of every job in a namespace, sorted.
func (s *Server) JobIDs(ns string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for k := range s.jobs {
		if k.ns == ns {
			ids = append(ids, k.id)
		}
	}
	sort.Strings(ids)
	return ids
}

// Job returns a copy of a job, or nil.
func (s *Server) Job(ns, id string) *api.Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec := s.jobs[jobKey{ns, id}]; rec != nil {
		return rec.publicJob()
	}
	return nil
}

// Allocations returns a job's allocations.
func (s *Server) Allocations(ns, jobID string) []*api.AllocationListStub {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.allocStubs(ns, jobID)
}

// RunningTasks returns how many task runners are still running.
func (s *Server) RunningTasks() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, a := range s.allocs {
		if a.running {
			n++
		}
	}
	return n
}

// WaitUntil re-checks cond after every write until it holds or ctx ends.
func (s *Server) WaitUntil(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
