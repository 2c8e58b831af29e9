// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package actionssim

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// This file is the Actions service admin API (reference 2.2, rows 1-9 and
// 13-17) under {svc} = /_services/{tenant}/.

const svcPrefix = "/_services/{tenant}/_apis/"

func (s *Simulator) routes() {
	h := s.handle
	// GitHub REST, GHES layout (the client uses /api/v3 for any host that is
	// not github.com).
	h("POST /api/v3/app/installations/{id}/access_tokens", EndpointAccessToken, s.handleAccessToken)
	h("POST /api/v3/orgs/{org}"+ghRegistrationSuffix, EndpointRegistrationToken, s.handleRegistrationToken)
	h("POST /api/v3/repos/{owner}/{repo}"+ghRegistrationSuffix, EndpointRegistrationToken, s.handleRegistrationToken)
	h("POST /api/v3/enterprises/{ent}"+ghRegistrationSuffix, EndpointRegistrationToken, s.handleRegistrationToken)
	h("POST /api/v3/actions/runner-registration", EndpointRunnerRegistration, s.handleRunnerRegistration)

	// Actions service.
	h("GET "+svcPrefix+"runtime/runnergroups/{$}", EndpointRunnerGroups, s.admin(s.handleRunnerGroups))
	h("GET "+svcPrefix+"runtime/runnergroups", EndpointRunnerGroups, s.admin(s.handleRunnerGroups))
	h("GET "+svcPrefix+"runtime/runnerscalesets", EndpointScaleSets, s.admin(s.handleListScaleSets))
	h("POST "+svcPrefix+"runtime/runnerscalesets", EndpointScaleSets, s.admin(s.handleCreateScaleSet))
	h("GET "+svcPrefix+"runtime/runnerscalesets/{id}", EndpointScaleSets, s.admin(s.handleGetScaleSet))
	h("PATCH "+svcPrefix+"runtime/runnerscalesets/{id}", EndpointScaleSets, s.admin(s.handleUpdateScaleSet))
	h("DELETE "+svcPrefix+"runtime/runnerscalesets/{id}", EndpointScaleSets, s.admin(s.handleDeleteScaleSet))
	h("POST "+svcPrefix+"runtime/runnerscalesets/{id}/sessions", EndpointSessions, s.admin(s.handleCreateSession))
	h("PATCH "+svcPrefix+"runtime/runnerscalesets/{id}/sessions/{sid}", EndpointSessions, s.admin(s.handleRefreshSession))
	h("DELETE "+svcPrefix+"runtime/runnerscalesets/{id}/sessions/{sid}", EndpointSessions, s.admin(s.handleDeleteSession))
	h("POST "+svcPrefix+"runtime/runnerscalesets/{id}/acquirejobs", EndpointAcquireJobs, s.handleAcquireJobs)
	h("GET "+svcPrefix+"runtime/runnerscalesets/{id}/acquirablejobs", EndpointAcquirableJobs, s.admin(s.handleAcquirableJobs))
	h("POST "+svcPrefix+"runtime/runnerscalesets/{id}/generatejitconfig", EndpointJITConfig, s.admin(s.handleGenerateJIT))
	h("GET "+svcPrefix+"distributedtask/pools/{pool}/agents/{rid}", EndpointRunners, s.admin(s.handleGetRunner))
	h("GET "+svcPrefix+"distributedtask/pools/{pool}/agents", EndpointRunners, s.admin(s.handleListRunners))
	h("DELETE "+svcPrefix+"distributedtask/pools/{pool}/agents/{rid}", EndpointRunners, s.admin(s.handleRemoveRunner))

	// Message queue (broker).
	h("GET /_broker/message", EndpointGetMessage, s.handleGetMessage)
	h("DELETE /_broker/message/{mid}", EndpointDeleteMessage, s.handleDeleteMessage)

	// Runner side (simulator-specific, see runnerapi.go).
	h("POST /_sim/runner/redeem", EndpointRunnerAPI, s.handleRunnerRedeem)
	h("POST /_sim/runner/online", EndpointRunnerAPI, s.runnerAuth(s.handleRunnerOnline))
	h("GET /_sim/runner/job", EndpointRunnerAPI, s.runnerAuth(s.handleRunnerJob))
	h("POST /_sim/runner/heartbeat", EndpointRunnerAPI, s.runnerAuth(s.handleRunnerHeartbeat))
	h("POST /_sim/runner/complete", EndpointRunnerAPI, s.runnerAuth(s.handleRunnerComplete))
	h("POST /_sim/runner/offline", EndpointRunnerAPI, s.runnerAuth(s.handleRunnerOffline))
}

// handle registers a handler that counts requests and applies faults.
func (s *Simulator) handle(pattern string, e Endpoint, fn http.HandlerFunc) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.counts[e]++
		s.mu.Unlock()
		if s.applyFault(w, r, e) {
			return
		}
		fn(w, r)
	})
}

type adminHandler func(w http.ResponseWriter, r *http.Request, t *tenant)

// admin wraps an Actions-service handler with api-version and admin-token
// checks.
func (s *Simulator) admin(fn adminHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t, ok := s.adminAuth(w, r)
		if !ok {
			return
		}
		fn(w, r, t)
	}
}

func (s *Simulator) adminAuth(w http.ResponseWriter, r *http.Request) (*tenant, bool) {
	if r.URL.Query().Get("api-version") == "" {
		s.writeException(w, http.StatusBadRequest, typeBadRequest, "The api-version query parameter is required.")
		return nil, false
	}
	tok, _ := bearer(r, "Bearer")
	tid, _ := strconv.Atoi(r.PathValue("tenant"))
	s.mu.Lock()
	claims, err := s.checkTokenLocked(tok, "admin", s.adminRevoked, time.Now())
	t := s.tenantByIDLocked(tid)
	s.mu.Unlock()
	if err == nil && (t == nil || claims.Tenant != tid) {
		err = errTokenSignature
	}
	if err != nil {
		s.writeException(w, http.StatusUnauthorized, typeUnauthorized, unauthorizedMessage(err))
		return nil, false
	}
	return t, true
}

func unauthorizedMessage(err error) string {
	if errors.Is(err, errTokenExpired) {
		return "The access token has expired."
	}
	return "The user is not authorized to access this resource."
}

func (s *Simulator) wireScaleSetLocked(ss *scaleSet, base string) wireScaleSet {
	st := s.statsLocked(ss)
	w := wireScaleSet{
		ID: ss.id, Name: ss.name, RunnerGroupID: ss.groupID, Labels: append([]Label(nil), ss.labels...),
		RunnerSetting: ss.setting, CreatedOn: ss.createdOn, Statistics: &st,
		RunnerJitConfigURL: fmt.Sprintf("%s/_services/%d/_apis/runtime/runnerscalesets/%d/generatejitconfig", base, ss.tenant.id, ss.id),
	}
	for _, g := range s.groups {
		if g.ID == ss.groupID {
			w.RunnerGroupName = g.Name
		}
	}
	return w
}

// scaleSetFromPath finds the scale set named by {id} in tenant t. It writes
// a 404 and returns nil when there is none. Callers hold s.mu.
func (s *Simulator) scaleSetFromPathLocked(w http.ResponseWriter, r *http.Request, t *tenant) *scaleSet {
	id, err := strconv.Atoi(r.PathValue("id"))
	ss, ok := s.scaleSets[id]
	if err != nil || !ok || ss.tenant != t {
		s.writeException(w, http.StatusNotFound, typeScaleSetNotFound,
			fmt.Sprintf("Runner scale set %s not found.", r.PathValue("id")))
		return nil
	}
	return ss
}

func (s *Simulator) handleRunnerGroups(w http.ResponseWriter, r *http.Request, _ *tenant) {
	name := r.URL.Query().Get("groupName")
	s.mu.Lock()
	out := wireList[wireRunnerGroup]{Value: []wireRunnerGroup{}}
	for _, g := range s.groups {
		if name == "" || strings.EqualFold(g.Name, name) {
			g.Size = s.groupSizeLocked(g.ID)
			out.Value = append(out.Value, g)
		}
	}
	s.mu.Unlock()
	out.Count = len(out.Value)
	s.writeServiceJSON(w, http.StatusOK, out)
}

func (s *Simulator) groupSizeLocked(groupID int) int {
	n := 0
	for _, r := range s.runners {
		if ss, ok := s.scaleSets[r.ScaleSetID]; ok && ss.groupID == groupID {
			n++
		}
	}
	return n
}

func (s *Simulator) groupExistsLocked(id int) bool {
	for _, g := range s.groups {
		if g.ID == id {
			return true
		}
	}
	return false
}

func (s *Simulator) handleListScaleSets(w http.ResponseWriter, r *http.Request, t *tenant) {
	q := r.URL.Query()
	name := q.Get("name")
	gid, _ := strconv.Atoi(q.Get("runnerGroupId"))
	s.mu.Lock()
	out := wireList[wireScaleSet]{Value: []wireScaleSet{}}
	for _, ss := range s.sortedScaleSetsLocked() {
		if ss.tenant != t || (gid != 0 && ss.groupID != gid) || (name != "" && !strings.EqualFold(ss.name, name)) {
			continue
		}
		out.Value = append(out.Value, s.wireScaleSetLocked(ss, baseURL(r)))
	}
	s.mu.Unlock()
	out.Count = len(out.Value)
	s.writeServiceJSON(w, http.StatusOK, out)
}

func (s *Simulator) handleGetScaleSet(w http.ResponseWriter, r *http.Request, t *tenant) {
	s.mu.Lock()
	ss := s.scaleSetFromPathLocked(w, r, t)
	if ss == nil {
		s.mu.Unlock()
		return
	}
	out := s.wireScaleSetLocked(ss, baseURL(r))
	s.mu.Unlock()
	s.writeServiceJSON(w, http.StatusOK, out)
}

// normaliseLabels applies the service-side defaults: an empty type becomes
// "System".
func normaliseLabels(in []Label) []Label {
	out := make([]Label, 0, len(in))
	for _, l := range in {
		if l.Type == "" {
			l.Type = "System"
		}
		out = append(out, l)
	}
	return out
}

func (s *Simulator) nameTakenLocked(t *tenant, groupID int, name string, except int) bool {
	for _, ss := range s.scaleSets {
		if ss.tenant == t && ss.groupID == groupID && ss.id != except && strings.EqualFold(ss.name, name) {
			return true
		}
	}
	return false
}

func (s *Simulator) handleCreateScaleSet(w http.ResponseWriter, r *http.Request, t *tenant) {
	var in wireScaleSet
	if err := decodeJSON(r, &in); err != nil {
		s.writeException(w, http.StatusBadRequest, typeBadRequest, err.Error())
		return
	}
	if strings.TrimSpace(in.Name) == "" {
		s.writeException(w, http.StatusBadRequest, typeBadRequest, "The runner scale set name is required.")
		return
	}
	if in.RunnerGroupID == 0 {
		in.RunnerGroupID = 1
	}
	if len(in.Labels) == 0 {
		in.Labels = []Label{{Type: "System", Name: in.Name}}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.groupExistsLocked(in.RunnerGroupID) {
		s.writeException(w, http.StatusBadRequest, typeBadRequest, fmt.Sprintf("Runner group %d does not exist.", in.RunnerGroupID))
		return
	}
	if s.nameTakenLocked(t, in.RunnerGroupID, in.Name, 0) {
		s.writeException(w, http.StatusConflict, typeScaleSetExists,
			fmt.Sprintf("A runner scale set with name %s already exists in runner group %d.", in.Name, in.RunnerGroupID))
		return
	}
	ss := s.createScaleSetLocked(t, in.Name, in.RunnerGroupID, in.Labels, in.RunnerSetting)
	s.writeServiceJSON(w, http.StatusOK, s.wireScaleSetLocked(ss, baseURL(r)))
}

// createScaleSetLocked adds a scale set and offers it the queued jobs. The
// caller has checked the group exists and the name is free. Callers hold
// s.mu.
func (s *Simulator) createScaleSetLocked(t *tenant, name string, groupID int, labels []Label, setting wireRunnerSetting) *scaleSet {
	ss := &scaleSet{
		tenant: t, id: s.nextScaleSet, name: name, groupID: groupID,
		labels: normaliseLabels(labels), setting: setting,
		createdOn: time.Now().UTC().Truncate(time.Millisecond), maxCapacity: -1,
	}
	s.nextScaleSet++
	s.scaleSets[ss.id] = ss
	s.log.Info("created scale set", "scale_set_id", ss.id, "scale_set_name", ss.name)
	s.dispatchLocked(time.Now())
	s.changedLocked()
	return ss
}

func (s *Simulator) handleUpdateScaleSet(w http.ResponseWriter, r *http.Request, t *tenant) {
	var in wireScaleSet
	if err := decodeJSON(r, &in); err != nil {
		s.writeException(w, http.StatusBadRequest, typeBadRequest, err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.scaleSetFromPathLocked(w, r, t)
	if ss == nil {
		return
	}
	name, group := ss.name, ss.groupID
	if in.Name != "" {
		name = in.Name
	}
	if in.RunnerGroupID != 0 {
		if !s.groupExistsLocked(in.RunnerGroupID) {
			s.writeException(w, http.StatusBadRequest, typeBadRequest, fmt.Sprintf("Runner group %d does not exist.", in.RunnerGroupID))
			return
		}
		group = in.RunnerGroupID
	}
	if s.nameTakenLocked(t, group, name, ss.id) {
		s.writeException(w, http.StatusConflict, typeScaleSetExists,
			fmt.Sprintf("A runner scale set with name %s already exists in runner group %d.", name, group))
		return
	}
	ss.name, ss.groupID = name, group
	if len(in.Labels) > 0 {
		ss.labels = normaliseLabels(in.Labels)
	}
	ss.setting = in.RunnerSetting
	s.dispatchLocked(time.Now())
	s.changedLocked()
	s.writeServiceJSON(w, http.StatusOK, s.wireScaleSetLocked(ss, baseURL(r)))
}

func (s *Simulator) handleDeleteScaleSet(w http.ResponseWriter, r *http.Request, t *tenant) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.scaleSetFromPathLocked(w, r, t)
	if ss == nil {
		return
	}
	s.deleteScaleSetLocked(ss, time.Now())
	w.WriteHeader(http.StatusNoContent)
}

// deleteScaleSetLocked removes a scale set with its session and runners.
// Its unfinished jobs go back to the queue (running ones fail). The cascade
// is an assumption (reference 6.3.21).
func (s *Simulator) deleteScaleSetLocked(ss *scaleSet, now time.Time) {
	for _, rn := range s.runners {
		if rn.ScaleSetID == ss.id {
			s.deleteRunnerLocked(rn, now)
		}
	}
	for _, j := range s.jobs {
		if j.ScaleSetID != ss.id {
			continue
		}
		switch j.State {
		case JobRunning:
			s.finishJobLocked(j, ResultFailed, now)
		case JobAvailable, JobAcquired, JobAssigned:
			j.State, j.ScaleSetID = JobQueued, 0
		}
	}
	ss.session = nil
	delete(s.scaleSets, ss.id)
	s.log.Info("deleted scale set", "scale_set_id", ss.id)
	s.dispatchLocked(now)
	s.changedLocked()
}

func (s *Simulator) handleAcquirableJobs(w http.ResponseWriter, r *http.Request, t *tenant) {
	s.mu.Lock()
	ss := s.scaleSetFromPathLocked(w, r, t)
	if ss == nil {
		s.mu.Unlock()
		return
	}
	type acquirable struct {
		AcquireJobURL   string   `json:"acquireJobUrl"`
		MessageType     string   `json:"messageType"`
		RunnerRequestID int64    `json:"runnerRequestId"`
		RepositoryName  string   `json:"repositoryName"`
		OwnerName       string   `json:"ownerName"`
		JobWorkflowRef  string   `json:"jobWorkflowRef"`
		EventName       string   `json:"eventName"`
		RequestLabels   []string `json:"requestLabels"`
	}
	out := wireList[acquirable]{Value: []acquirable{}}
	for _, j := range s.jobs {
		if j.ScaleSetID == ss.id && j.State == JobAvailable {
			out.Value = append(out.Value, acquirable{
				AcquireJobURL: s.acquireURL(r, ss), MessageType: "JobAvailable", RunnerRequestID: j.RunnerRequestID,
				RepositoryName: j.Repository, OwnerName: j.Owner, JobWorkflowRef: j.WorkflowRef,
				EventName: j.EventName, RequestLabels: j.Labels,
			})
		}
	}
	s.mu.Unlock()
	out.Count = len(out.Value)
	if out.Count == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	s.writeServiceJSON(w, http.StatusOK, out)
}

func (s *Simulator) acquireURL(r *http.Request, ss *scaleSet) string {
	return fmt.Sprintf("%s/_services/%d/_apis/runtime/runnerscalesets/%d/acquirejobs", baseURL(r), ss.tenant.id, ss.id)
}
