// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/actions/scaleset"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/scaleset/scaler"
)

func TestScope(t *testing.T) {
	cases := []struct{ url, ent, org, repo string }{
		{"https://github.com/acme", "", "acme", ""},
		{"https://github.com/acme/app/", "", "acme", "app"},
		{"https://github.com/enterprises/big", "big", "", ""},
		{"https://github.com", "", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.url, func(t *testing.T) {
			e, o, r := scope(tc.url)
			must.Eq(t, []string{tc.ent, tc.org, tc.repo}, []string{e, o, r})
		})
	}
}

func TestMetrics_Handler_exposesARCNames(t *testing.T) {
	m := New()
	s := m.ScaleSet("linux", "https://github.com/acme", "docker", 1, 10)
	s.RecordStatistics(&scaleset.RunnerScaleSetStatistic{TotalAssignedJobs: 3, TotalRunningJobs: 2, TotalRegisteredRunners: 4, TotalBusyRunners: 2, TotalIdleRunners: 2})
	s.RecordDesiredRunners(4)
	now := time.Now()
	base := scaleset.JobMessageBase{OwnerName: "acme", RepositoryName: "app", JobDisplayName: "build", EventName: "push", ScaleSetAssignTime: now, RunnerAssignTime: now.Add(2 * time.Second), FinishTime: now.Add(5 * time.Second)}
	s.RecordJobStarted(&scaleset.JobStarted{JobMessageBase: base})
	s.RecordJobCompleted(&scaleset.JobCompleted{JobMessageBase: base, Result: "succeeded"})
	s.RunnerStarted(time.Second, "")
	s.RunnerStarted(time.Second, "resumed")
	s.RunnerStarted(2*time.Second, "resumed")
	s.RunnerOnline(2 * time.Second)
	s.BackendError("start")
	s.RunnerRemoved("surplus")
	s.ListenerRestarted()
	s.SessionConflict()
	s.SetRunnerCounts(scaler.Counts{Idle: 2, Busy: 2})

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	out := string(body)
	for _, want := range []string{
		`gha_assigned_jobs{enterprise="",name="linux",organization="acme",repository=""} 3`,
		`gha_running_jobs{`, `gha_registered_runners{`, `gha_busy_runners{`, `gha_idle_runners{`,
		`gha_desired_runners{enterprise="",name="linux",organization="acme",repository=""} 4`,
		`gha_min_runners{`, `gha_max_runners{`,
		`gha_started_jobs_total{enterprise="",event_name="push",job_name="build",job_workflow_ref="",name="linux",organization="acme",repository="app"} 1`,
		`gha_completed_jobs_total{enterprise="",event_name="push",job_name="build",job_result="succeeded"`,
		`gha_job_startup_duration_seconds_sum{`, `gha_job_execution_duration_seconds_count{`,
		`nomad_gha_scaleset_runner_start_duration_seconds_count{backend="docker",name="linux",path="unknown"} 1`,
		`nomad_gha_scaleset_runner_start_duration_seconds_count{backend="docker",name="linux",path="resumed"} 2`,
		`nomad_gha_scaleset_runner_online_duration_seconds_count{backend="docker",name="linux"} 1`,
		`nomad_gha_scaleset_backend_errors_total{backend="docker",name="linux",operation="start"} 1`,
		`nomad_gha_scaleset_runners_removed_total{backend="docker",name="linux",reason="surplus"} 1`,
		`nomad_gha_scaleset_listener_restarts_total{name="linux"} 1`,
		`nomad_gha_scaleset_session_conflicts_total{name="linux"} 1`,
		`nomad_gha_scaleset_runners{backend="docker",name="linux",phase="busy"} 2`,
		`nomad_gha_scaleset_build_info{`,
	} {
		must.True(t, strings.Contains(out, want), must.Sprintf("missing %q", want))
	}
}

// TestMetrics_ScaleSet_zeroInitialised: a scale set's runner gauges exist
// at 0 before the scaler reports any count, so the dashboard's capacity
// panel and the waiting-for-capacity alert see 0 rather than no data; the
// first count then sets them.
func TestMetrics_ScaleSet_zeroInitialised(t *testing.T) {
	scrape := func(m *Metrics) string {
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		return rec.Body.String()
	}
	m := New()
	s := m.ScaleSet("macos", "https://github.com/acme", "nomad", 0, 8)
	m.ScaleSet("linux", "https://github.com/acme", "docker", 0, 4)
	out := scrape(m)
	for _, set := range [][2]string{{"nomad", "macos"}, {"docker", "linux"}} {
		l := `backend="` + set[0] + `",name="` + set[1] + `"`
		must.StrContains(t, out, "\nnomad_gha_scaleset_runners_waiting_for_capacity{"+l+"} 0\n")
		for _, p := range []string{"starting", "pending", "idle", "busy", "finishing"} {
			must.StrContains(t, out, "\nnomad_gha_scaleset_runners{"+l+`,phase="`+p+`"} 0`+"\n")
		}
	}

	s.SetRunnerCounts(scaler.Counts{Pending: 3, WaitingForCapacity: 2, Finishing: 1})
	out = scrape(m)
	must.StrContains(t, out, "\nnomad_gha_scaleset_runners_waiting_for_capacity{backend=\"nomad\",name=\"macos\"} 2\n")
	must.StrContains(t, out, "\nnomad_gha_scaleset_runners{backend=\"nomad\",name=\"macos\",phase=\"pending\"} 3\n")
	must.StrContains(t, out, "\nnomad_gha_scaleset_runners{backend=\"nomad\",name=\"macos\",phase=\"finishing\"} 1\n")
	must.StrContains(t, out, "\nnomad_gha_scaleset_runners_waiting_for_capacity{backend=\"docker\",name=\"linux\"} 0\n")
}
