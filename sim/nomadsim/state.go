// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadsim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/nomad/api"
)

// Nomad status strings (nomad/structs).
const (
	jobStatusPending = "pending"
	jobStatusRunning = "running"
	jobStatusDead    = "dead"

	allocClientPending  = "pending"
	allocClientRunning  = "running"
	allocClientComplete = "complete"
	allocClientFailed   = "failed"
	allocDesiredRun     = "run"
	allocDesiredStop    = "stop"

	evalStatusPending  = "pending"
	evalStatusBlocked  = "blocked"
	evalStatusComplete = "complete"
	evalStatusCanceled = "canceled"

	dispatchLaunchSuffix = "/dispatch-"
)

type jobKey struct{ ns, id string }

// jobRec is one job in the state store. job holds Nomad's fields; its
// Payload is kept decoded (Nomad keeps it snappy-compressed and decodes it
// on read).
type jobRec struct {
	job     *api.Job
	summary *api.JobSummary
	allocs  []string
	evals   []string
}

// allocRec is one allocation and the runner behind it.
type allocRec struct {
	stub api.AllocationListStub
	task string
	// killTimeout is the task's kill_timeout (for the Killing event).
	killTimeout time.Duration
	cancel      context.CancelFunc // nil until a runner starts
	running     bool               // a runner goroutine owns the terminal transition
	// deleted: the job was purged. Nomad 2.x deletes a purged job's
	// allocations in the same write (DeleteJobTxn → deleteAllocsForJobTxn),
	// so they are no longer listed; a runner still stopping is counted by
	// RunningTasks until it returns.
	deleted bool
}

// nonTerminal is Nomad's !Allocation.TerminalStatus(): desired run and a
// client status that is not terminal.
func (a *allocRec) nonTerminal() bool {
	return a.stub.DesiredStatus == allocDesiredRun &&
		(a.stub.ClientStatus == allocClientPending || a.stub.ClientStatus == allocClientRunning)
}

// jobListStub is Nomad's structs.JobListStub as JSON.
type jobListStub struct {
	ID                string
	ParentID          string
	Name              string
	Namespace         string `json:",omitempty"`
	Datacenters       []string
	NodePool          string
	Multiregion       *api.Multiregion
	Type              string
	Priority          int
	Periodic          bool
	ParameterizedJob  bool
	Stop              bool
	Status            string
	StatusDescription string
	JobSummary        *api.JobSummary
	CreateIndex       uint64
	ModifyIndex       uint64
	JobModifyIndex    uint64
	SubmitTime        int64
	Meta              map[string]string `json:",omitempty"`
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// dispatchedID is Nomad's structs.DispatchedID:
// <parent>/dispatch-[<prefix>-]<unix seconds>-<first 8 chars of a UUID>.
func dispatchedID(parent, prefix string, t time.Time) string {
	u := newUUID()[:8]
	if prefix != "" {
		return fmt.Sprintf("%s%s%s-%d-%s", parent, dispatchLaunchSuffix, prefix, t.Unix(), u)
	}
	return fmt.Sprintf("%s%s%d-%s", parent, dispatchLaunchSuffix, t.Unix(), u)
}

func copyJob(j *api.Job) *api.Job {
	b, err := json.Marshal(j)
	if err != nil {
		return nil
	}
	var out api.Job
	if err := json.Unmarshal(b, &out); err != nil {
		return nil
	}
	return &out
}

func ptr[T any](v T) *T { return &v }

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// commit takes the next index, marks tables written at it and wakes
// blocking queries. Caller holds mu.
func (s *Server) commit(tables ...string) uint64 {
	s.index++
	for _, t := range tables {
		s.tables[t] = s.index
	}
	s.poke()
	return s.index
}

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

// event is a task event as the client writes it: DisplayMessage set,
// Message empty (most events carry their text in typed fields).
func event(typ, display string, t time.Time) *api.TaskEvent {
	return &api.TaskEvent{Type: typ, Time: t.UnixNano(), DisplayMessage: display, Details: map[string]string{}}
}

// setupEvent is the task directory hook's event, which sets Message.
func setupEvent(t time.Time) *api.TaskEvent {
	ev := event("Task Setup", "Building Task Directory", t)
	ev.Message = "Building Task Directory"
	ev.Details["message"] = ev.Message
	return ev
}

// killingEvent is TaskKilling with the task's kill timeout.
func killingEvent(timeout time.Duration, t time.Time) *api.TaskEvent {
	ev := event("Killing", fmt.Sprintf("Sent interrupt. Waiting %v before force killing", timeout), t)
	ev.KillTimeout = timeout
	ev.Details["kill_timeout"] = timeout.String()
	return ev
}

// terminatedEvent is TaskTerminated with the exit code (the TaskRunner
// reports no signal: signal 0).
func terminatedEvent(code int, t time.Time) *api.TaskEvent {
	ev := event("Terminated", fmt.Sprintf("Exit Code: %d", code), t)
	ev.ExitCode = code
	ev.Details["exit_code"] = fmt.Sprint(code)
	ev.Details["signal"] = "0"
	ev.Details["oom_killed"] = "false"
	return ev
}

// notRestartingEvent is TaskNotRestarting, which fails the task.
func notRestartingEvent(reason string, t time.Time) *api.TaskEvent {
	ev := event("Not Restarting", reason, t)
	ev.RestartReason, ev.FailsTask = reason, true
	ev.Details["restart_reason"] = reason
	ev.Details["fails_task"] = "true"
	return ev
}

// driverFailureEvent is TaskDriverFailure.
func driverFailureEvent(err error, t time.Time) *api.TaskEvent {
	ev := event("Driver Failure", err.Error(), t)
	ev.DriverError = err.Error()
	ev.Details["driver_error"] = err.Error()
	return ev
}

// runTask runs the task and moves the allocation through Nomad's client
// statuses: pending → running → complete | failed.
func (s *Server) runTask(ctx context.Context, allocID string, t Task) {
	var once sync.Once
	started := func() { once.Do(func() { s.taskStarted(allocID) }) }
	code, err := s.runner.RunTask(ctx, t, started)
	s.taskFinished(allocID, code, err)
}

func (s *Server) taskStarted(allocID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.allocs[allocID]
	if a == nil || a.deleted || a.stub.ClientStatus != allocClientPending {
		return
	}
	now := time.Now()
	ts := a.stub.TaskStates[a.task]
	ts.State, ts.StartedAt = "running", now
	ts.Events = append(ts.Events, event("Started", "Task started by client", now))
	s.setClientStatus(a, allocClientRunning, "Tasks are running")
}

func (s *Server) taskFinished(allocID string, code int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.allocs[allocID]
	if a == nil {
		return
	}
	a.running = false
	if a.deleted {
		// purged: nothing of it is visible any more, but WaitUntil
		// callers watch RunningTasks
		s.poke()
		return
	}
	now := time.Now()
	ts := a.stub.TaskStates[a.task]
	ts.State, ts.FinishedAt = "dead", now
	switch {
	case a.stub.DesiredStatus == allocDesiredStop:
		// Killing was recorded when the stop began (deregister)
		if err == nil {
			ts.Events = append(ts.Events, terminatedEvent(code, now))
		}
		ts.Events = append(ts.Events, event("Killed", "Task successfully killed", now))
		s.setClientStatus(a, allocClientComplete, "All tasks have completed")
	case err != nil:
		ts.Failed = true
		// the restart tracker: an unrecoverable start error is final; a
		// recoverable one meets restart { attempts = 0 }
		reason := "Error was unrecoverable"
		if IsRecoverable(err) {
			reason = "Policy allows no restarts"
		}
		ts.Events = append(ts.Events, driverFailureEvent(err, now), notRestartingEvent(reason, now))
		s.setClientStatus(a, allocClientFailed, "Failed tasks")
	default:
		ts.Events = append(ts.Events, terminatedEvent(code, now))
		if code == 0 {
			// a batch task that succeeded is not restarted and gets no
			// further event (TaskTerminated from the restart tracker)
			s.setClientStatus(a, allocClientComplete, "All tasks have completed")
		} else {
			ts.Failed = true
			ts.Events = append(ts.Events, notRestartingEvent("Policy allows no restarts", now))
			s.setClientStatus(a, allocClientFailed, "Failed tasks")
		}
	}
}

// setClientStatus changes an allocation's client status, its job's summary
// and status in one write. Caller holds mu.
func (s *Server) setClientStatus(a *allocRec, status, desc string) {
	idx := s.commit("allocs", "job_summary")
	old := a.stub.ClientStatus
	a.stub.ClientStatus, a.stub.ClientDescription = status, desc
	a.stub.ModifyIndex, a.stub.ModifyTime = idx, time.Now().UnixNano()
	rec := s.jobs[jobKey{a.stub.Namespace, a.stub.JobID}]
	if rec == nil {
		return // purged: the allocation outlives its job until GC
	}
	sum := rec.summary.Summary[a.stub.TaskGroup]
	for st, delta := range map[string]int{old: -1, status: 1} {
		switch st {
		case allocClientPending:
			sum.Starting += delta
		case allocClientRunning:
			sum.Running += delta
		case allocClientComplete:
			sum.Complete += delta
		case allocClientFailed:
			sum.Failed += delta
		}
	}
	rec.summary.Summary[a.stub.TaskGroup] = sum
	rec.summary.ModifyIndex = idx
	s.setStatus(rec, idx)
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
