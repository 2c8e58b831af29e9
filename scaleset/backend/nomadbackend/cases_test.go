// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadbackend_test

// One table of the nomad backend's behaviours, run against the API double
// (TestNomadBackend_cases/double, in every `go test`) and a real Nomad
// agent (TestNomadBackend_cases/agent). A case asserts the same on both;
// where Nomad 1.6 (the agent) must answer differently from the 2.0.x the
// double models, the case's v16 field says what differs and the case
// branches on nomadTarget.V16 there. Any other difference is a bug in the
// double.

import (
	"fmt"
	"testing"
	"time"
)

const (
	caseScaleSet = "macos-arm64"
	// caseJIT looks like a real JIT config (base64 JSON).
	caseJIT = "eyJydW5uZXIiOiJjYXNlLXRhYmxlLXNlY3JldC1qaXQtY29uZmlnIn0="
	// caseWait bounds every wait of a case; it only limits a failure.
	caseWait = 90 * time.Second
)

// backendCase is one behaviour of the backend, asserted on every target.
type backendCase struct {
	name string
	// v16 says how Nomad 1.6 answers differently in this case (empty:
	// identical on both).
	v16 string
	run func(t *testing.T, e *caseEnv)
}

var backendCases = []backendCase{
	{name: "dispatch payload and meta", v16: "the dispatch response's JobCreateIndex is less than its Index on 1.6 (equal on 2.0)", run: caseDispatch},
	{name: "payload limit 16 KiB", run: casePayloadLimit},
	{name: "list and read dispatched children", run: caseListChildren},
	{name: "blocking query watch", run: caseBlockingWatch},
	{name: "stop and purge", v16: "1.6 still lists a purged job's allocations (stopped) until garbage collection; 2.0 answers [] at once", run: caseStopPurge},
	{name: "adoption after restart", run: caseAdoption},
	{name: "newest dispatch per runner name", run: caseNewestPerName},
	{name: "failure reasons", run: caseFailureReasons},
	{name: "placement failure reason", run: casePlacementFailure},
	{name: "dispatch to a stopped parent", run: caseStoppedParent},
	{name: "ACL denials with the example policy", v16: "1.6 rejects the example policy as written (no purge-job capability): the agent gets it with submit-job instead", run: caseACL},
}

// runBackendCases runs the table on nt, each case with its own parent job.
func runBackendCases(t *testing.T, nt nomadTarget) {
	policyToken := nt.Token(t, examplePolicy(t, nt.V16()))
	for i, tc := range backendCases {
		t.Run(tc.name, func(t *testing.T) {
			e := &caseEnv{nt: nt, jobID: fmt.Sprintf("runner-case%02d", i), slug: fmt.Sprintf("c%02d", i), token: policyToken}
			e.proxy = newCountingProxy(t, nt.Addr())
			register(t, nt, ctlJob(e.jobID, nt.CtlDir()))
			t.Cleanup(func() { e.cleanup(t) })
			tc.run(t, e)
		})
	}
}

// TestNomadBackend_casesDouble runs the table on the API double (in every
// go test); TestNomadBackend_cases (realtarget_test.go) runs it on a real
// agent.
func TestNomadBackend_casesDouble(t *testing.T) {
	runBackendCases(t, newDoubleTarget(t))
}
