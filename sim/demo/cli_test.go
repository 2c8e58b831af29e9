// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package demo

import (
	"bytes"
	"testing"

	"github.com/shoenig/test/must"
)

// TestMain_usage covers the flags the program refuses before starting
// anything (the first two cases moved here with the demo from
// scaleset/cli).
func TestMain_usage(t *testing.T) {
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"bad demo flag", []string{"--jobs", "x"}, 2, "invalid value"},
		{"bad log level", []string{"--log-level", "loud"}, 2, "--log-level"},
		{"bad log format", []string{"--log-format", "xml"}, 2, "--log-format"},
		{"bad backend", []string{"--backend", "podman"}, 2, `--backend: must be auto, docker or tart, got "podman"`},
		{"min over max", []string{"--min-runners", "3", "--max-runners", "2"}, 2, "--min-runners"},
		{"no jobs", []string{"--jobs", "0"}, 2, "--jobs: must be >= 1"},
		{"argument", []string{"now"}, 2, `unexpected argument "now"`},
		{"help", []string{"--help"}, 0, "Usage: nomad-gha-scaleset-demo"},
		{"version", []string{"--version"}, 0, "nomad-gha-scaleset-demo v"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			must.Eq(t, tc.code, Main(t.Context(), tc.args, &out, &errb), must.Sprint(out.String()+errb.String()))
			must.StrContains(t, out.String()+errb.String(), tc.want)
		})
	}
}

func TestMain_serviceBinaryNotFound(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	var out, errb bytes.Buffer
	must.Eq(t, 1, Main(t.Context(), []string{"--bin-dir", t.TempDir()}, &out, &errb))
	must.StrContains(t, errb.String(), `binary "nomad-gha-scaleset" not found in`)
	must.StrContains(t, errb.String(), "run make build")
}
