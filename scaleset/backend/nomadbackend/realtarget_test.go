// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadbackend_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil/nomadagent"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/nomadbackend"
)

// rawExecHCL turns on Nomad's raw_exec driver, which runs the cases'
// runner script (the same script the double runs).
const rawExecHCL = `plugin "raw_exec" {
  config {
    enabled = true
  }
}
`

// TestNomadBackend_cases runs the backend's case table (cases_test.go) on a
// real Nomad agent with ACLs, each case with the example policy's token.
func TestNomadBackend_cases(t *testing.T) {
	agent := nomadagent.Start(t, nomadagent.Options{
		ACL: true, Plugins: []string{}, ExtraHCL: rawExecHCL,
		Ready: func(n *api.Node) bool { d := n.Drivers["raw_exec"]; return d != nil && d.Healthy },
	})
	runBackendCases(t, newAgentTarget(t, agent.HTTPAddr, agent.Token, agent.NodeName))
}

// agentTarget is a real Nomad agent (v1.6.1 in CI) as a nomadTarget.
type agentTarget struct {
	addr, node, ctl string
	client          *api.Client
}

// newAgentTarget wraps a running agent at addr whose management token is
// mgmt, and creates the runners' namespace on it.
func newAgentTarget(t *testing.T, addr, mgmt, node string) *agentTarget {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: addr, SecretID: mgmt})
	must.NoError(t, err)
	t.Cleanup(c.Close)
	_, err = c.Namespaces().Register(&api.Namespace{Name: runnerNS, Description: "GitHub Actions runners"}, nil)
	must.NoError(t, err)
	return &agentTarget{addr: addr, node: node, ctl: t.TempDir(), client: c}
}

func (a *agentTarget) Name() string     { return "agent" }
func (a *agentTarget) V16() bool        { return true }
func (a *agentTarget) Addr() string     { return a.addr }
func (a *agentTarget) API() *api.Client { return a.client }
func (a *agentTarget) CtlDir() string   { return a.ctl }
func (a *agentTarget) NodeName() string { return a.node }

// Token applies policy and creates a client token holding only it.
func (a *agentTarget) Token(t testing.TB, policy string) string {
	t.Helper()
	name := fmt.Sprintf("case-%d", time.Now().UnixNano())
	_, err := a.client.ACLPolicies().Upsert(&api.ACLPolicy{Name: name, Rules: policy}, nil)
	must.NoError(t, err, must.Sprint(policy))
	tok, _, err := a.client.ACLTokens().Create(&api.ACLToken{Name: name, Type: "client", Policies: []string{name}}, nil)
	must.NoError(t, err)
	return tok.SecretID
}

// TestNomadBackend_agentRestart: the backend watches a real agent that is
// SIGKILLed and started again on the same data dir while a runner runs.
// While it is down the backend's view is stale (ListRunners fails with
// ErrUnreachable); once it is back, the view recovers without a restart of
// the backend, the runner's task has kept running (raw_exec survives the
// agent), and its end is seen. The double cannot model this (a restarted
// double has lost its state).
func TestNomadBackend_agentRestart(t *testing.T) {
	agent := nomadagent.Start(t, nomadagent.Options{
		ACL: true, Plugins: []string{}, ExtraHCL: rawExecHCL,
		Ready: func(n *api.Node) bool { d := n.Drivers["raw_exec"]; return d != nil && d.Healthy },
	})
	nt := newAgentTarget(t, agent.HTTPAddr, agent.Token, agent.NodeName)
	e := &caseEnv{nt: nt, jobID: "runner-restart", slug: "restart", token: nt.Token(t, examplePolicy(t, true))}
	e.proxy = newCountingProxy(t, nt.Addr())
	register(t, nt, ctlJob(e.jobID, nt.CtlDir()))
	b, logs := e.backend(t, nil)
	r1 := e.runner(1)
	id, err := b.StartRunner(t.Context(), r1, caseJIT)
	must.NoError(t, err)
	waitRunner(t, b, r1, backend.StateRunning)

	agent.Kill(t)
	eventually(t, "the view stale while the agent is down", func() bool {
		_, err := b.ListRunners(t.Context())
		return errors.Is(err, nomadbackend.ErrUnreachable)
	})
	agent.Restart(t)
	r := waitRunner(t, b, r1, backend.StateRunning)
	must.Eq(t, id, r.ResourceID)
	must.StrContains(t, logs.String(), "nomad is reachable again")

	release(t, nt, r1, 0)
	waitRunner(t, b, r1, backend.StateExited)
	must.NoError(t, b.RemoveRunner(t.Context(), id))
	must.True(t, e.jobGone(t, id))
	must.StrNotContains(t, logs.String(), caseJIT)
}
