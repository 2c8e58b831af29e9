// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package scripts_test

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.CleanupBuilds() // the binaries TestBinaries_helpAndVersion built
	os.Exit(code)
}

// TestBinaries_helpAndVersion builds every binary, the shipped ones and
// the simulators', and runs it as a user would to learn what it is:
// --help and -h print its usage on stdout, --version its version, all
// with exit code 0 and nothing on stderr.
func TestBinaries_helpAndVersion(t *testing.T) {
	cases := []struct {
		pkg string
		// args run before --help (a subcommand); want is in the help.
		args []string
		want string
		// version is what --version prints; empty: no --version case.
		version string
	}{
		{"./cmd/nomad-gha-scaleset", nil, "Usage: nomad-gha-scaleset [--version] [--help] <command>", "nomad-gha-scaleset v"},
		{"./cmd/nomad-gha-scaleset", []string{"run"}, "Usage: nomad-gha-scaleset run --config FILE", ""},
		{"./cmd/nomad-gha-scaleset", []string{"check"}, "Usage: nomad-gha-scaleset check --config FILE", ""},
		{"./cmd/nomad-driver-tart", nil, "nomad-driver-tart is a Nomad task driver plugin", "nomad-driver-tart v"},
		{"./cmd/nomad-device-tart", nil, "nomad-device-tart is a Nomad device plugin", "nomad-device-tart v"},
		{"./sim/cmd/nomad-gha-scaleset-demo", nil, "Usage: nomad-gha-scaleset-demo [flags]", "nomad-gha-scaleset-demo v"},
		{"./sim/cmd/actionssim", nil, "-long-poll-timeout", "actionssim v"},
		{"./sim/cmd/fakerunner", nil, "-jitconfig", "fakerunner v"},
		{"./sim/cmd/jitprobe", nil, "Usage: jitprobe", "jitprobe v"},
		// faketart answers as tart does: its version is tart's
		{"./sim/cmd/faketart", nil, "USAGE: tart <subcommand>", "2."},
	}
	for _, tc := range cases {
		name := strings.TrimPrefix(tc.pkg, "./")
		if len(tc.args) > 0 {
			name += "_" + strings.Join(tc.args, "_")
		}
		t.Run(name, func(t *testing.T) {
			bin := testutil.BuildBinary(t, tc.pkg)
			for _, flag := range []string{"--help", "-h"} {
				out := runOK(t, bin, append(tc.args, flag)...)
				must.StrContains(t, out, tc.want)
			}
			if tc.version != "" {
				must.StrHasPrefix(t, tc.version, runOK(t, bin, "--version"))
			}
		})
	}
}

// runOK runs bin with args and returns its stdout, failing unless it
// exits 0 with nothing on stderr.
func runOK(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.WaitDelay = 10 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	must.NoError(t, err, must.Sprintf("%s %s: stderr %q", bin, strings.Join(args, " "), errb.String()))
	must.Eq(t, "", errb.String(), must.Sprintf("%s %s wrote on stderr", bin, strings.Join(args, " ")))
	return out.String()
}
