// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package actionssim

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Simulator is the simulated GitHub + Actions service. It is an
// http.Handler: serve it with Start, httptest.NewServer or any server. All
// absolute URLs it hands out (service URL, message-queue URL, JIT config)
// are built from the request's Host, so it works behind any listener.
//
// It owns one background goroutine (assignment timeouts, idle sessions,
// lost runners) that Close stops.
type Simulator struct {
	opts   Options
	log    *slog.Logger
	key    []byte // signs admin and message-queue tokens
	mux    *http.ServeMux
	faults faultSet

	stop     chan struct{}
	stopOnce sync.Once
	loopDone chan struct{}

	mu      sync.Mutex
	version uint64
	notify  chan struct{} // closed and replaced on every state change

	tenants       map[string]*tenant
	groups        []wireRunnerGroup
	scaleSets     map[int]*scaleSet
	jobs          []*job // queue order
	runners       map[int]*runner
	runnerHistory []*runner // every runner ever registered, in id order

	installToks  map[string]time.Time
	regTokens    map[string]regToken
	nextTenant   int
	nextScaleSet int
	nextRunner   int
	nextRequest  int64
	nextMessage  int64
	nextSerial   int64
	nextRunID    int64
	adminRevoked int64 // admin tokens with serial <= this are expired
	mqRevoked    int64 // message-queue tokens with serial <= this are expired
	counts       map[Endpoint]int
}

type regToken struct {
	scope   string
	expires time.Time
}

// New returns a Simulator configured by opts (defaults applied by
// opts.Validate) and starts its background loop. Call Close when done.
func New(opts Options) (*Simulator, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("invalid actionssim options: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generating token signing key: %w", err)
	}
	s := &Simulator{
		opts:         opts,
		log:          opts.Logger,
		key:          key,
		mux:          http.NewServeMux(),
		stop:         make(chan struct{}),
		loopDone:     make(chan struct{}),
		notify:       make(chan struct{}),
		tenants:      map[string]*tenant{},
		scaleSets:    map[int]*scaleSet{},
		runners:      map[int]*runner{},
		installToks:  map[string]time.Time{},
		regTokens:    map[string]regToken{},
		counts:       map[Endpoint]int{},
		nextScaleSet: 1,
		nextRunner:   1,
		nextRunID:    9000,
	}
	s.groups = append(s.groups, wireRunnerGroup{ID: 1, Name: DefaultRunnerGroup, IsDefault: true})
	for i, g := range opts.RunnerGroups {
		s.groups = append(s.groups, wireRunnerGroup{ID: i + 2, Name: g})
	}
	s.routes()
	s.controlRoutes()
	go s.loop()
	return s, nil
}

// Close stops the background loop and wakes every long poll. It is safe to
// call more than once. The handler keeps answering afterwards, but long
// polls return at once.
func (s *Simulator) Close() {
	s.stopOnce.Do(func() {
		close(s.stop)
		<-s.loopDone
	})
}

// Server is a Simulator listening on a real TCP address.
type Server struct {
	*Simulator
	// URL is the base URL, e.g. http://127.0.0.1:41234 (no trailing slash).
	URL string
	srv *http.Server
	ln  net.Listener

	connMu   sync.Mutex
	newConns map[net.Conn]bool // connections that have not sent a request yet
}

// Start creates a Simulator and serves it on addr ("127.0.0.1:0" when
// empty). Close the Server to stop both.
func Start(addr string, opts Options) (*Server, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	sim, err := New(opts)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		sim.Close()
		return nil, fmt.Errorf("listening on %q: %w", addr, err)
	}
	s := &Server{Simulator: sim, URL: "http://" + ln.Addr().String(), ln: ln, newConns: map[net.Conn]bool{}}
	s.srv = &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second, ConnState: s.trackConn}
	srv := s.srv
	go func() { _ = srv.Serve(ln) }() // ends when Close shuts the server down
	return s, nil
}

// trackConn remembers connections that never sent a request. Go's HTTP
// client dials spare connections that may stay unused; Shutdown would wait
// 5 s for each before treating it as idle.
func (s *Server) trackConn(c net.Conn, state http.ConnState) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if state == http.StateNew {
		s.newConns[c] = true
	} else {
		delete(s.newConns, c)
	}
}

// Close stops the simulator (waking long polls) and then the HTTP server.
func (s *Server) Close() {
	s.Simulator.Close()
	s.connMu.Lock()
	for c := range s.newConns {
		_ = c.Close()
	}
	s.connMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
	}
}

// OrgConfigURL returns the GitHub config URL of an organization on this
// server, e.g. http://127.0.0.1:PORT/acme. Because the host is not
// github.com, the client sends REST calls under /api/v3 (GHES style).
func (s *Server) OrgConfigURL(org string) string { return s.URL + "/" + org }

// RepoConfigURL returns the config URL of a repository.
func (s *Server) RepoConfigURL(owner, repo string) string { return s.URL + "/" + owner + "/" + repo }

// EnterpriseConfigURL returns the config URL of an enterprise.
func (s *Server) EnterpriseConfigURL(ent string) string { return s.URL + "/enterprises/" + ent }

// ServeHTTP implements http.Handler.
func (s *Simulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

// changedLocked records a state change and wakes waiters. Callers hold s.mu.
func (s *Simulator) changedLocked() {
	s.version++
	close(s.notify)
	s.notify = make(chan struct{})
}

// snapshotLocked builds a Snapshot. Callers hold s.mu.
func (s *Simulator) snapshotLocked() Snapshot {
	var snap Snapshot
	for _, ss := range s.sortedScaleSetsLocked() {
		snap.ScaleSets = append(snap.ScaleSets, s.scaleSetViewLocked(ss))
	}
	for _, j := range s.jobs {
		c := j.Job
		c.Labels = slices.Clone(j.Labels)
		snap.Jobs = append(snap.Jobs, c)
	}
	for _, r := range s.runnerHistory {
		snap.Runners = append(snap.Runners, r.Runner)
	}
	return snap
}

// scaleSetViewLocked is a scale set as Snapshot shows it. Callers hold s.mu.
func (s *Simulator) scaleSetViewLocked(ss *scaleSet) ScaleSet {
	v := ScaleSet{
		ID: ss.id, Name: ss.name, RunnerGroupID: ss.groupID, Labels: ss.labelNames(),
		Tenant: ss.tenant.scope, MaxCapacity: ss.maxCapacity, PendingMessages: len(ss.queue),
		Statistics: s.statsLocked(ss),
	}
	if ss.session != nil {
		v.SessionID, v.SessionOwner = ss.session.id, ss.session.owner
	}
	return v
}

// Snapshot returns a consistent copy of every scale set, job and runner.
func (s *Simulator) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshotLocked()
}

// Jobs returns every job ever queued, in queue order, with states and
// timestamps.
func (s *Simulator) Jobs() []Job { return s.Snapshot().Jobs }

// Runners returns every runner ever registered (deleted ones included, in
// state RunnerDeleted), in id order.
func (s *Simulator) Runners() []Runner { return s.Snapshot().Runners }

// ScaleSets returns every existing scale set in id order.
func (s *Simulator) ScaleSets() []ScaleSet { return s.Snapshot().ScaleSets }

// Stats returns the current statistics of a scale set, exactly as the next
// message would carry them. An unknown id yields zero statistics and false.
func (s *Simulator) Stats(scaleSetID int) (Statistics, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.scaleSets[scaleSetID]
	if !ok {
		return Statistics{}, false
	}
	return s.statsLocked(ss), true
}

// ErrClosed is returned by WaitFor when the Simulator is closed.
var ErrClosed = errors.New("simulator closed")

// WaitFor blocks until cond returns true for a snapshot, or ctx ends, or the
// Simulator is closed (ErrClosed). cond is evaluated on every state change
// (and once at the start); it must not call back into the Simulator.
func (s *Simulator) WaitFor(ctx context.Context, cond func(Snapshot) bool) error {
	for {
		s.mu.Lock()
		snap := s.snapshotLocked()
		ch := s.notify
		s.mu.Unlock()
		if cond(snap) {
			return nil
		}
		select {
		case <-ch:
		case <-s.stop:
			return fmt.Errorf("waiting for simulator condition: %w", ErrClosed)
		case <-ctx.Done():
			return fmt.Errorf("waiting for simulator condition: %w", ctx.Err())
		}
	}
}

// RequestCount returns how many requests reached an endpoint so far,
// including those answered by an injected fault.
func (s *Simulator) RequestCount(e Endpoint) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[e]
}

// ---- response helpers ----

const (
	typeSessionConflict  = "GitHub.Actions.Runtime.WebApi.RunnerScaleSetSessionConflictException, GitHub.Actions.Runtime.WebApi"
	typeRunnerAdmin      = "GitHub.Actions.Runtime.WebApi.RunnerAdminException, GitHub.Actions.Runtime.WebApi"
	typeScaleSetExists   = "GitHub.Actions.Runtime.WebApi.RunnerScaleSetExistsException, GitHub.Actions.Runtime.WebApi"
	typeScaleSetNotFound = "GitHub.Actions.Runtime.WebApi.RunnerScaleSetNotFoundException, GitHub.Actions.Runtime.WebApi"
	typeAgentExists      = "GitHub.DistributedTask.WebApi.TaskAgentExistsException, GitHub.DistributedTask.WebApi"
	typeAgentNotFound    = "GitHub.DistributedTask.WebApi.TaskAgentNotFoundException, GitHub.DistributedTask.WebApi"
	typeJobStillRunning  = "GitHub.DistributedTask.WebApi.TaskAgentJobStillRunningException, GitHub.DistributedTask.WebApi"
	typeUnauthorized     = "GitHub.Services.Common.VssUnauthorizedException, GitHub.Services.Common"
	typeBadRequest       = "GitHub.Services.WebApi.VssServiceException, GitHub.Services.WebApi"
)

// writeServiceJSON writes an Actions-service (or broker) JSON body with an
// ActivityId header and, when configured, a leading byte-order mark.
func (s *Simulator) writeServiceJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	if s.opts.ByteOrderMark {
		buf.WriteString("\xef\xbb\xbf")
	}
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		http.Error(w, "encoding response", http.StatusInternalServerError)
		return
	}
	s.writeServiceRaw(w, status, buf.Bytes())
}

func (s *Simulator) writeServiceRaw(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("ActivityId", newUUID())
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeException writes a .NET-style exception body.
func (s *Simulator) writeException(w http.ResponseWriter, status int, typeName, msg string) {
	short := typeName
	if i := strings.IndexByte(short, ','); i >= 0 {
		short = short[:i]
	}
	if i := strings.LastIndexByte(short, '.'); i >= 0 {
		short = short[i+1:]
	}
	s.writeServiceJSON(w, status, wireException{
		ID: "1", Message: msg, TypeName: typeName, TypeKey: short,
	})
}

// writeGitHubJSON writes a GitHub REST body with an X-GitHub-Request-Id.
func (s *Simulator) writeGitHubJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-GitHub-Request-Id", strings.ToUpper(randomToken("", 8)))
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func (s *Simulator) writeGitHubError(w http.ResponseWriter, status int, msg string) {
	s.writeGitHubJSON(w, status, wireGitHubError{
		Message: msg, DocumentationURL: "https://docs.github.com/rest", Status: fmt.Sprint(status),
	})
}

// decodeJSON decodes a request body, tolerating a byte-order mark.
func decodeJSON(r *http.Request, v any) error {
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(http.MaxBytesReader(nil, r.Body, 1<<20)); err != nil {
		return fmt.Errorf("reading request body: %w", err)
	}
	b := bytes.TrimPrefix(buf.Bytes(), []byte("\xef\xbb\xbf"))
	if len(bytes.TrimSpace(b)) == 0 {
		return errors.New("request body is empty")
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decoding request body: %w", err)
	}
	return nil
}

// baseURL returns scheme://host of the request as the client sees it.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func bearer(r *http.Request, scheme string) (string, bool) {
	h := r.Header.Get("Authorization")
	prefix := scheme + " "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	return strings.TrimSpace(h[len(prefix):]), true
}
