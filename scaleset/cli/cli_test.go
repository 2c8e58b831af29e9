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
		{"bad run flag", []string{"run", "--config"}, 2, "flag needs an argument"},
		{"run extra argument", []string{"run", "--config", "x.hcl", "extra"}, 2, `unexpected argument "extra"`},
		{"run help", []string{"run", "--help"}, 0, "Usage: nomad-gha-scaleset run --config FILE"},
		{"run -h", []string{"run", "-h"}, 0, "-listen-address"},
		{"check help", []string{"check", "--help"}, 0, "Usage: nomad-gha-scaleset check --config FILE"},
		{"help", []string{"help"}, 0, "Commands:"},
		// the demo is a program of its own (sim/cmd/nomad-gha-scaleset-demo)
		{"no demo command", []string{"demo"}, 2, `unknown command "demo"`},
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
	l, err := newLogger(&b, "debug", "json")
	must.NoError(t, err)
	l.Debug("hello", "runner_name", "x")
	must.StrContains(t, b.String(), `"msg":"hello"`)
	_, err = newLogger(&b, "info", "xml")
	must.ErrorContains(t, err, "--log-format")
}
