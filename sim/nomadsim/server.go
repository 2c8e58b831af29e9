// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadsim

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/nomad/api"
)

// Nomad's limits and texts that the double reproduces.
const (
	// DispatchPayloadSizeLimit is Nomad's limit on a dispatch payload
	// (nomad/job_endpoint.go).
	DispatchPayloadSizeLimit = 16 * 1024
	// MaxBlockingQueryTime caps ?wait; it is also the default.
	MaxBlockingQueryTime = 300 * time.Second
	// jitterFraction: Nomad adds up to wait/16 of random time to a
	// blocking query.
	jitterFraction = 16

	errPermissionDenied = "Permission denied"
	errInvalidMethod    = "Invalid method"
	errJobNotFound      = "job not found"
	plainContentType    = "text/plain; charset=utf-8"
	defaultNamespace    = "default"
	allNamespaces       = "*"
	jobMaxPriority      = 100
)

// Node is the one client node the double places allocations on.
const (
	NodeID   = "5b2c7f6a-0d1e-4c55-9c2b-6a1f3e0d9a11"
	NodeName = "nomadsim-client"
	NodeDC   = "dc1"
)

// ACLToken is what one secret ID may do when ACLs are enabled.
type ACLToken struct {
	// Management tokens may do everything.
	Management bool
	// Namespaces maps a namespace (or "*") to its capabilities, e.g.
	// "dispatch-job", "read-job", "list-jobs", "purge-job", "submit-job".
	Namespaces map[string][]string
}

func (t ACLToken) allows(ns string, caps ...string) bool {
	if t.Management {
		return true
	}
	for _, key := range []string{ns, allNamespaces} {
		for _, have := range t.Namespaces[key] {
			for _, want := range caps {
				if have == want {
					return true
				}
			}
		}
	}
	return false
}

// Option configures a Server.
type Option func(*Server)

// WithTaskRunner sets what runs the task of each placed allocation
// (default: none; allocations stay pending).
func WithTaskRunner(r TaskRunner) Option { return func(s *Server) { s.runner = r } }

// WithPlacement sets the placement decision (default: every allocation is
// placed on the one node).
func WithPlacement(p Placement) Option { return func(s *Server) { s.place = p } }

// WithACL enables ACLs with these tokens, keyed by secret ID. Requests
// without a known token get "Permission denied".
func WithACL(tokens map[string]ACLToken) Option {
	return func(s *Server) {
		s.acl = make(map[string]ACLToken, len(tokens))
		for k, v := range tokens {
			s.acl[k] = v
		}
	}
}

// SetACLToken adds (or replaces) a token, as `nomad acl token create`
// does on a running cluster. Without WithACL it turns ACLs on, with this
// token only.
func (s *Server) SetACLToken(secretID string, token ACLToken) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.acl == nil {
		s.acl = map[string]ACLToken{}
	}
	s.acl[secretID] = token
}

// WithLogger sets the logger (default discard).
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.logger = l } }

// Server is the Nomad HTTP API double. Create it with New, start it with
// Start or StartListener, stop it with Close.
type Server struct {
	logger *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // scheduling goroutines and task runners
	http   *httptest.Server

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every write
	index    uint64
	tables   map[string]uint64
	jobs     map[jobKey]*jobRec
	allocs   map[string]*allocRec
	evals    map[string]*api.Evaluation
	acl      map[string]ACLToken
	runner   TaskRunner
	place    Placement
	requests map[string]int
	blocking int
}

// New builds a Server; nothing listens until Start.
func New(opts ...Option) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		logger:   slog.New(slog.DiscardHandler),
		ctx:      ctx,
		cancel:   cancel,
		changed:  make(chan struct{}),
		tables:   map[string]uint64{},
		jobs:     map[jobKey]*jobRec{},
		allocs:   map[string]*allocRec{},
		evals:    map[string]*api.Evaluation{},
		requests: map[string]int{},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Start serves on a new loopback port and returns the address
// (http://127.0.0.1:port).
func (s *Server) Start() string {
	s.http = httptest.NewServer(s.Handler())
	return s.http.URL
}

// StartListener serves on ln (to reuse an address a client already has).
func (s *Server) StartListener(ln net.Listener) string {
	s.http = httptest.NewUnstartedServer(s.Handler())
	_ = s.http.Listener.Close()
	s.http.Listener = ln
	s.http.Start()
	return s.http.URL
}

// Close ends blocking queries, stops every task runner (as if the
// allocations were stopped) and closes the listener.
func (s *Server) Close() {
	s.cancel()
	if s.http != nil {
		s.http.Close()
	}
	s.wg.Wait()
}

// Handler returns the HTTP handler (for callers that serve it themselves).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/jobs", s.wrap(s.jobsRequest))
	mux.HandleFunc("/v1/job/", s.wrap(s.jobSpecificRequest))
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNotFound) })
	return mux
}

// Requests returns how many requests reached route, e.g. "GET /v1/jobs",
// "PUT /v1/job/:id/dispatch", "DELETE /v1/job/:id".
func (s *Server) Requests(route string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[route]
}

// BlockingQueries returns how many blocking queries are waiting now.
func (s *Server) BlockingQueries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.blocking
}

// codedError is an error with an HTTP status, like Nomad's CodedError.
type codedError struct {
	code int
	msg  string
}

func (e *codedError) Error() string { return e.msg }

func coded(code int, format string, a ...any) error {
	return &codedError{code: code, msg: fmt.Sprintf(format, a...)}
}

var errDenied = coded(http.StatusForbidden, errPermissionDenied)

type handlerFn func(w http.ResponseWriter, r *http.Request) (any, error)

// wrap writes a handler's result the way Nomad's HTTP server does: JSON on
// success, a plain-text body with the status code on error (500 for
// errors without a code).
//
// A client that accepts gzip (Go's http.Transport asks by default) gets
// every body gzipped, as Nomad's gzip handler does, and then an error has
// no Content-Type (the handler skips the sniffing net/http would do).
func (s *Server) wrap(h handlerFn) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Vary", "Accept-Encoding")
		gz := strings.Contains(r.Header.Get("Accept-Encoding"), "gzip")
		obj, err := h(w, r)
		if err != nil {
			code := http.StatusInternalServerError
			var ce *codedError
			if errors.As(err, &ce) {
				code = ce.code
			}
			writeBody(w, code, "", []byte(err.Error()), gz)
			return
		}
		if obj == nil {
			return
		}
		body, err := json.Marshal(obj)
		if err != nil {
			writeBody(w, http.StatusInternalServerError, "", []byte(err.Error()), gz)
			return
		}
		writeBody(w, http.StatusOK, "application/json", body, gz)
	}
}

// writeBody writes a response; ctype "" is an error's plain text.
func writeBody(w http.ResponseWriter, code int, ctype string, body []byte, gz bool) {
	if !gz {
		if ctype == "" {
			ctype = plainContentType
		}
		w.Header().Set("Content-Type", ctype)
		w.WriteHeader(code)
		_, _ = w.Write(body)
		return
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(body)
	_ = zw.Close()
	if ctype != "" {
		w.Header().Set("Content-Type", ctype)
	}
	w.Header().Set("Content-Encoding", "gzip")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

func (s *Server) count(r *http.Request, route string) {
	s.mu.Lock()
	s.requests[r.Method+" "+route]++
	s.mu.Unlock()
}

// queryOptions are the parsed common query parameters.
type queryOptions struct {
	namespace string
	prefix    string
	token     string
	minIndex  uint64
	wait      time.Duration
}

// parseQuery reads ?namespace, ?prefix, ?index, ?wait, ?stale, ?per_page
// and the token as Nomad's parse() does.
func parseQuery(r *http.Request) (queryOptions, error) {
	q := r.URL.Query()
	o := queryOptions{namespace: q.Get("namespace"), prefix: q.Get("prefix"), token: parseToken(r)}
	if o.namespace == "" {
		o.namespace = defaultNamespace
	}
	if v, ok := q["stale"]; ok && len(v) > 0 && v[0] != "" {
		if _, err := strconv.ParseBool(v[0]); err != nil {
			return o, coded(http.StatusBadRequest, "Expect `true` or `false` for `stale` query string parameter")
		}
	}
	if v := q.Get("per_page"); v != "" {
		if _, err := strconv.ParseInt(v, 10, 32); err != nil {
			return o, coded(http.StatusBadRequest, "Expect a number for `per_page` query string parameter")
		}
		return o, coded(http.StatusBadRequest, "nomadsim: per_page pagination is not implemented")
	}
	if q.Get("filter") != "" {
		return o, coded(http.StatusBadRequest, "nomadsim: filter expressions are not implemented")
	}
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return o, coded(http.StatusBadRequest, "Invalid wait time")
		}
		o.wait = d
	}
	if v := q.Get("index"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return o, coded(http.StatusBadRequest, "Invalid index")
		}
		o.minIndex = n
	}
	return o, nil
}

// parseToken reads X-Nomad-Token, then "Authorization: Bearer <token>".
func parseToken(r *http.Request) string {
	if t := r.Header.Get("X-Nomad-Token"); t != "" {
		return strings.TrimSpace(t)
	}
	parts := strings.Split(r.Header.Get("Authorization"), " ")
	if len(parts) > 1 && strings.EqualFold(parts[0], "bearer") {
		return strings.TrimSpace(strings.Split(strings.TrimSpace(strings.Join(parts[1:], " ")), " ")[0])
	}
	return ""
}

func (s *Server) aclEnabled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acl != nil
}

// accessorID is the token's accessor ID: a UUID derived from the secret
// (the double keeps no accessor table).
func accessorID(secret string) string {
	h := sha256.Sum256([]byte("accessor:" + secret))
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// allow reports whether token may use any of caps in namespace.
func (s *Server) allow(token, ns string, caps ...string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.acl == nil {
		return true
	}
	t, ok := s.acl[token]
	return ok && t.allows(ns, caps...)
}

// blockingQuery runs run under the lock until its index is above
// o.minIndex or the wait ends, like Nomad's blockingRPC: without ?index it
// answers at once; with it, it waits up to ?wait (default and maximum
// 300s) plus up to wait/16 of jitter, and on timeout answers with the
// current (unchanged) result.
func (s *Server) blockingQuery(ctx context.Context, w http.ResponseWriter, o queryOptions, run func() (any, uint64)) any {
	var timeout <-chan time.Time
	if o.minIndex > 0 {
		wait := o.wait
		if wait <= 0 || wait > MaxBlockingQueryTime {
			wait = MaxBlockingQueryTime
		}
		if j := int64(wait / jitterFraction); j > 0 {
			wait += time.Duration(rand.Int64N(j))
		}
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	counted := false
	defer func() {
		if counted {
			s.mu.Lock()
			s.blocking--
			s.mu.Unlock()
		}
	}()
	for {
		s.mu.Lock()
		obj, idx := run()
		changed := s.changed
		if o.minIndex == 0 || idx > o.minIndex {
			s.mu.Unlock()
			setMeta(w, idx)
			return obj
		}
		if !counted {
			s.blocking++
			counted = true
			s.poke()
			changed = s.changed
		}
		s.mu.Unlock()
		select {
		case <-changed:
		case <-timeout:
			setMeta(w, idx)
			return obj
		case <-ctx.Done():
			setMeta(w, idx)
			return obj
		case <-s.ctx.Done():
			setMeta(w, idx)
			return obj
		}
	}
}

// poke wakes WaitUntil callers and blocking queries, which re-check and
// wait again. commit calls it after each write; alone it wakes them
// without one. Caller holds mu.
func (s *Server) poke() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// setMeta writes the query meta headers of a leader that answers itself.
func setMeta(w http.ResponseWriter, index uint64) {
	w.Header().Set("X-Nomad-Index", strconv.FormatUint(index, 10))
	w.Header().Set("X-Nomad-LastContact", "0")
	w.Header().Set("X-Nomad-KnownLeader", "true")
}

func setIndex(w http.ResponseWriter, index uint64) {
	w.Header().Set("X-Nomad-Index", strconv.FormatUint(index, 10))
}

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
			return nil, fmt.Errorf("Failed to parse value of %q (%v) as a bool: %v", "meta", v, err) //nolint:staticcheck // Nomad's text
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
			return false, fmt.Errorf("Failed to parse value of %q (%v) as a bool: %v", name, v, err) //nolint:staticcheck // Nomad's text
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
