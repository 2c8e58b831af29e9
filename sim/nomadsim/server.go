// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadsim

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
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
