// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package service

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/sim/actionssim"
)

// readyz polls /readyz until it answers want with a body containing
// contains, and returns the body.
func readyz(t *testing.T, addr string, want int, contains string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/readyz", nil)
		must.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		must.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		last = resp.Status + ": " + string(b)
		if resp.StatusCode == want && strings.Contains(string(b), contains) {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never answered %d with %q; last %s", want, contains, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestService_Handler_readyzFollowsGitHubOutage: /readyz is 200 while the
// listener polls, 503 while the Actions service answers its message polls
// with errors (the listener restarting on its session meanwhile) and while
// the polls go unanswered past the bound, and 200 again once GitHub is
// back, as the README says. Before, a restarted listener counted as ready
// before any poll succeeded, so an outage hardly showed.
func TestService_Handler_readyzFollowsGitHubOutage(t *testing.T) {
	sim := startSim(t, actionssim.Options{})
	be := newGoBackend()
	t.Cleanup(be.close)
	r := startServiceWith(t, testConfig(t, sim.OrgConfigURL("acme"), scaleSetSpec{name: "linux", max: 2}), map[string]*goBackend{"linux": be},
		func(o *Options) { o.unreachableAfter = 2 * time.Second })
	addr, err := r.svc.Addr(t.Context())
	must.NoError(t, err)

	readyz(t, addr, http.StatusOK, "ok")

	// polls answered 503 (the client's retries exhausted): not ready
	remove := sim.InjectFault(actionssim.Fault{Endpoints: []actionssim.Endpoint{actionssim.EndpointGetMessage}, Status: http.StatusServiceUnavailable})
	body := readyz(t, addr, http.StatusServiceUnavailable, "linux (GitHub unreachable: ")
	must.StrContains(t, body, "not listening: ")
	remove()
	readyz(t, addr, http.StatusOK, "ok")

	// polls hanging (a network black hole): not ready once nothing
	// answered for the bound, though no poll has failed yet
	remove = sim.InjectFault(actionssim.Fault{Endpoints: []actionssim.Endpoint{actionssim.EndpointGetMessage}, Delay: 6 * time.Second})
	readyz(t, addr, http.StatusServiceUnavailable, "linux (GitHub unreachable: no answer for ")
	remove()
	readyz(t, addr, http.StatusOK, "ok") // once the delayed poll is answered
	_ = r.shutdown(t)
}
