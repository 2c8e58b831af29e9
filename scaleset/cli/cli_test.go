// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/shoenig/test/must"
)

func TestMain_version(t *testing.T) {
	var out, errb bytes.Buffer
	must.Eq(t, 0, Main(t.Context(), []string{"--version"}, &out, &errb))
	must.StrContains(t, out.String(), "nomad-gha-scaleset v")
}

func TestMain_usage(t *testing.T) {
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no args", nil, 2, "Usage:"},
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"run without config", []string{"run"}, 2, "--config is required"},
		{"bad demo flag", []string{"demo", "--jobs", "x"}, 2, "invalid value"},
		{"bad log level", []string{"demo", "--log-level", "loud"}, 2, "--log-level"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			must.Eq(t, tc.code, Main(t.Context(), tc.args, &out, &errb))
			must.StrContains(t, out.String()+errb.String(), tc.want)
		})
	}
}

func TestRunCmd_invalidConfigNamesFieldsNotSecrets(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.hcl")
	must.NoError(t, os.WriteFile(p, []byte(`github_config_url = "https://github.com/acme"
scale_set "linux" {
  backend     = "docker"
  max_runners = 0
}
`), 0o600))
	env := map[string]string{"NOMAD_GHA_SCALESET_GITHUB_TOKEN": "ghp_SUPERSECRET"}
	var out, errb bytes.Buffer
	code := runCmd(t.Context(), []string{"--config", p}, &out, &errb, func(k string) string { return env[k] })
	must.Eq(t, 1, code)
	must.StrContains(t, errb.String(), `scale_set "linux": max_runners: must be >= 1, got 0`)
	must.StrNotContains(t, errb.String(), "SUPERSECRET")
}

func TestNewLogger(t *testing.T) {
	var b bytes.Buffer
	l, err := NewLogger(&b, "debug", "json")
	must.NoError(t, err)
	l.Debug("hello", "runner_name", "x")
	must.StrContains(t, b.String(), `"msg":"hello"`)
	_, err = NewLogger(&b, "info", "xml")
	must.ErrorContains(t, err, "--log-format")
}
