// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
)

type fakePool struct{ st backend.WarmPoolStats }

func (f *fakePool) WarmPoolStats() backend.WarmPoolStats { return f.st }

func scrapeText(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	b, err := io.ReadAll(rec.Result().Body)
	must.NoError(t, err)
	return string(b)
}

func TestScaleSet_warmPoolReadinessAndZeroCounters(t *testing.T) {
	m := New()
	s := m.ScaleSet("macos", "https://github.com/acme", "tart", 0, 2)
	out := scrapeText(t, m)
	// counters exist at 0 before anything happened
	must.StrContains(t, out, `nomad_gha_scaleset_backend_errors_total{backend="tart",name="macos",operation="start"} 0`)
	must.StrContains(t, out, `nomad_gha_scaleset_runners_removed_total{backend="tart",name="macos",reason="never_online"} 0`)
	must.StrContains(t, out, `nomad_gha_scaleset_listener_restarts_total{name="macos"} 0`)
	must.StrContains(t, out, `nomad_gha_scaleset_scale_set_ready{backend="tart",name="macos"} 0`)
	must.StrNotContains(t, out, "nomad_gha_scaleset_warm_pool_ready{")

	s.SetReady(true)
	pool := &fakePool{st: backend.WarmPoolStats{Size: 2, Ready: 1, WarmStarts: 5, ResumedStarts: 7, ColdStarts: 2, TemplatesReady: 2}}
	stop := s.ObserveWarmPool(pool)
	out = scrapeText(t, m)
	must.StrContains(t, out, `nomad_gha_scaleset_scale_set_ready{backend="tart",name="macos"} 1`)
	must.StrContains(t, out, `nomad_gha_scaleset_warm_pool_ready{backend="tart",name="macos"} 1`)
	must.StrContains(t, out, `nomad_gha_scaleset_warm_pool_size{backend="tart",name="macos"} 2`)
	must.StrContains(t, out, `nomad_gha_scaleset_runner_starts_total{backend="tart",name="macos",source="warm"} 5`)
	must.StrContains(t, out, `nomad_gha_scaleset_runner_starts_total{backend="tart",name="macos",source="cold"} 2`)
	must.StrContains(t, out, `nomad_gha_scaleset_runner_starts_total{backend="tart",name="macos",source="resumed"} 7`)
	must.StrContains(t, out, `nomad_gha_scaleset_warm_pool_templates_ready{backend="tart",name="macos"} 2`)

	// read at scrape time
	pool.st.Ready = 0
	must.StrContains(t, scrapeText(t, m), `nomad_gha_scaleset_warm_pool_ready{backend="tart",name="macos"} 0`)

	stop()
	must.StrNotContains(t, scrapeText(t, m), "nomad_gha_scaleset_warm_pool_ready{")
}
