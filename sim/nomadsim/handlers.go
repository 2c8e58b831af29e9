// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/hashicorp/nomad/api"
)

// jobsRequest serves /v1/jobs: GET lists, PUT/POST registers.
func (s *Server) jobsRequest(w http.ResponseWriter, r *http.Request) (any, error) {
	switch r.Method {
	case http.MethodGet:
		s.count(r, "/v1/jobs")
		return s.jobList(w, r)
	case http.MethodPut, http.MethodPost:
		s.count(r, "/v1/jobs")
		return s.jobRegister(w, r, "")
	default:
		return nil, coded(http.StatusMethodNotAllowed, errInvalidMethod)
	}
}

// jobSpecificRequest routes /v1/job/<id>[/suffix] by suffix, as Nomad
// does (the job ID is the rest of the unescaped path, so it may hold "/").
func (s *Server) jobSpecificRequest(w http.ResponseWriter, r *http.Request) (any, error) {
	path := strings.TrimPrefix(r.URL.Path, "/v1/job/")
	switch {
	case strings.HasSuffix(path, "/allocations"):
		s.count(r, "/v1/job/:id/allocations")
		return s.jobAllocations(w, r, strings.TrimSuffix(path, "/allocations"))
	case strings.HasSuffix(path, "/evaluations"):
		s.count(r, "/v1/job/:id/evaluations")
		return s.jobEvaluations(w, r, strings.TrimSuffix(path, "/evaluations"))
	case strings.HasSuffix(path, "/dispatch"):
		s.count(r, "/v1/job/:id/dispatch")
		return s.jobDispatch(w, r, strings.TrimSuffix(path, "/dispatch"))
	case strings.HasSuffix(path, "/summary"):
		s.count(r, "/v1/job/:id/summary")
		return s.jobSummary(w, r, strings.TrimSuffix(path, "/summary"))
	}
	for _, unsupported := range []string{"/evaluate", "/periodic/force", "/plan", "/dispatch/payload", "/versions",
		"/revert", "/deployments", "/deployment", "/stable", "/scale", "/services", "/submission", "/actions", "/action", "/tag"} {
		if strings.HasSuffix(path, unsupported) {
			return nil, coded(http.StatusNotImplemented, "nomadsim: %s is not implemented", unsupported)
		}
	}
	s.count(r, "/v1/job/:id")
	switch r.Method {
	case http.MethodGet:
		return s.jobQuery(w, r, path)
	case http.MethodPut, http.MethodPost:
		return s.jobRegister(w, r, path)
	case http.MethodDelete:
		return s.jobDelete(w, r, path)
	default:
		return nil, coded(http.StatusMethodNotAllowed, errInvalidMethod)
	}
}

func (s *Server) jobList(w http.ResponseWriter, r *http.Request) (any, error) {
	o, err := parseQuery(r)
	if err != nil {
		return nil, err
	}
	withMeta := false
	if v := r.URL.Query().Get("meta"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("Failed to parse value of %q (%v) as a bool: %w", "meta", v, err) //nolint:staticcheck // Nomad's text
		}
		withMeta = b
	}
	if !s.allow(o.token, o.namespace, "list-jobs") {
		return nil, errDenied
	}
	return s.blockingQuery(r.Context(), w, o, func() (any, uint64) {
		return s.listStubs(o.namespace, o.prefix, withMeta), max(s.tables["jobs"], s.tables["job_summary"])
	}), nil
}

func (s *Server) jobQuery(w http.ResponseWriter, r *http.Request, id string) (any, error) {
	return s.readJob(w, r, id, "jobs", func(rec *jobRec) (any, uint64) {
		return rec.publicJob(), *rec.job.ModifyIndex
	})
}

func (s *Server) jobSummary(w http.ResponseWriter, r *http.Request, id string) (any, error) {
	if r.Method != http.MethodGet {
		return nil, coded(http.StatusMethodNotAllowed, errInvalidMethod)
	}
	return s.readJob(w, r, id, "job_summary", func(rec *jobRec) (any, uint64) {
		return rec.summaryCopy(), rec.summary.ModifyIndex
	})
}

// readJob answers a (blocking) read of one job with the read-job
// capability: view gives the body and its index. An unknown job is a 404
// carrying the index of table, as Nomad's job and summary reads do.
func (s *Server) readJob(w http.ResponseWriter, r *http.Request, id, table string, view func(*jobRec) (any, uint64)) (any, error) {
	o, err := parseQuery(r)
	if err != nil {
		return nil, err
	}
	if !s.allow(o.token, o.namespace, "read-job") {
		return nil, errDenied
	}
	var found bool
	obj := s.blockingQuery(r.Context(), w, o, func() (any, uint64) {
		rec := s.jobs[jobKey{o.namespace, id}]
		found = rec != nil
		if rec == nil {
			return nil, s.tables[table]
		}
		return view(rec)
	})
	if !found {
		return nil, coded(http.StatusNotFound, errJobNotFound)
	}
	return obj, nil
}

func (s *Server) jobAllocations(w http.ResponseWriter, r *http.Request, id string) (any, error) {
	if r.Method != http.MethodGet {
		return nil, coded(http.StatusMethodNotAllowed, errInvalidMethod)
	}
	// ?all is not read: a dispatched job has one version, so every
	// allocation is current.
	o, err := parseQuery(r)
	if err != nil {
		return nil, err
	}
	if !s.allow(o.token, o.namespace, "read-job") {
		return nil, errDenied
	}
	if id == "" {
		return nil, errors.New("missing job ID")
	}
	return s.blockingQuery(r.Context(), w, o, func() (any, uint64) {
		return s.allocStubs(o.namespace, id), s.tables["allocs"]
	}), nil
}

func (s *Server) jobEvaluations(w http.ResponseWriter, r *http.Request, id string) (any, error) {
	if r.Method != http.MethodGet {
		return nil, coded(http.StatusMethodNotAllowed, errInvalidMethod)
	}
	o, err := parseQuery(r)
	if err != nil {
		return nil, err
	}
	if !s.allow(o.token, o.namespace, "read-job") {
		return nil, errDenied
	}
	return s.blockingQuery(r.Context(), w, o, func() (any, uint64) {
		evals := s.evalsOf(o.namespace, id)
		out := make([]map[string]json.RawMessage, 0, len(evals))
		for _, ev := range evals {
			out = append(out, evalJSON(ev))
		}
		return out, s.tables["evals"]
	}), nil
}

// evalJSON is an evaluation as Nomad writes it: structs.Evaluation is
// encoded with omitempty on every field (`_struct bool codec:",omitempty"`),
// so zero values, including a zero WaitUntil, are left out.
func evalJSON(ev *api.Evaluation) map[string]json.RawMessage {
	m := map[string]json.RawMessage{}
	b, err := json.Marshal(ev)
	if err != nil || json.Unmarshal(b, &m) != nil {
		return m
	}
	for k, v := range m {
		switch string(v) {
		case "null", `""`, "0", "false", "{}", "[]", `"0001-01-01T00:00:00Z"`:
			delete(m, k)
		}
	}
	return m
}

// writeOptions are the parsed parameters of a write.
type writeOptions struct {
	namespace string
	token     string
}

func parseWrite(r *http.Request) writeOptions {
	o := writeOptions{namespace: r.URL.Query().Get("namespace"), token: parseToken(r)}
	if o.namespace == "" {
		o.namespace = defaultNamespace
	}
	return o
}

func (s *Server) jobDispatch(w http.ResponseWriter, r *http.Request, id string) (any, error) {
	if r.Method != http.MethodPut && r.Method != http.MethodPost {
		return nil, coded(http.StatusMethodNotAllowed, errInvalidMethod)
	}
	var req api.JobDispatchRequest
	if r.Body == http.NoBody || r.Body == nil {
		return nil, coded(http.StatusBadRequest, "Request body is empty")
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		return nil, coded(http.StatusBadRequest, "%s", err.Error())
	}
	if req.JobID != "" && req.JobID != id {
		return nil, coded(http.StatusBadRequest, "Job ID does not match")
	}
	if req.JobID == "" {
		req.JobID = id
	}
	o := parseWrite(r)
	if !s.allow(o.token, o.namespace, "dispatch-job") {
		return nil, errDenied
	}
	resp, err := s.dispatch(o.namespace, &req)
	if err != nil {
		return nil, err
	}
	setIndex(w, resp.index)
	return map[string]any{
		"DispatchedJobID": resp.jobID,
		"EvalID":          resp.evalID,
		"EvalCreateIndex": resp.index,
		"JobCreateIndex":  resp.index,
		"Index":           resp.index,
	}, nil
}

func (s *Server) jobDelete(w http.ResponseWriter, r *http.Request, id string) (any, error) {
	parseFlag := func(name string) (bool, error) {
		v := r.URL.Query().Get(name)
		if v == "" {
			return false, nil
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return false, fmt.Errorf("Failed to parse value of %q (%v) as a bool: %w", name, v, err) //nolint:staticcheck // Nomad's text
		}
		return b, nil
	}
	purge, err := parseFlag("purge")
	if err != nil {
		return nil, err
	}
	if _, err := parseFlag("global"); err != nil {
		return nil, err
	}
	o := parseWrite(r)
	caps := []string{"submit-job", "purge-job"}
	if !purge {
		caps = append(caps, "deregister-job")
	}
	if !s.allow(o.token, o.namespace, caps...) {
		return nil, errDenied
	}
	if id == "" {
		return nil, errors.New("missing job ID for deregistering")
	}
	evalID, index := s.deregister(o.namespace, id, purge)
	setIndex(w, index)
	return map[string]any{
		"EvalID":          evalID,
		"EvalCreateIndex": index,
		"JobModifyIndex":  index,
		"VolumeEvalID":    "",
		"VolumeEvalIndex": 0,
		"Index":           index,
		"LastContact":     0,
		"KnownLeader":     false,
		"NextToken":       "",
	}, nil
}

func (s *Server) jobRegister(w http.ResponseWriter, r *http.Request, pathID string) (any, error) {
	var req api.JobRegisterRequest
	if r.Body == http.NoBody || r.Body == nil {
		return nil, coded(http.StatusBadRequest, "Request body is empty")
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		return nil, coded(http.StatusBadRequest, "%s", err.Error())
	}
	if req.Job == nil {
		return nil, coded(http.StatusBadRequest, "Job must be specified")
	}
	if req.Job.ID == nil {
		return nil, coded(http.StatusBadRequest, "Job ID hasn't been provided")
	}
	if pathID != "" && *req.Job.ID != pathID {
		return nil, coded(http.StatusBadRequest, "Job ID does not match name")
	}
	o := parseWrite(r)
	if req.Job.Namespace != nil && *req.Job.Namespace != "" {
		o.namespace = *req.Job.Namespace
	}
	if !s.allow(o.token, o.namespace, "submit-job", "register-job") {
		return nil, errDenied
	}
	if s.aclEnabled() {
		// Job.Register records who submitted the job
		req.Job.NomadTokenID = ptr(accessorID(o.token))
	}
	res, err := s.register(o.namespace, req.Job)
	if err != nil {
		return nil, err
	}
	setIndex(w, res.index)
	return map[string]any{
		"EvalID":          res.evalID,
		"EvalCreateIndex": res.evalIndex,
		"JobModifyIndex":  res.jobModify,
		"Warnings":        "",
		"Index":           res.index,
		"LastContact":     0,
		"KnownLeader":     false,
		"NextToken":       "",
	}, nil
}
