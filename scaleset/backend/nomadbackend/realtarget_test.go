// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadbackend_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil/nomadagent"
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
