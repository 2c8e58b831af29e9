// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
)

const example = `
github_config_url = "https://github.com/acme"
github_token_env  = "MY_PAT"
listen_address    = "0.0.0.0:9999"

scale_set "macos" {
  labels      = ["macos", "arm64"]
  min_runners = 1
  max_runners = 2
  backend     = "tart"
  runner_online_timeout = "10m"
  tart {
    image = "ghcr.io/cirruslabs/macos-sequoia-base:latest"
  }
}

scale_set "linux" {
  github_config_url     = "https://github.com/acme/app"
  runner_scale_set_name = "linux-x64"
  runner_group          = "ci"
  backend               = "docker"
  remove_idle_runners_on_shutdown = true
}
`

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParse_example(t *testing.T) {
	c, err := Parse([]byte(example), "example.hcl")
	must.NoError(t, err)
	must.NoError(t, c.ResolveSecrets(env(map[string]string{"MY_PAT": "ghp_secret\n"})))
	must.NoError(t, c.Validate())
	must.Eq(t, "ghp_secret", c.GitHubToken.Reveal())
	must.Eq(t, "0.0.0.0:9999", c.ListenAddress)
	must.Eq(t, "info", c.LogLevel)
	must.SliceLen(t, 2, c.ScaleSets)

	mac := c.ScaleSets[0]
	must.Eq(t, "macos", mac.RunnerScaleSetName)
	must.Eq(t, "macos", mac.RunnerNamePrefix)
	must.Eq(t, "https://github.com/acme", mac.GitHubConfigURL)
	must.Eq(t, "default", mac.RunnerGroup)
	must.Eq(t, 2, mac.Max())
	must.Eq(t, 10*time.Minute, mac.Durations.RunnerOnlineTimeout)
	must.NotNil(t, mac.Tart)

	lin := c.ScaleSets[1]
	must.Eq(t, "linux-x64", lin.RunnerScaleSetName)
	must.Eq(t, "linux-x64", lin.RunnerNamePrefix)
	must.Eq(t, "ci", lin.RunnerGroup)
	must.Eq(t, defaultMaxRunners, lin.Max())
	must.Eq(t, defaultRunnerOnlineTimeout, lin.Durations.RunnerOnlineTimeout)
	must.NotNil(t, lin.Docker, must.Sprint("backend block defaulted"))
	must.True(t, lin.RemoveIdleRunnersOnShutdown)
}

func TestConfig_Validate_errorsNameFields(t *testing.T) {
	cases := []struct {
		name string
		hcl  string
		want []string
	}{
		{name: "no scale sets", hcl: `github_config_url = "https://github.com/a"`, want: []string{"scale_set: at least one", "github_token_file: no credentials"}},
		{name: "bad numbers", hcl: `scale_set "x" {
  github_config_url = "https://github.com/a"
  backend = "docker"
  min_runners = 5
  max_runners = 2
}`, want: []string{`scale_set "x": min_runners: 5 is above max_runners 2`}},
		{name: "zero max", hcl: `scale_set "x" {
  github_config_url = "https://github.com/a"
  backend = "docker"
  max_runners = 0
}`, want: []string{`max_runners: must be >= 1`}},
		{name: "bad backend and url", hcl: `scale_set "x" {
  github_config_url = "https://github.com"
  backend = "podman"
}`, want: []string{`backend: must be docker, tart or nomad, got "podman"`, `github_config_url: "https://github.com" must be`}},
		{name: "wrong backend block", hcl: `scale_set "x" {
  github_config_url = "https://github.com/a"
  backend = "docker"
  tart {
    image = "ghcr.io/cirruslabs/macos-sequoia-base:latest"
  }
}`, want: []string{`tart: block given but backend is "docker"`}},
		{name: "bad durations", hcl: `log_format = "xml"
scale_set "x" {
  github_config_url = "https://github.com/a"
  backend = "docker"
  runner_online_timeout = "soon"
  start_backoff_min = "1m"
  start_backoff_max = "1s"
}`, want: []string{`runner_online_timeout: must be a positive duration`, `start_backoff_max: must be >=`, `log_format: must be text or json`}},
		{name: "duplicate names", hcl: `scale_set "x" {
  github_config_url = "https://github.com/a"
  backend = "docker"
}
scale_set "y" {
  github_config_url = "https://github.com/a"
  runner_scale_set_name = "x"
  backend = "docker"
}`, want: []string{`runner_scale_set_name "x" is used twice`}},
		{name: "blank label and odd name", hcl: `scale_set "a b" {
  github_config_url = "https://github.com/a"
  backend = "docker"
  labels = [" "]
}`, want: []string{`labels[0]: must not be blank`, `must not contain`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.hcl), "t.hcl")
			must.NoError(t, err)
			must.NoError(t, c.ResolveSecrets(env(nil)))
			err = c.Validate()
			for _, w := range tc.want {
				must.ErrorContains(t, err, w)
			}
		})
	}
}

func TestParse_unknownAttribute(t *testing.T) {
	_, err := Parse([]byte(`scale_set "x" {
  backend = "docker"
  maxrunners = 3
}`), "t.hcl")
	must.ErrorContains(t, err, "maxrunners")
}

func TestConfig_ResolveSecrets_sources(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "app.pem")
	must.NoError(t, os.WriteFile(keyFile, []byte(testutil.RSAPrivateKeyPEM(t)), 0o600))

	c, err := Parse([]byte(`github_app {
  client_id = "Iv1.x"
  installation_id = 42
  private_key_file = "`+keyFile+`"
}
scale_set "x" {
  github_config_url = "https://github.com/a"
  backend = "docker"
}`), "t.hcl")
	must.NoError(t, err)
	must.NoError(t, c.ResolveSecrets(env(nil)))
	must.NoError(t, c.Validate())
	must.StrContains(t, c.GitHubApp.PrivateKey.Reveal(), "BEGIN RSA PRIVATE KEY")

	// fallback env var for the PAT
	c2, _ := Parse([]byte(`scale_set "x" {
  github_config_url = "https://github.com/a"
  backend = "docker"
}`), "t.hcl")
	must.NoError(t, c2.ResolveSecrets(env(map[string]string{"NOMAD_GHA_SCALESET_GITHUB_TOKEN": "pat-1"})))
	must.NoError(t, c2.Validate())
	must.Eq(t, "pat-1", c2.GitHubToken.Reveal())

	// a missing file is an error naming the field, not a secret
	c3, _ := Parse([]byte(`github_token_file = "/nonexistent/token"`), "t.hcl")
	must.ErrorContains(t, c3.ResolveSecrets(env(nil)), `github_token_file/github_token_env: failed to read "/nonexistent/token"`)

	// a named but empty env var is an error
	c4, _ := Parse([]byte(`github_token_env = "EMPTY"`), "t.hcl")
	must.ErrorContains(t, c4.ResolveSecrets(env(nil)), "environment variable EMPTY is empty")
}

func TestConfig_Apply_overlay(t *testing.T) {
	c := &Config{ListenAddress: "a:1", LogLevel: "info"}
	c.Apply(EnvOverlay(env(map[string]string{"NOMAD_GHA_SCALESET_LOG_LEVEL": "debug"})))
	c.Apply(Overlay{ListenAddress: "b:2"})
	must.Eq(t, "b:2", c.ListenAddress)
	must.Eq(t, "debug", c.LogLevel)
}

func TestSecret_neverPrinted(t *testing.T) {
	s := Secret("ghp_topsecret")
	c := Config{GitHubToken: s, GitHubApp: &GitHubApp{PrivateKey: "PEMDATA"}}
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	logger.Info("cfg", "token", s, "config", c)
	j, _ := json.Marshal(c)
	for _, out := range []string{
		fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q", c, c, c, s, s), buf.String(), string(j),
		fmt.Sprintf("%+v", *c.GitHubApp),
	} {
		must.False(t, strings.Contains(out, "topsecret"), must.Sprint(out))
		must.False(t, strings.Contains(out, "PEMDATA"), must.Sprint(out))
	}
	must.Eq(t, "ghp_topsecret", s.Reveal())
}

func TestConfig_Validate_httpRetries(t *testing.T) {
	c, err := Parse([]byte(`github_http_retry_max = 50
github_http_retry_wait_max = "2s"
scale_set "x" {
  github_config_url = "https://github.com/a"
  backend = "docker"
}`), "t.hcl")
	must.NoError(t, err)
	must.NoError(t, c.ResolveSecrets(env(map[string]string{"NOMAD_GHA_SCALESET_GITHUB_TOKEN": "p"})))
	must.ErrorContains(t, c.Validate(), "github_http_retry_max: must be between 0 and 20, got 50")
	must.Eq(t, 2*time.Second, c.GitHubHTTPRetryWaitMaxDuration)
}

// Issue 11's validation reproductions: each was accepted before.
func TestConfig_Validate_issue11(t *testing.T) {
	cases := []struct {
		name, hcl, want string
	}{
		{"ftp scheme", `github_config_url = "ftp://github.com/o"`, `scheme must be https`},
		{"enterprise without a name", `github_config_url = "https://github.com/enterprises/"`, `must be https://<host>/enterprises/<enterprise>`},
		{"enterprise with extra path", `github_config_url = "https://github.com/enterprises/e/x"`, `github_config_url`},
		{"repository with extra path", `github_config_url = "https://github.com/o/r/extra/path"`, `github_config_url`},
		{"query string", `github_config_url = "https://github.com/o?x=1"`, `github_config_url`},
		{"no path", `github_config_url = "https://github.com"`, `github_config_url`},
		{"max_runners far too high", `github_config_url = "https://github.com/o"
  max_runners = 100000`, `above the limit of 1000`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(`scale_set "x" {
  backend = "docker"
  `+tc.hcl+`
}`), "t.hcl")
			must.NoError(t, err)
			must.NoError(t, c.ResolveSecrets(env(map[string]string{"NOMAD_GHA_SCALESET_GITHUB_TOKEN": "pat"})))
			must.ErrorContains(t, c.Validate(), tc.want)
		})
	}
	for _, ok := range []string{"https://github.com/enterprises/e", "https://github.com/o", "https://github.com/o/r", "https://ghes.example.com/o/r/", "http://127.0.0.1:8080/o"} {
		t.Run("accepts "+ok, func(t *testing.T) {
			c, err := Parse([]byte(`scale_set "x" {
  backend = "docker"
  github_config_url = "`+ok+`"
  max_runners = 1000
}`), "t.hcl")
			must.NoError(t, err)
			must.NoError(t, c.ResolveSecrets(env(map[string]string{"NOMAD_GHA_SCALESET_GITHUB_TOKEN": "pat"})))
			must.NoError(t, c.Validate())
		})
	}
}

func TestConfig_Validate_privateKeyParsed(t *testing.T) {
	good := testutil.RSAPrivateKeyPEM(t)
	cases := []struct {
		name, key, want string
	}{
		{"not PEM", "not a key at all", "not PEM"},
		{"PEM but garbage", "-----BEGIN RSA PRIVATE KEY-----\nZXhhbXBsZQ==\n-----END RSA PRIVATE KEY-----\n", "cannot be parsed"},
		{"good", good, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(`github_app {
  client_id = "Iv1.x"
  installation_id = 42
}
scale_set "x" {
  github_config_url = "https://github.com/a"
  backend = "docker"
}`), "t.hcl")
			must.NoError(t, err)
			must.NoError(t, c.ResolveSecrets(env(map[string]string{"NOMAD_GHA_SCALESET_GITHUB_APP_PRIVATE_KEY": tc.key})))
			err = c.Validate()
			if tc.want == "" {
				must.NoError(t, err)
				return
			}
			must.ErrorContains(t, err, "github_app.private_key_file")
			must.ErrorContains(t, err, tc.want)
			must.StrNotContains(t, err.Error(), "ZXhhbXBsZQ")
		})
	}
}

func TestDefaultStateDir(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"systemd StateDirectory", map[string]string{"STATE_DIRECTORY": "/var/lib/a:/var/lib/b", "XDG_STATE_HOME": "/x", "HOME": "/h"}, "/var/lib/a"},
		{"XDG", map[string]string{"XDG_STATE_HOME": "/x", "HOME": "/h"}, "/x/nomad-gha-scaleset"},
		{"home", map[string]string{"HOME": "/h"}, "/h/.local/state/nomad-gha-scaleset"},
		{"nothing", map[string]string{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			must.Eq(t, tc.want, DefaultStateDir(env(tc.env)))
		})
	}
}

func TestConfig_stateDir(t *testing.T) {
	// the file's value, overridden by the environment
	c, err := Parse([]byte(`state_dir = "/srv/state"`), "t.hcl")
	must.NoError(t, err)
	must.Eq(t, "/srv/state", c.StateDir)
	c.Apply(EnvOverlay(env(map[string]string{"NOMAD_GHA_SCALESET_STATE_DIR": "/env/state"})))
	must.Eq(t, "/env/state", c.StateDir)

	// unset: Validate derives it from the process environment, and names
	// the field when there is nothing to derive it from
	t.Setenv("STATE_DIRECTORY", "")
	t.Setenv("XDG_STATE_HOME", "/xdg")
	c = &Config{}
	_ = c.Validate()
	must.Eq(t, "/xdg/nomad-gha-scaleset", c.StateDir)
	t.Setenv("XDG_STATE_HOME", "")
	t.Setenv("HOME", "")
	c = &Config{}
	must.ErrorContains(t, c.Validate(), "state_dir: not set, and neither STATE_DIRECTORY, XDG_STATE_HOME nor HOME is set")
}

func TestCheckStateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	must.NoError(t, CheckStateDir(dir))
	fi, err := os.Stat(dir)
	must.NoError(t, err)
	must.Eq(t, os.FileMode(0o700), fi.Mode().Perm())
	blocker := filepath.Join(t.TempDir(), "file")
	must.NoError(t, os.WriteFile(blocker, nil, 0o600))
	must.ErrorContains(t, CheckStateDir(filepath.Join(blocker, "s")), `state_dir: cannot create "`+blocker+`/s"`)
}

func TestDurationField(t *testing.T) {
	for _, tc := range []struct {
		name, v string
		want    time.Duration
		err     string
	}{
		{"unset takes the fallback", "", time.Minute, ""},
		{"parsed", "90s", 90 * time.Second, ""},
		{"not a duration", "soon", time.Minute, `f: must be a positive duration like "30s", got "soon"`},
		{"zero", "0s", time.Minute, `got "0s"`},
		{"negative", "-1s", time.Minute, `got "-1s"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var errs []error
			must.Eq(t, tc.want, DurationField(&errs, "f", tc.v, time.Minute))
			if tc.err == "" {
				must.SliceEmpty(t, errs)
				return
			}
			must.SliceLen(t, 1, errs)
			must.ErrorContains(t, errs[0], tc.err)
		})
	}
}
