// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package check_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/nomad/api"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil/nomadagent"
)

// TestNomad_check_realAgent runs the nomad checks against a real Nomad
// agent with ACLs: the token of the example's ACL policy passes, a
// management token passes, a token Nomad does not know and a token without
// rights in the runners' namespace fail, each with its reason.
func TestNomad_check_realAgent(t *testing.T) {
	a := nomadagent.Start(t, nomadagent.Options{ACL: true, Plugins: []string{}})
	c := a.API()
	const ns = "github-runners"
	_, err := c.Namespaces().Register(&api.Namespace{Name: ns}, nil)
	must.NoError(t, err)
	job := runnerJob("github-runner")
	job.Namespace = &[]string{ns}[0]
	_, _, err = c.Jobs().Register(job, &api.WriteOptions{Namespace: ns})
	must.NoError(t, err)

	rules, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), "examples", "scaleset-dispatch", "scaleset-acl-policy.hcl"))
	must.NoError(t, err)
	token := func(name, policyRules string) string {
		_, err := c.ACLPolicies().Upsert(&api.ACLPolicy{Name: name, Rules: policyRules}, nil)
		must.NoError(t, err)
		tok, _, err := c.ACLTokens().Create(&api.ACLToken{Name: name, Type: "client", Policies: []string{name}}, nil)
		must.NoError(t, err)
		return tok.SecretID
	}
	dir := t.TempDir()
	tokenFile := func(name, secret string) string {
		p := filepath.Join(dir, name)
		must.NoError(t, os.WriteFile(p, []byte(secret), 0o600))
		return p
	}
	// The test agent is Nomad 1.6: purge-job is a Nomad 2.0 capability,
	// submit-job its 1.x equivalent (examples/scaleset-dispatch/README.md).
	policy := strings.ReplaceAll(string(rules), `"purge-job"`, `"submit-job"`)
	scaleset := tokenFile("scaleset", token("nomad-gha-scaleset", policy))
	other := tokenFile("other", token("elsewhere", `namespace "default" { capabilities = ["read-job"] }`))
	mgmt := tokenFile("management", a.Token)
	unknown := tokenFile("unknown", "2d6f4a5e-0000-4000-8000-000000000000")

	srv := startSim(t)
	cases := []struct {
		name, tokenFile string
		code            int
		want            []string
	}{
		{"example policy", scaleset, 0, []string{
			`[ok  ] linux: nomad token: client token "nomad-gha-scaleset", policies nomad-gha-scaleset`,
			`[ok  ] linux: nomad job: parameterized job "github-runner" in namespace "github-runners" accepts the service's dispatches`,
		}},
		{"management token", mgmt, 0, []string{`[ok  ] linux: nomad token: management token`}},
		{"unknown token", unknown, 1, []string{"[FAIL] linux: nomad token: token rejected ("}},
		{"no rights in the namespace", other, 1, []string{`[ok  ] linux: nomad token: client token "elsewhere"`, "[FAIL] linux: nomad job:", "permission denied"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runCheck(t, goodToken, scaleSetHCL(srv.OrgConfigURL("acme"), "linux", "", fmt.Sprintf(`backend = "nomad"
  nomad {
    address    = %q
    namespace  = %q
    token_file = %q
    job_id     = "github-runner"
  }`, a.HTTPAddr, ns, tc.tokenFile)))
			verdict := "READY"
			if tc.code != 0 {
				verdict = "NOT READY"
			}
			wantLines(t, out, code, tc.code, verdict, tc.want...)
		})
	}
}

// TestNomad_check_aclDisabled: on a cluster without ACLs the token line
// says so and the job check still runs.
func TestNomad_check_aclDisabled(t *testing.T) {
	a := nomadagent.Start(t, nomadagent.Options{Plugins: []string{}})
	_, _, err := a.API().Jobs().Register(runnerJob("github-runner"), nil)
	must.NoError(t, err)
	srv := startSim(t)
	code, out := runCheck(t, goodToken, scaleSetHCL(srv.OrgConfigURL("acme"), "linux", "", fmt.Sprintf(`backend = "nomad"
  nomad {
    address = %q
    job_id  = "github-runner"
  }`, a.HTTPAddr)))
	wantLines(t, out, code, 0, "READY", "[ok  ] linux: nomad token: ACLs are disabled", `[ok  ] linux: nomad job: parameterized job "github-runner" in namespace "default"`)
}
