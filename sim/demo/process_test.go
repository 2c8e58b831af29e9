// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package demo

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/tartbackend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/config"
	"github.com/tartnomad/nomad-driver-tart/scaleset/service"
)

// TestMain_process runs the program as `make demo` does: the real
// nomad-gha-scaleset binary as a child process with a generated config
// file, on each backend; then nothing of the run is left: no scratch
// directory, no process naming it (the service, tart supervisors, faketart
// VMs), no container.
func TestMain_process(t *testing.T) {
	for _, backend := range []string{BackendTart, BackendDocker} {
		t.Run(backend, func(t *testing.T) {
			if backend == BackendDocker {
				testutil.DockerClient(t) // skips (fails in CI) without an engine
			}
			svc := testutil.BuildBinary(t, "./cmd/nomad-gha-scaleset")
			var out, errb testutil.SyncBuffer
			code := Main(t.Context(), []string{
				"--backend", backend, "--jobs", "6", "--max-runners", "3", "--job-duration", "100ms",
				"--bin-dir", binDir(t), "--service-binary", svc, "--progress", "500ms", "--timeout", "2m",
			}, &out, &errb)
			must.Eq(t, 0, code, must.Sprint(out.String(), errb.String()))
			must.StrContains(t, out.String(), "==> started "+svc+" run --config ")
			must.StrContains(t, out.String(), "jobs done:               6/6")
			must.StrContains(t, out.String(), "runners left behind:     0")
			must.StrContains(t, out.String(), "result:                  OK")

			m := regexp.MustCompile(`run --config (\S+)/config\.hcl .*\(pid (\d+)\)`).FindStringSubmatch(out.String())
			must.SliceLen(t, 3, m, must.Sprint(out.String()))
			scratch := m[1]
			pid, err := strconv.Atoi(m[2])
			must.NoError(t, err)
			must.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, must.Sprint("the service process outlived the demo"))
			_, err = os.Stat(scratch)
			must.True(t, os.IsNotExist(err), must.Sprintf("scratch directory %s left: %v", scratch, err))
			must.SliceEmpty(t, processesNaming(t, scratch))
			if backend == BackendDocker {
				cli := testutil.DockerClient(t)
				must.SliceEmpty(t, testutil.ContainersWithLabels(t, cli, map[string]string{"io.github.tartnomad.dockerexec.instance": filepath.Base(scratch)}))
			}
		})
	}
}

// processesNaming lists the processes whose command line holds s.
func processesNaming(t *testing.T, s string) []string {
	t.Helper()
	cmdlines, err := filepath.Glob("/proc/[0-9]*/cmdline")
	must.NoError(t, err)
	var found []string
	for _, p := range cmdlines {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), s) {
			found = append(found, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return found
}

// TestRenderConfig_roundTrip: the file the program writes reads back, as
// the service reads it, into the configuration the in-process service gets.
func TestRenderConfig_roundTrip(t *testing.T) {
	home := t.TempDir()
	for _, env := range []*backendEnv{
		{kind: BackendDocker, docker: dockerBlock("demo-runner:1", "demo-x")},
		{kind: BackendTart, tart: &tartbackend.Config{
			TartPath: filepath.Join(home, "faketart"), TartHome: home, Image: tartBase, MaxVMs: 6,
			RunnerCommand: []string{"/bin/fakerunner", "--jitconfig", "-"}, StartTimeout: "2m", StopTimeout: "5s", MACSeed: "demo",
		}},
	} {
		t.Run(env.kind, func(t *testing.T) {
			want, err := serviceConfig("http://127.0.0.1:1/octo-org", "linux", filepath.Join(t.TempDir(), "state"), env, Options{MaxRunners: 4, MinRunners: 1})
			must.NoError(t, err)
			src, err := renderConfig(want)
			must.NoError(t, err)
			got, err := config.Parse(src, "config.hcl")
			must.NoError(t, err, must.Sprint(string(src)))
			got.GitHubToken = demoToken
			must.NoError(t, got.Validate(), must.Sprint(string(src)))
			must.NoError(t, service.ValidateBackends(got), must.Sprint(string(src)))
			// the backend block as the service decodes it
			wantBlock, err := service.DecodeBackend(want.ScaleSets[0])
			must.NoError(t, err)
			gotBlock, err := service.DecodeBackend(got.ScaleSets[0])
			must.NoError(t, err)
			must.Eq(t, wantBlock, gotBlock, must.Sprint(string(src)))
			// and the rest (the block itself: written text against the demo's struct)
			for _, c := range []*config.Config{want, got} {
				c.ScaleSets[0].Docker, c.ScaleSets[0].Tart = nil, nil
			}
			must.Eq(t, want, got, must.Sprint(string(src)))
			must.StrNotContains(t, string(src), demoToken)
		})
	}
}

func TestParseRunnerCounts(t *testing.T) {
	scrape := `# HELP nomad_gha_scaleset_runners Runners this service tracks, by phase.
# TYPE nomad_gha_scaleset_runners gauge
nomad_gha_scaleset_runners{backend="tart",name="macos",phase="busy"} 3
nomad_gha_scaleset_runners{backend="tart",name="macos",phase="finishing"} 1
nomad_gha_scaleset_runners{backend="tart",name="macos",phase="idle"} 2
nomad_gha_scaleset_runners{backend="tart",name="macos",phase="pending"} 4
nomad_gha_scaleset_runners{backend="tart",name="macos",phase="starting"} 5
nomad_gha_scaleset_runners_waiting_for_capacity{backend="tart",name="macos"} 7
`
	c, err := parseRunnerCounts(strings.NewReader(scrape))
	must.NoError(t, err)
	must.Eq(t, runnerCounts{starting: 9, idle: 2, busy: 3, finishing: 1}, c)
	_, err = parseRunnerCounts(strings.NewReader(`nomad_gha_scaleset_runners{phase="busy"} many` + "\n"))
	must.ErrorContains(t, err, "failed to parse")
}

// TestMain_serviceFails: a service binary that exits at once (a bad
// config, a port taken) ends the demo at once with its output, not after
// --timeout.
func TestMain_serviceFails(t *testing.T) {
	svc := filepath.Join(t.TempDir(), "nomad-gha-scaleset")
	must.NoError(t, os.WriteFile(svc, []byte("#!/bin/sh\necho 'run: invalid configuration' >&2\nexit 1\n"), 0o755))
	var out, errb testutil.SyncBuffer
	began := time.Now()
	code := Main(t.Context(), []string{"--backend", "tart", "--bin-dir", binDir(t), "--service-binary", svc, "--timeout", "2m"}, &out, &errb)
	must.Eq(t, 1, code)
	must.Less(t, time.Minute, time.Since(began))
	must.StrContains(t, errb.String(), "the service stopped before it opened its session")
	must.StrContains(t, errb.String(), "exit status 1")
	must.StrContains(t, errb.String(), "run: invalid configuration")
}
