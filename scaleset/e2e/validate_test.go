// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/sim/actionssim"
)

// TestE2E_configRejectedAtStart: issue 11's configurations that the
// service accepted (and then misread or retried forever) make `run` exit 1
// at once with an error naming the field.
func TestE2E_configRejectedAtStart(t *testing.T) {
	bin := testutil.BuildBinary(t, "./cmd/nomad-gha-scaleset")
	keyFile := filepath.Join(t.TempDir(), "app.pem")
	must.NoError(t, os.WriteFile(keyFile, []byte("-----BEGIN RSA PRIVATE KEY-----\nbm90IGEga2V5\n-----END RSA PRIVATE KEY-----\n"), 0o600))
	cases := []struct {
		name, top, set, want string
	}{
		{"ftp scheme", `github_config_url = "ftp://github.com/o"`, ``, "scheme must be https"},
		{"enterprises without a name", `github_config_url = "https://github.com/enterprises/"`, ``, "github_config_url"},
		{"repository with extra path", `github_config_url = "https://github.com/o/r/extra/path"`, ``, "github_config_url"},
		{"unparseable private key", `github_config_url = "https://github.com/o"
github_app {
  client_id        = "Iv1.test"
  installation_id  = 1
  private_key_file = "` + keyFile + `"
}`, ``, "github_app.private_key_file"},
		{"max_runners 100000", `github_config_url = "https://github.com/o"`, `max_runners = 100000`, "max_runners"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "config.hcl")
			must.NoError(t, os.WriteFile(p, []byte(tc.top+`
listen_address = "127.0.0.1:0"
scale_set "v" {
  backend = "docker"
  `+tc.set+`
}
`), 0o600))
			// A bad configuration ends run at once; the bound only keeps a
			// service that started anyway from hanging the test.
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "run", "--config", p)
			cmd.Env = append(os.Environ(), "NOMAD_GHA_SCALESET_GITHUB_TOKEN="+testPAT)
			out, err := cmd.CombinedOutput()
			must.NoError(t, ctx.Err(), must.Sprintf("run did not exit on a bad configuration:\n%s", out))
			var ee *exec.ExitError
			must.True(t, errors.As(err, &ee), must.Sprintf("run: %v\n%s", err, out))
			must.Eq(t, 1, ee.ExitCode(), must.Sprint(string(out)))
			must.StrContains(t, string(out), "invalid configuration")
			must.StrContains(t, string(out), tc.want)
			must.StrNotContains(t, string(out), "bm90IGEga2V5")
		})
	}
}

// TestE2E_sessionConflictTimeoutHolds: a second instance gives up within
// a second of session_conflict_timeout (10 s gave up after 17 s: the last
// backoff step overshot the deadline).
func TestE2E_sessionConflictTimeoutHolds(t *testing.T) {
	env := tartEnv(t)
	sim := startSim(t)
	addrA, addrB := testutil.FreeLoopbackAddr(t), testutil.FreeLoopbackAddr(t)
	cfgA := writeConfig(t, sim.OrgConfigURL("acme"), addrA, scaleSetHCL{name: "held", backend: env.kind, max: 1, backendBlock: env.block(nil)})
	a := startService(t, cfgA, addrA)
	waitFor(t, sim, 30*time.Second, "A's session", actionssim.HasSession("held"))

	const timeout = 10 * time.Second
	cfgB := writeConfig(t, sim.OrgConfigURL("acme"), addrB, scaleSetHCL{name: "held", backend: env.kind, max: 1,
		backendBlock: env.block(nil), conflictTimeout: timeout.String()})
	b := startService(t, cfgB, addrB)
	eventually(t, 30*time.Second, "B's first conflict", func() bool {
		return strings.Contains(b.logs.String(), "another listener holds the message session")
	})
	first := time.Now()
	var exitErr error
	select {
	case exitErr = <-b.done:
		b.done <- exitErr
	case <-time.After(timeout + 20*time.Second):
		t.Fatal("B did not give up")
	}
	took := time.Since(first)
	must.Error(t, exitErr, must.Sprint("B exits with an error"))
	must.StrContains(t, b.logs.String(), "another listener holds the message session of this scale set after")
	must.Less(t, timeout+time.Second, took, must.Sprintf("gave up %s after the first conflict; timeout %s", took, timeout))
	must.Greater(t, timeout-time.Second, took)
	a.stop(t)
}
