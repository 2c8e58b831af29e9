// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package check_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/scaleset/cli"
	"github.com/tartnomad/nomad-driver-tart/sim/actionssim"
	"github.com/tartnomad/nomad-driver-tart/sim/faketart"
	"github.com/tartnomad/nomad-driver-tart/sim/nomadsim"
)

const goodToken = "ghp_CHECKTESTSECRET0123456789"

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.CleanupImages()
	testutil.CleanupBuilds()
	os.Exit(code)
}

// startSim serves the Actions simulator with one PAT, one GitHub App
// (client ID Iv-check, installation 42) and one extra runner group; it
// holds an existing scale set "existing".
func startSim(t *testing.T) *actionssim.Server {
	t.Helper()
	appKey, _ := testutil.RSAPrivateKey(t)
	srv, err := actionssim.Start("", actionssim.Options{
		PersonalAccessTokens: []string{goodToken},
		Apps:                 []actionssim.App{{ClientID: "Iv-check", InstallationID: 42, PublicKey: &appKey.PublicKey}},
		RunnerGroups:         []string{"mac-fleet"},
	})
	must.NoError(t, err)
	t.Cleanup(srv.Close)
	_, err = srv.CreateScaleSet("acme", "existing", "existing")
	must.NoError(t, err)
	return srv
}

// runCheck writes the config and runs `nomad-gha-scaleset check` with the
// token in the environment, returning the exit code and the report.
func runCheck(t *testing.T, token, hcl string) (int, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "scaleset.hcl")
	must.NoError(t, os.WriteFile(p, []byte(hcl), 0o600))
	t.Setenv("NOMAD_GHA_SCALESET_GITHUB_TOKEN", token)
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code := cli.Main(ctx, []string{"check", "--config", p, "--timeout", "15s"}, &out, &errb)
	must.Eq(t, "", errb.String())
	if token != "" {
		must.StrNotContains(t, out.String(), token, must.Sprint("the token leaked into the report"))
	}
	return code, out.String()
}

func scaleSetHCL(url, name, extra, backend string) string {
	return fmt.Sprintf(`
github_config_url     = %q
github_http_retry_max = 0
scale_set %q {
  %s
  %s
}
`, url, name, extra, backend)
}

// wantLines asserts each fragment appears on some report line, and the
// verdict.
func wantLines(t *testing.T, out string, code, wantCode int, verdict string, fragments ...string) {
	t.Helper()
	must.Eq(t, wantCode, code, must.Sprint(out))
	must.StrContains(t, out, "verdict: "+verdict, must.Sprint(out))
	for _, f := range fragments {
		must.StrContains(t, out, f, must.Sprint(out))
	}
}

func TestCheck_config(t *testing.T) {
	t.Run("missing file", func(t *testing.T) {
		var out bytes.Buffer
		code := cli.Main(context.Background(), []string{"check", "--config", filepath.Join(t.TempDir(), "nope.hcl")}, &out, &out)
		wantLines(t, out.String(), code, 1, "NOT READY", "[FAIL] config: read: failed to read config file")
	})
	t.Run("no config flag", func(t *testing.T) {
		t.Setenv("NOMAD_GHA_SCALESET_CONFIG", "")
		var out bytes.Buffer
		must.Eq(t, 2, cli.Main(context.Background(), []string{"check"}, &out, &out))
		must.StrContains(t, out.String(), "--config is required")
	})
	t.Run("invalid fields", func(t *testing.T) {
		code, out := runCheck(t, goodToken, scaleSetHCL("https://github.com/acme", "x", "max_runners = 0", `backend = "docker"`))
		wantLines(t, out, code, 1, "NOT READY", `[FAIL] config: validate: scale_set "x": max_runners: must be >= 1, got 0`)
	})
	t.Run("no credentials", func(t *testing.T) {
		code, out := runCheck(t, "", scaleSetHCL("https://github.com/acme", "x", "", `backend = "docker"`))
		wantLines(t, out, code, 1, "NOT READY", "[FAIL] config: validate: github_token_file: no credentials")
	})
}

func TestCheck_github(t *testing.T) {
	srv := startSim(t)
	// The backend part fails on purpose (no engine there): only the
	// GitHub lines matter here.
	be := `backend = "docker"
  docker { docker_host = "unix:///nonexistent/docker.sock" }`
	cases := []struct {
		name, token, extra string
		want               []string
	}{
		{"new scale set", goodToken, "", []string{
			"[ok  ] linux: github: authenticated to " + srv.OrgConfigURL("acme"),
			`[ok  ] linux: runner group: "default" (id 1)`,
			`[warn] linux: scale set: "linux" does not exist yet in runner group "default": run creates it`,
		}},
		{"existing scale set", goodToken, `runner_scale_set_name = "existing"`, []string{`[ok  ] linux: scale set: "existing" exists (id `}},
		{"other runner group", goodToken, `runner_group = "mac-fleet"`, []string{`[ok  ] linux: runner group: "mac-fleet" (id `}},
		{"missing runner group", goodToken, `runner_group = "nope"`, []string{`[FAIL] linux: github: runner_group does not exist`}},
		{"bad token", "ghp_WRONG", "", []string{"[FAIL] linux: github: authentication failed"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runCheck(t, tc.token, scaleSetHCL(srv.OrgConfigURL("acme"), "linux", tc.extra, be))
			wantLines(t, out, code, 1, "NOT READY", tc.want...)
			must.StrContains(t, out, "[FAIL] linux: docker: engine not reachable")
		})
	}
	must.Len(t, 1, srv.ScaleSets(), must.Sprint("check created a scale set"))
}

func TestCheck_githubApp(t *testing.T) {
	srv := startSim(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "app.pem")
	_, appKeyPEM := testutil.RSAPrivateKey(t) // the simulator's App key (startSim)
	must.NoError(t, os.WriteFile(keyFile, []byte(appKeyPEM), 0o600))
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	must.NoError(t, err)
	wrongKey := filepath.Join(dir, "wrong.pem")
	must.NoError(t, os.WriteFile(wrongKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(other)}), 0o600))
	app := func(clientID, key string) string {
		return fmt.Sprintf(`
github_app {
  client_id        = %q
  installation_id  = 42
  private_key_file = %q
}`, clientID, key)
	}
	be := `backend = "docker"
  docker { docker_host = "unix:///nonexistent/docker.sock" }`
	for _, tc := range []struct {
		name, app, want string
	}{
		{"app", app("Iv-check", keyFile), "[ok  ] linux: github: authenticated to "},
		{"wrong key", app("Iv-check", wrongKey), "[FAIL] linux: github: authentication failed"},
		{"unknown app", app("Iv-nope", keyFile), "[FAIL] linux: github: authentication failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runCheck(t, "", tc.app+scaleSetHCL(srv.OrgConfigURL("acme"), "linux", "", be))
			wantLines(t, out, code, 1, "NOT READY", tc.want)
		})
	}
}

func TestCheck_docker(t *testing.T) {
	cli := testutil.DockerClient(t)
	srv := startSim(t)
	ref := testutil.BuildImage(t, cli, "nomad-tart-check-test", nil)
	host := os.Getenv("DOCKER_HOST")
	cases := []struct {
		name, docker string
		code         int
		verdict      string
		want         []string
	}{
		{"image present", fmt.Sprintf(`image = %q`, ref), 0, "READY", []string{"[ok  ] linux: docker: engine reachable", "[ok  ] linux: docker image: " + ref + " present"}},
		{"image missing, pulled later", `image = "nomad-tart-check-test:absent"`, 0, "READY with 2 warning(s)", []string{"[warn] linux: docker image: nomad-tart-check-test:absent is not present"}},
		{"image missing, never pulled", `
    image = "nomad-tart-check-test:absent"
    pull_policy = "never"`, 1, "NOT READY", []string{"[FAIL] linux: docker image: nomad-tart-check-test:absent is not present and pull_policy is never"}},
		{"engine unreachable", `docker_host = "unix:///nonexistent/docker.sock"`, 1, "NOT READY", []string{"[FAIL] linux: docker: engine not reachable"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if host != "" && !strings.Contains(tc.docker, "docker_host") {
				tc.docker += fmt.Sprintf("\n    docker_host = %q", host)
			}
			code, out := runCheck(t, goodToken, scaleSetHCL(srv.OrgConfigURL("acme"), "linux", "", `backend = "docker"
  docker {
    `+tc.docker+`
  }`))
			wantLines(t, out, code, tc.code, tc.verdict, tc.want...)
		})
	}
}

func runnerJob(id string) *api.Job {
	s := func(v string) *string { return &v }
	return &api.Job{
		ID: s(id), Type: s("batch"),
		ParameterizedJob: &api.ParameterizedJobConfig{Payload: "required", MetaRequired: []string{"runner_name", "runner_scale_set_name"}},
		TaskGroups: []*api.TaskGroup{{Name: s("runner"), Tasks: []*api.Task{{
			Name: "runner", Driver: "tart", DispatchPayload: &api.DispatchPayloadConfig{File: "jitconfig"},
		}}}},
	}
}

func TestCheck_nomad(t *testing.T) {
	srv := startSim(t)
	nsim := nomadsim.New(nomadsim.WithACL(map[string]nomadsim.ACLToken{
		"runners": {Namespaces: map[string][]string{"default": {"list-jobs", "read-job", "dispatch-job", "purge-job"}}},
		"nobody":  {Namespaces: map[string][]string{"other": {"read-job"}}},
	}))
	addr := nsim.Start()
	t.Cleanup(nsim.Close)
	must.NoError(t, nsim.RegisterJob(runnerJob("github-runner")))
	plain := runnerJob("not-parameterized")
	plain.ParameterizedJob = nil
	must.NoError(t, nsim.RegisterJob(plain))

	dir := t.TempDir()
	tokenFile := func(secret string) string {
		p := filepath.Join(dir, secret)
		must.NoError(t, os.WriteFile(p, []byte(secret), 0o600))
		return p
	}
	cases := []struct {
		name, nomad string
		code        int
		want        []string
	}{
		{"ready", fmt.Sprintf(`address = %q
    token_file = %q
    job_id = "github-runner"`, addr, tokenFile("runners")), 0, []string{
			"[ok  ] linux: nomad: agent at " + addr + " reachable",
			"[skip] linux: nomad token: the agent does not answer /v1/acl/token/self",
			`[ok  ] linux: nomad job: parameterized job "github-runner" in namespace "default"`,
		}},
		{"job missing", fmt.Sprintf(`address = %q
    token_file = %q
    job_id = "nope"`, addr, tokenFile("runners")), 1, []string{`[FAIL] linux: nomad job:`, `job "nope" does not exist`}},
		{"job not parameterized", fmt.Sprintf(`address = %q
    token_file = %q
    job_id = "not-parameterized"`, addr, tokenFile("runners")), 1, []string{`[FAIL] linux: nomad job:`, `is not parameterized`}},
		{"token without rights", fmt.Sprintf(`address = %q
    token_file = %q
    job_id = "github-runner"`, addr, tokenFile("nobody")), 1, []string{`[FAIL] linux: nomad job:`, `permission denied`}},
		{"unreachable", `address = "http://127.0.0.1:1"
    job_id = "github-runner"`, 1, []string{"[FAIL] linux: nomad: agent at http://127.0.0.1:1 not reachable"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runCheck(t, goodToken, scaleSetHCL(srv.OrgConfigURL("acme"), "linux", "", `backend = "nomad"
  nomad {
    `+tc.nomad+`
  }`))
			verdict := "READY"
			if tc.code != 0 {
				verdict = "NOT READY"
			}
			wantLines(t, out, code, tc.code, verdict, tc.want...)
			must.StrNotContains(t, out, "runners\n", must.Sprint("token leaked"))
		})
	}
}

func TestCheck_tart(t *testing.T) {
	srv := startSim(t)
	fake := testutil.BuildBinary(t, "./sim/cmd/faketart")
	home := t.TempDir()
	must.NoError(t, faketart.SeedVM(home, "macos-base", faketart.DefaultConfig("darwin"), 1))
	cases := []struct {
		name, tart string
		code       int
		want       []string
	}{
		{"image cached", fmt.Sprintf(`tart_path = %q
    tart_home = %q
    image = "macos-base"`, fake, home), 0, []string{"[ok  ] linux: tart: " + fake + " version ", "[ok  ] linux: tart image: macos-base cached"}},
		{"image not cached", fmt.Sprintf(`tart_path = %q
    tart_home = %q
    image = "ghcr.io/cirruslabs/macos-sequoia-base:latest"`, fake, home), 0, []string{"[warn] linux: tart image: ghcr.io/cirruslabs/macos-sequoia-base:latest is not cached"}},
		{"tart missing", `tart_path = "/nonexistent/tart"
    image = "macos-base"`, 1, []string{"[FAIL] linux: tart: /nonexistent/tart does not run"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runCheck(t, goodToken, scaleSetHCL(srv.OrgConfigURL("acme"), "linux", "", `backend = "tart"
  tart {
    `+tc.tart+`
  }`))
			verdict := "READY"
			if tc.code != 0 {
				verdict = "NOT READY"
			}
			wantLines(t, out, code, tc.code, verdict, tc.want...)
		})
	}
}
