// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadagent

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
)

// pollInterval is how often readiness and the Wait helpers poll the API.
const pollInterval = 100 * time.Millisecond

// waitReady waits until the ACL system is bootstrapped (server agents with
// ACL), the node has registered since the last kill or stop, is ready, and
// its drivers are healthy and Options.Ready holds. An agent process that
// exits fails the wait at once; a busy port is errPortBusy.
func (a *Agent) waitReady(t testing.TB, deadline time.Time) error {
	t.Helper()
	var last string
	for {
		if a.exited() {
			if strings.Contains(a.currentLogs(), "address already in use") {
				return fmt.Errorf("agent exited: %w", errPortBusy)
			}
			return fmt.Errorf("agent %s exited during start-up; log:\n%s", a.NodeName, tail(a.currentLogs(), 60))
		}
		ok, why := a.readyOnce()
		if ok {
			return nil
		}
		last = why
		if time.Now().After(deadline) {
			return fmt.Errorf("agent %s not ready after %s: %s; log:\n%s", a.NodeName, readyTimeout, last, tail(a.currentLogs(), 60))
		}
		time.Sleep(pollInterval)
	}
}

// readyOnce checks readiness once and says what is missing.
func (a *Agent) readyOnce() (bool, string) {
	if a.opts.ACL && a.opts.Server == nil && a.Token == "" {
		tok, _, err := a.API().ACLTokens().Bootstrap(nil)
		if err != nil {
			return false, fmt.Sprintf("ACL bootstrap: %v", err)
		}
		a.mu.Lock()
		a.Token, a.client = tok.SecretID, nil // the next API() carries the token
		a.mu.Unlock()
	}
	if _, err := a.API().Agent().Self(); err != nil {
		return false, fmt.Sprintf("agent API: %v", err)
	}
	n, err := a.node()
	if err != nil {
		return false, err.Error()
	}
	a.mu.Lock()
	since := a.lastNode
	a.mu.Unlock()
	if n.ModifyIndex <= since {
		return false, "node has not registered again since the agent was stopped"
	}
	if n.Status != api.NodeStatusReady {
		return false, "node status " + n.Status
	}
	for _, name := range a.drivers {
		d := n.Drivers[name]
		if d == nil || !d.Detected || !d.Healthy {
			desc := "not fingerprinted"
			if d != nil {
				desc = fmt.Sprintf("detected=%t healthy=%t: %s", d.Detected, d.Healthy, d.HealthDescription)
			}
			return false, fmt.Sprintf("driver %s %s", name, desc)
		}
	}
	if a.opts.Ready != nil && !a.opts.Ready(n) {
		return false, "Options.Ready does not hold yet"
	}
	return true, ""
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
