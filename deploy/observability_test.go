// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package deploy_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/shoenig/test/must"
	"go.yaml.in/yaml/v2"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/sim/demo"
)

func TestPromQL_parse(t *testing.T) {
	q, err := parsePromQL(`histogram_quantile(0.95, sum by (le, backend) (rate(x_bucket{name=~"$scale_set", op="a"}[$__rate_interval]))) > 3 and on (name) y`)
	must.NoError(t, err)
	must.Eq(t, []selector{{metric: "x_bucket", matchers: []matcher{{"name", "=~", "$scale_set"}, {"op", "=", "a"}}}, {metric: "y"}}, q.selectors)
	must.Eq(t, []string{"le", "backend", "name"}, q.grouping)
	_, err = parsePromQL(`x{name="a}`)
	must.Error(t, err)
}

// dashboardQueries returns every PromQL expression of the dashboard and
// the metric/label pairs of its label_values() variables.
func dashboardQueries(t *testing.T) (exprs []string, labelValues [][2]string) {
	t.Helper()
	var d struct {
		Panels []struct {
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	must.NoError(t, json.Unmarshal(readDeploy(t, "grafana/nomad-gha-scaleset.json"), &d))
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		must.SliceNotEmpty(t, p.Targets)
		for _, tg := range p.Targets {
			must.NotEq(t, "", tg.Expr)
			exprs = append(exprs, tg.Expr)
		}
	}
	re := regexp.MustCompile(`^label_values\((\w+), *(\w+)\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := re.FindStringSubmatch(v.Definition)
		must.SliceLen(t, 3, m, must.Sprintf("variable query %q", v.Definition))
		labelValues = append(labelValues, [2]string{m[1], m[2]})
	}
	return exprs, labelValues
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func alertRules(t *testing.T) []rule {
	t.Helper()
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []rule `yaml:"rules"`
		} `yaml:"groups"`
	}
	must.NoError(t, yaml.UnmarshalStrict(readDeploy(t, "prometheus/nomad-gha-scaleset.rules.yml"), &f))
	must.SliceNotEmpty(t, f.Groups)
	var out []rule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

func TestRules_shape(t *testing.T) {
	rules := alertRules(t)
	var names []string
	for _, r := range rules {
		must.NotEq(t, "", r.Alert)
		must.NotEq(t, "", r.Expr)
		_, err := time.ParseDuration(r.For)
		must.NoError(t, err, must.Sprintf("%s: for %q", r.Alert, r.For))
		must.MapContainsKey(t, r.Labels, "severity")
		must.MapContainsKey(t, r.Annotations, "summary")
		names = append(names, r.Alert)
	}
	// What the issue asks for.
	for _, want := range []string{"NomadGHAScaleSetRunnersFailingToStart", "NomadGHAScaleSetNotReady", "NomadGHAScaleSetJobsWaiting", "NomadGHAScaleSetWarmPoolEmpty", "NomadGHAScaleSetRunnersWaitingForCapacity"} {
		must.SliceContains(t, names, want)
	}
}

// scrapedSeries maps a metric family to the label sets of its samples.
type scrapedSeries map[string][]map[string]string

func parseScrape(t *testing.T, body string) scrapedSeries {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	must.NoError(t, err)
	out := scrapedSeries{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			out[name] = append(out[name], l)
			if f.GetType() == dto.MetricType_HISTOGRAM {
				// the _bucket, _sum and _count series a query names
				lb := map[string]string{"le": ""}
				for k, v := range l {
					lb[k] = v
				}
				out[name+"_bucket"] = append(out[name+"_bucket"], lb)
				out[name+"_sum"] = append(out[name+"_sum"], l)
				out[name+"_count"] = append(out[name+"_count"], l)
			}
		}
	}
	return out
}

// checkQuery: every selector's metric exists, every matcher's label exists
// on it (and, for = and =~ over plain alternatives, each value exists),
// and every grouping label exists on one of the query's metrics.
func checkQuery(t *testing.T, where, expr string, got scrapedSeries) {
	t.Helper()
	q, err := parsePromQL(expr)
	must.NoError(t, err, must.Sprintf("%s: %s", where, expr))
	must.SliceNotEmpty(t, q.selectors, must.Sprintf("%s: no series in %s", where, expr))
	hasLabel := func(metric, label string) bool {
		for _, l := range got[metric] {
			if _, ok := l[label]; ok {
				return true
			}
		}
		return false
	}
	for _, s := range q.selectors {
		series, ok := got[s.metric]
		must.True(t, ok, must.Sprintf("%s: series %s (in %s) is not exported", where, s.metric, expr))
		for _, m := range s.matchers {
			must.True(t, hasLabel(s.metric, m.label), must.Sprintf("%s: %s has no label %q", where, s.metric, m.label))
			if (m.op != "=" && m.op != "=~") || strings.ContainsAny(m.value, "$.*+?[]()^\\") {
				continue
			}
			for _, v := range strings.Split(m.value, "|") {
				found := slices.ContainsFunc(series, func(l map[string]string) bool { return l[m.label] == v })
				must.True(t, found, must.Sprintf("%s: no %s{%s=%q} series", where, s.metric, m.label, v))
			}
		}
	}
	for _, g := range q.grouping {
		found := slices.ContainsFunc(q.selectors, func(s selector) bool { return hasLabel(s.metric, g) })
		must.True(t, found, must.Sprintf("%s: grouping label %q is on none of the series of %s", where, g, expr))
	}
}

// TestObservability_seriesExist runs the demo (the service, the Actions
// simulator and a burst of jobs on the tart backend over faketart),
// scrapes /metrics before the service stops, and checks every series and
// label the Grafana dashboard and the alerting rules query.
func TestObservability_seriesExist(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo")
	}
	bin := filepath.Dir(testutil.BuildBinary(t, "./sim/cmd/fakerunner"))
	testutil.BuildBinary(t, "./sim/cmd/faketart")
	var body string
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	sum, err := demo.Run(ctx, demo.Options{
		Backend: demo.BackendTart, Jobs: 6, MaxRunners: 2, JobDuration: 50 * time.Millisecond,
		Timeout: 3 * time.Minute, BinDir: bin, Progress: -1,
		AfterBurst: func(url string) {
			resp, err := http.Get(url)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			body = string(b)
		},
	})
	must.NoError(t, err)
	must.True(t, sum.OK(), must.Sprintf("%+v", sum))
	must.NotEq(t, "", body, must.Sprint("no scrape"))
	got := parseScrape(t, body)

	exprs, vars := dashboardQueries(t)
	for _, e := range exprs {
		checkQuery(t, "dashboard", e, got)
	}
	for _, v := range vars {
		checkQuery(t, "dashboard variable", v[0]+`{`+v[1]+`=~".+"}`, got)
	}
	for _, r := range alertRules(t) {
		checkQuery(t, "rule "+r.Alert, r.Expr, got)
	}
	// The series, named: warm pool hits against cold starts.
	must.StrContains(t, body, `nomad_gha_scaleset_runner_starts_total{backend="tart",name="macos",source="cold"} 6`)
	// Runners waiting for capacity: the dashboard and the rules query the
	// gauge (so checkQuery above proved it exported with their labels);
	// the tart backend never queues, so it is the zero-initialised 0.
	const waiting = "nomad_gha_scaleset_runners_waiting_for_capacity"
	must.True(t, slices.ContainsFunc(exprs, func(e string) bool { return strings.Contains(e, waiting) }), must.Sprint("no dashboard panel for runners waiting for capacity"))
	must.True(t, slices.ContainsFunc(alertRules(t), func(r rule) bool { return strings.Contains(r.Expr, waiting) }), must.Sprint("no alert on runners waiting for capacity"))
	must.StrContains(t, body, "\n"+waiting+`{backend="tart",name="macos"} 0`+"\n")
	if os.Getenv("NOMAD_TART_PRINT_SCRAPE") != "" {
		t.Log(body)
	}
}
