// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package actionssim

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Endpoint names a group of simulator endpoints, for fault injection and
// request counting.
type Endpoint string

// Endpoints.
const (
	EndpointAccessToken        Endpoint = "access-token"        // POST app/installations/{id}/access_tokens
	EndpointRegistrationToken  Endpoint = "registration-token"  // POST .../actions/runners/registration-token
	EndpointRunnerRegistration Endpoint = "runner-registration" // POST actions/runner-registration
	EndpointRunnerGroups       Endpoint = "runner-groups"       // GET runnergroups
	EndpointScaleSets          Endpoint = "scale-sets"          // scale set get/create/update/delete
	EndpointSessions           Endpoint = "sessions"            // session create/refresh/delete
	EndpointGetMessage         Endpoint = "get-message"         // GET {mq}
	EndpointDeleteMessage      Endpoint = "delete-message"      // DELETE {mq}/{id}
	EndpointAcquireJobs        Endpoint = "acquire-jobs"        // POST acquirejobs
	EndpointAcquirableJobs     Endpoint = "acquirable-jobs"     // GET acquirablejobs (legacy)
	EndpointJITConfig          Endpoint = "generate-jit-config" // POST generatejitconfig
	EndpointRunners            Endpoint = "runners"             // runner by id / by name / remove
	EndpointRunnerAPI          Endpoint = "runner-api"          // /_sim/runner/*
)

// Fault is an injected misbehaviour. A request matches when its endpoint is
// in Endpoints (or Endpoints is empty) while the fault is active.
type Fault struct {
	// Endpoints limits the fault; empty means every endpoint.
	Endpoints []Endpoint
	// Status, when non-zero, is answered instead of the real response. 5xx
	// and 429 make the official client retry.
	Status int
	// RetryAfter, when non-zero, is sent as Retry-After (whole seconds,
	// rounded up). The client honours it on 429 and 503.
	RetryAfter time.Duration
	// Count is how many matching requests the fault affects; 0 means no
	// limit (then For, or forever).
	Count int
	// For is how long the fault stays active from injection; 0 means no
	// time limit.
	For time.Duration
	// Delay is slept (bounded by the request's context) before answering,
	// with Status or with the real response.
	Delay time.Duration
	// PlainText answers Status with a text/plain body instead of a JSON
	// exception (the client then uses the body verbatim).
	PlainText bool
}

type activeFault struct {
	Fault
	id        int
	until     time.Time
	remaining int // -1: unlimited
}

type faultSet struct {
	mu     sync.Mutex
	next   int
	faults []*activeFault
}

// InjectFault activates f and returns a function that removes it early.
func (s *Simulator) InjectFault(f Fault) (remove func()) {
	fs := &s.faults
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.next++
	af := &activeFault{Fault: f, id: fs.next, remaining: -1}
	af.Endpoints = slices.Clone(f.Endpoints)
	if f.Count > 0 {
		af.remaining = f.Count
	}
	if f.For > 0 {
		af.until = time.Now().Add(f.For)
	}
	fs.faults = append(fs.faults, af)
	id := af.id
	return func() {
		fs.mu.Lock()
		defer fs.mu.Unlock()
		fs.faults = slices.DeleteFunc(fs.faults, func(a *activeFault) bool { return a.id == id })
	}
}

// FailNext answers the next n requests to the given endpoints (all when
// none are given) with status.
func (s *Simulator) FailNext(n, status int, endpoints ...Endpoint) {
	s.InjectFault(Fault{Endpoints: endpoints, Status: status, Count: n})
}

// FailFor answers every request to the given endpoints with status for d.
func (s *Simulator) FailFor(d time.Duration, status int, endpoints ...Endpoint) {
	s.InjectFault(Fault{Endpoints: endpoints, Status: status, For: d})
}

// SlowDown delays every response of the given endpoints by delay, for d
// (forever when d is 0).
func (s *Simulator) SlowDown(delay, d time.Duration, endpoints ...Endpoint) {
	s.InjectFault(Fault{Endpoints: endpoints, Delay: delay, For: d})
}

// ClearFaults removes every injected fault.
func (s *Simulator) ClearFaults() {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.faults = nil
}

// take finds the first active fault for e and consumes one use of it.
func (fs *faultSet) take(e Endpoint, now time.Time) (Fault, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.faults = slices.DeleteFunc(fs.faults, func(a *activeFault) bool {
		return (!a.until.IsZero() && now.After(a.until)) || a.remaining == 0
	})
	for _, a := range fs.faults {
		if len(a.Endpoints) > 0 && !slices.Contains(a.Endpoints, e) {
			continue
		}
		if a.remaining > 0 {
			a.remaining--
		}
		return a.Fault, true
	}
	return Fault{}, false
}

// applyFault runs the fault for e, if any. It returns true when the
// response was written and the real handler must not run.
func (s *Simulator) applyFault(w http.ResponseWriter, r *http.Request, e Endpoint) bool {
	f, ok := s.faults.take(e, time.Now())
	if !ok {
		return false
	}
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return true
		}
	}
	if f.Status == 0 {
		return false
	}
	if f.RetryAfter > 0 {
		secs := int((f.RetryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	s.log.Debug("injected fault", "endpoint", string(e), "status", f.Status)
	msg := fmt.Sprintf("injected fault: status %d", f.Status)
	if f.PlainText {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(f.Status)
		_, _ = w.Write([]byte(msg))
		return true
	}
	switch e {
	case EndpointAccessToken, EndpointRegistrationToken, EndpointRunnerRegistration:
		s.writeGitHubError(w, f.Status, msg)
	default:
		s.writeException(w, f.Status, typeBadRequest, msg)
	}
	return true
}
