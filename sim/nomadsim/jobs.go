// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadsim

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/hashicorp/nomad/api"
)

func (rec *jobRec) isParameterized() bool {
	return rec.job.ParameterizedJob != nil && !rec.job.Dispatched
}

// hasPeriodic is Nomad's Job.IsPeriodic (a periodic block, enabled or not),
// used for the list stub's Periodic field.
func (rec *jobRec) hasPeriodic() bool { return rec.job.Periodic != nil }

func (rec *jobRec) isPeriodic() bool {
	return rec.job.Periodic != nil && deref(rec.job.Periodic.Enabled)
}

func (rec *jobRec) publicJob() *api.Job { return copyJob(rec.job) }

func (rec *jobRec) summaryCopy() *api.JobSummary {
	c := *rec.summary
	c.Summary = maps.Clone(rec.summary.Summary) // never nil: every jobRec is created with a map
	if rec.summary.Children != nil {
		ch := *rec.summary.Children
		c.Children = &ch
	}
	return &c
}

// RegisterJob stores a job as PUT /v1/jobs would (namespace from the job,
// default "default"); tests use it to register the parameterized parent.
func (s *Server) RegisterJob(job *api.Job) error {
	ns := deref(job.Namespace)
	if ns == "" {
		ns = defaultNamespace
	}
	_, err := s.register(ns, job)
	return err
}

// canonicalJob is the job as Nomad stores it. The HTTP agent runs the api
// package's Job.Canonicalize (ApiJobToStructJob: Region "global",
// ParentID "", AllAtOnce false, Stable false, Version 0, the update,
// restart, reschedule, migrate, ephemeral disk, resources and log
// defaults of groups and tasks), then the server's admission hooks fill
// in the node pool ("default") and the datacenters (["*"]) and
// structs.ParameterizedJobConfig.Canonicalize the payload requirement
// ("optional"). structs.Job has no null scalars, so fields Canonicalize
// leaves nil that Nomad writes as "" are set here.
func canonicalJob(ns string, in *api.Job) (*api.Job, error) {
	job := copyJob(in)
	if job == nil || deref(job.ID) == "" {
		return nil, fmt.Errorf("job: missing ID")
	}
	job.Namespace = ptr(ns)
	// Empty values get the defaults too (Nomad would reject an empty name
	// or type and priority 0 in Job.Validate; the double is lenient here
	// and says so in its README).
	if deref(job.Name) == "" {
		job.Name = nil
	}
	if deref(job.Type) == "" {
		job.Type = nil
	}
	if deref(job.Priority) == 0 {
		job.Priority = nil
	}
	if job.Stop == nil {
		job.Stop = ptr(false)
	}
	job.Canonicalize()
	if deref(job.NodePool) == "" {
		job.NodePool = ptr("default")
	}
	if len(job.Datacenters) == 0 {
		job.Datacenters = []string{"*"}
	}
	if job.DispatchIdempotencyToken == nil {
		job.DispatchIdempotencyToken = ptr("")
	}
	if job.ParameterizedJob != nil {
		switch job.ParameterizedJob.Payload {
		case "":
			job.ParameterizedJob.Payload = "optional"
		case "optional", "required", "forbidden":
		default:
			return nil, fmt.Errorf("Unknown payload requirement: %q", job.ParameterizedJob.Payload) //nolint:staticcheck // Nomad's text
		}
	}
	if job.Update == nil {
		// structs.Job.Update is a value: zero for batch and system jobs
		job.Update = zeroUpdate()
	}
	for _, tg := range job.TaskGroups {
		if tg.Count == nil {
			tg.Count = ptr(1)
		}
		if tg.Consul == nil {
			// the agent's ApiTgToStructsTG always builds the group's
			// Consul block
			tg.Consul = &api.Consul{Namespace: "", Cluster: "", Partition: ""}
		}
		for _, t := range tg.Tasks {
			if r := t.Resources; r != nil {
				// ints in structs.Resources
				for _, f := range []**int{&r.DiskMB, &r.IOPS, &r.MemoryMaxMB} {
					if *f == nil {
						*f = ptr(0)
					}
				}
			}
		}
	}
	job.Dispatched = false
	return job, nil
}

// zeroUpdate is the update strategy of a job without one, as
// structs.UpdateStrategy's zero value reads back.
func zeroUpdate() *api.UpdateStrategy {
	return &api.UpdateStrategy{
		Stagger: ptr(time.Duration(0)), MaxParallel: ptr(0), HealthCheck: ptr(""), MinHealthyTime: ptr(time.Duration(0)),
		HealthyDeadline: ptr(time.Duration(0)), ProgressDeadline: ptr(time.Duration(0)), Canary: ptr(0),
		AutoRevert: ptr(false), AutoPromote: ptr(false),
	}
}

// specChanged is Nomad's Job.SpecChanged: the jobs differ in more than the
// fields the server sets.
func specChanged(old, submitted *api.Job) bool {
	c := copyJob(submitted)
	c.Status, c.StatusDescription, c.Stable, c.Version = old.Status, old.StatusDescription, old.Stable, old.Version
	c.CreateIndex, c.ModifyIndex, c.JobModifyIndex, c.SubmitTime = old.CreateIndex, old.ModifyIndex, old.JobModifyIndex, old.SubmitTime
	c.NomadTokenID = old.NomadTokenID
	a, errA := json.Marshal(old)
	b, errB := json.Marshal(c)
	return errA != nil || errB != nil || string(a) != string(b)
}

// registerResult is Nomad's JobRegisterResponse.
type registerResult struct {
	evalID                      string
	evalIndex, jobModify, index uint64
}

// register is Job.Register after authorization.
func (s *Server) register(ns string, in *api.Job) (registerResult, error) {
	job, err := canonicalJob(ns, in)
	if err != nil {
		return registerResult{}, err
	}
	job.SubmitTime = ptr(time.Now().UnixNano())
	evaluated := (job.ParameterizedJob == nil || job.Dispatched) && job.Periodic == nil

	s.mu.Lock()
	defer s.mu.Unlock()
	key := jobKey{ns, *job.ID}
	rec := s.jobs[key]
	if rec != nil && !specChanged(rec.job, job) {
		// Nothing to write; service and batch jobs still get an
		// evaluation (re-registering is how `nomad job eval` started).
		res := registerResult{jobModify: deref(rec.job.ModifyIndex), index: deref(rec.job.ModifyIndex)}
		if evaluated {
			idx := s.commit("evals")
			res.evalID, res.evalIndex, res.index = s.newEval(rec, "job-register", idx), idx, idx
			s.schedule(key, res.evalID)
			s.setStatus(rec, idx)
		}
		return res, nil
	}
	idx := s.commit("jobs")
	if rec == nil {
		rec = &jobRec{summary: &api.JobSummary{
			JobID: *job.ID, Namespace: ns, Summary: map[string]api.TaskGroupSummary{},
			Children: &api.JobChildrenSummary{}, CreateIndex: idx,
		}}
		s.jobs[key] = rec
		job.CreateIndex = ptr(idx)
		s.summaryChanged(rec, idx)
	} else {
		// upsertJobImpl: the version goes up unless the submitted one is
		// already higher.
		job.CreateIndex = rec.job.CreateIndex
		if deref(job.Version) <= deref(rec.job.Version) {
			job.Version = ptr(deref(rec.job.Version) + 1)
		}
		job.Status = rec.job.Status
	}
	job.ModifyIndex, job.JobModifyIndex = ptr(idx), ptr(idx)
	rec.job = job
	// updateSummaryWithJob: existing counts are kept, new groups added.
	added := false
	for _, tg := range job.TaskGroups {
		if _, ok := rec.summary.Summary[deref(tg.Name)]; !ok {
			rec.summary.Summary[deref(tg.Name)] = api.TaskGroupSummary{}
			added = true
		}
	}
	if added {
		s.summaryChanged(rec, idx)
	}
	res := registerResult{jobModify: idx, index: idx}
	if evaluated && !deref(job.Stop) {
		res.evalID, res.evalIndex = s.newEval(rec, "job-register", idx), idx
		s.schedule(key, res.evalID)
	}
	s.setStatus(rec, idx)
	return res, nil
}

// summaryChanged stamps a job summary write. Caller holds mu.
func (s *Server) summaryChanged(rec *jobRec, idx uint64) {
	rec.summary.ModifyIndex = idx
	s.tables["job_summary"] = idx
}

// newEval records a pending evaluation for rec. Caller holds mu.
func (s *Server) newEval(rec *jobRec, trigger string, idx uint64) string {
	now := time.Now().UnixNano()
	ev := &api.Evaluation{
		ID: newUUID(), Namespace: deref(rec.job.Namespace), Priority: deref(rec.job.Priority),
		Type: deref(rec.job.Type), TriggeredBy: trigger, JobID: *rec.job.ID, JobModifyIndex: deref(rec.job.JobModifyIndex),
		Status: evalStatusPending, CreateIndex: idx, ModifyIndex: idx, CreateTime: now, ModifyTime: now,
	}
	s.evals[ev.ID] = ev
	rec.evals = append(rec.evals, ev.ID)
	s.tables["evals"] = idx
	return ev.ID
}

type dispatchResult struct {
	jobID, evalID string
	index         uint64
}

// dispatch is Nomad's Job.Dispatch after authorization: the checks in
// Nomad's order with Nomad's texts (all answered with status 500).
func (s *Server) dispatch(ns string, req *api.JobDispatchRequest) (*dispatchResult, error) {
	if req.JobID == "" {
		return nil, fmt.Errorf("missing parameterized job ID")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	parent := s.jobs[jobKey{ns, req.JobID}]
	if parent == nil {
		return nil, fmt.Errorf("parameterized job not found")
	}
	if !parent.isParameterized() {
		return nil, fmt.Errorf("Specified job %q is not a parameterized job", req.JobID) //nolint:staticcheck // Nomad's text
	}
	if deref(parent.job.Stop) {
		return nil, fmt.Errorf("Specified job %q is stopped", req.JobID) //nolint:staticcheck // Nomad's text
	}
	if req.Priority == 0 {
		req.Priority = deref(parent.job.Priority)
	}
	if err := validateDispatch(req, parent.job.ParameterizedJob); err != nil {
		return nil, err
	}

	child := copyJob(parent.job)
	now := time.Now()
	child.ID = ptr(dispatchedID(*parent.job.ID, req.IdPrefixTemplate, now))
	child.ParentID = parent.job.ID
	child.Name = child.ID
	child.SubmitTime = ptr(now.UnixNano())
	child.Dispatched = true
	child.Status, child.StatusDescription = ptr(""), ptr("")
	child.Priority = ptr(req.Priority)
	// Version and Stable stay the parent's (Nomad copies the parent and
	// upsertJobImpl keeps the version of a new job).
	for k, v := range req.Meta {
		if child.Meta == nil {
			child.Meta = map[string]string{}
		}
		child.Meta[k] = v
	}
	child.Payload = slices.Clone(req.Payload)

	idx := s.commit("jobs", "job_summary")
	child.CreateIndex, child.ModifyIndex, child.JobModifyIndex = ptr(idx), ptr(idx), ptr(idx)
	rec := &jobRec{job: child, summary: &api.JobSummary{
		JobID: *child.ID, Namespace: ns, CreateIndex: idx, ModifyIndex: idx,
		Summary: map[string]api.TaskGroupSummary{}, Children: &api.JobChildrenSummary{},
	}}
	for _, tg := range child.TaskGroups {
		rec.summary.Summary[deref(tg.Name)] = api.TaskGroupSummary{}
	}
	key := jobKey{ns, *child.ID}
	s.jobs[key] = rec
	res := &dispatchResult{jobID: *child.ID, index: idx}
	if !rec.isPeriodic() {
		res.evalID = s.newEval(rec, "job-register", idx)
		s.schedule(key, res.evalID)
	}
	s.setStatus(rec, idx)
	return res, nil
}

// validateDispatch is Nomad's validateDispatchRequest (same order, same
// texts). Meta keys in error lists are sorted here; Nomad's order comes
// from a map and varies.
func validateDispatch(req *api.JobDispatchRequest, pj *api.ParameterizedJobConfig) error {
	has := len(req.Payload) != 0
	if pj.Payload == "required" && !has {
		return fmt.Errorf("Payload is not provided but required by parameterized job") //nolint:staticcheck // Nomad's text
	} else if pj.Payload == "forbidden" && has {
		return fmt.Errorf("Payload provided but forbidden by parameterized job") //nolint:staticcheck // Nomad's text
	}
	if l := len(req.Payload); l > DispatchPayloadSizeLimit {
		return fmt.Errorf("Payload exceeds maximum size; %d > %d", l, DispatchPayloadSizeLimit) //nolint:staticcheck // Nomad's text
	}
	var unpermitted, missing []string
	for k := range req.Meta {
		if !slices.Contains(pj.MetaRequired, k) && !slices.Contains(pj.MetaOptional, k) {
			unpermitted = append(unpermitted, k)
		}
	}
	if len(unpermitted) != 0 {
		sort.Strings(unpermitted)
		return fmt.Errorf("Dispatch request included unpermitted metadata keys: %v", unpermitted) //nolint:staticcheck // Nomad's text
	}
	for _, k := range pj.MetaRequired {
		if _, ok := req.Meta[k]; !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) != 0 {
		sort.Strings(missing)
		return fmt.Errorf("Dispatch did not provide required meta keys: %v", missing) //nolint:staticcheck // Nomad's text
	}
	if req.Priority < 1 || req.Priority > jobMaxPriority {
		return fmt.Errorf("dispatch job priority must be between [%d, %d]", 1, jobMaxPriority)
	}
	return nil
}

// setStatus recomputes a job's status as Nomad's getJobStatus does and,
// when it changed, the parent's children summary. Caller holds mu.
func (s *Server) setStatus(rec *jobRec, idx uint64) {
	status := s.jobStatus(rec)
	old := deref(rec.job.Status)
	if status == old {
		return
	}
	rec.job.Status = ptr(status)
	rec.job.ModifyIndex = ptr(idx)
	s.tables["jobs"] = idx
	s.updateChildren(rec, old, status, idx)
}

// updateChildren moves a child between its parent's Pending/Running/Dead
// counts (a purged child moves to Dead, as in DeleteJobTxn).
func (s *Server) updateChildren(rec *jobRec, from, to string, idx uint64) {
	if deref(rec.job.ParentID) == "" {
		return
	}
	parent := s.jobs[jobKey{deref(rec.job.Namespace), *rec.job.ParentID}]
	if parent == nil {
		return
	}
	if parent.summary.Children == nil {
		parent.summary.Children = &api.JobChildrenSummary{}
	}
	bucket := func(st string) *int64 {
		switch st {
		case jobStatusPending:
			return &parent.summary.Children.Pending
		case jobStatusRunning:
			return &parent.summary.Children.Running
		case jobStatusDead:
			return &parent.summary.Children.Dead
		}
		return nil
	}
	if b := bucket(from); b != nil {
		*b--
	}
	if b := bucket(to); b != nil {
		*b++
	}
	parent.summary.ModifyIndex = idx
	s.tables["job_summary"] = idx
}

func (s *Server) jobStatus(rec *jobRec) string {
	if deref(rec.job.Type) == "system" || rec.isParameterized() || rec.isPeriodic() {
		if deref(rec.job.Stop) {
			return jobStatusDead
		}
		return jobStatusRunning
	}
	for _, id := range rec.allocs {
		if s.allocs[id].nonTerminal() {
			return jobStatusRunning
		}
	}
	hasEval := false
	for _, id := range rec.evals {
		switch s.evals[id].Status {
		case evalStatusPending, evalStatusBlocked:
			return jobStatusPending
		}
		hasEval = true
	}
	if hasEval || deref(rec.job.Stop) {
		return jobStatusDead
	}
	return jobStatusPending
}

// deregister is Job.Deregister: a missing job is not an error (index 0).
// Caller does not hold mu.
func (s *Server) deregister(ns, id string, purge bool) (string, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := jobKey{ns, id}
	rec := s.jobs[key]
	if rec == nil {
		return "", 0
	}
	idx := s.commit("jobs", "job_summary", "evals", "allocs")
	evalID := ""
	if !rec.isParameterized() && !rec.isPeriodic() {
		evalID = s.newEval(rec, "job-deregister", idx)
		ev := s.evals[evalID]
		// Nomad gives deregister evaluations the service type whatever
		// the job's; the scheduler completes it at once here.
		ev.Type, ev.Status = "service", evalStatusComplete
	}
	for _, eid := range rec.evals {
		if ev := s.evals[eid]; ev.ID != evalID && (ev.Status == evalStatusBlocked || ev.Status == evalStatusPending) {
			ev.Status, ev.ModifyIndex = evalStatusCanceled, idx
		}
	}
	for _, aid := range rec.allocs {
		a := s.allocs[aid]
		if purge {
			// DeleteJobTxn deletes every allocation of the job in this
			// write; the client then stops what still runs.
			a.deleted = true
			if a.running {
				a.cancel()
			}
			continue
		}
		// The scheduler stops only non-terminal allocations
		// (AllocReconciler.handleStop → filterByTerminal): finished ones
		// keep DesiredStatus "run".
		if !a.nonTerminal() {
			continue
		}
		a.stub.DesiredStatus, a.stub.DesiredDescription = allocDesiredStop, "alloc not needed due to job update"
		a.stub.ModifyIndex = idx
		if a.running {
			if ts := a.stub.TaskStates[a.task]; ts != nil && ts.State == "running" {
				ts.Events = append(ts.Events, killingEvent(a.killTimeout, time.Now()))
			}
			a.cancel()
		} else {
			s.setClientStatus(a, allocClientComplete, "All tasks have completed")
		}
	}
	if purge {
		s.updateChildren(rec, deref(rec.job.Status), jobStatusDead, idx)
		delete(s.jobs, key)
		return evalID, idx
	}
	// handleJobDeregister re-inserts a stopped copy: a new version.
	rec.job.Stop = ptr(true)
	rec.job.Version = ptr(deref(rec.job.Version) + 1)
	rec.job.SubmitTime = ptr(time.Now().UnixNano())
	rec.job.ModifyIndex, rec.job.JobModifyIndex = ptr(idx), ptr(idx)
	s.setStatus(rec, idx)
	return evalID, idx
}
