// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
)

// labelSource is "warm" or "cold" on nomad_gha_scaleset_runner_starts_total.
const labelSource = "source"

// warmPools exports the warm pools of the backends that have one, read at
// scrape time (the backend owns the numbers; nothing is copied on a timer).
type warmPools struct {
	ready, size, starts, templates *prometheus.Desc

	mu   sync.Mutex
	srcs map[[2]string]func() backend.WarmPoolStats // by name, backend
}

func newWarmPools() *warmPools {
	l := []string{labelName, labelBackend}
	return &warmPools{
		ready:     prometheus.NewDesc("nomad_gha_scaleset_warm_pool_ready", "Warm machines booted and unclaimed.", l, nil),
		size:      prometheus.NewDesc("nomad_gha_scaleset_warm_pool_size", "Warm machines the pool keeps (pool_size).", l, nil),
		starts:    prometheus.NewDesc("nomad_gha_scaleset_runner_starts_total", "Runner starts by source: warm (claimed a booted machine), resumed (a suspended template's clone) or cold (booted one first).", append(l, labelSource), nil),
		templates: prometheus.NewDesc("nomad_gha_scaleset_warm_pool_templates_ready", "Suspended templates ready to be cloned and resumed (tart mode = \"resume\"; one per slot when all are built).", l, nil),
		srcs:      map[[2]string]func() backend.WarmPoolStats{},
	}
}

func (w *warmPools) Describe(ch chan<- *prometheus.Desc) {
	ch <- w.ready
	ch <- w.size
	ch <- w.starts
	ch <- w.templates
}

func (w *warmPools) Collect(ch chan<- prometheus.Metric) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, f := range w.srcs {
		st := f()
		ch <- prometheus.MustNewConstMetric(w.ready, prometheus.GaugeValue, float64(st.Ready), k[0], k[1])
		ch <- prometheus.MustNewConstMetric(w.size, prometheus.GaugeValue, float64(st.Size), k[0], k[1])
		ch <- prometheus.MustNewConstMetric(w.starts, prometheus.CounterValue, float64(st.WarmStarts), k[0], k[1], "warm")
		ch <- prometheus.MustNewConstMetric(w.starts, prometheus.CounterValue, float64(st.ResumedStarts), k[0], k[1], "resumed")
		ch <- prometheus.MustNewConstMetric(w.starts, prometheus.CounterValue, float64(st.ColdStarts), k[0], k[1], "cold")
		ch <- prometheus.MustNewConstMetric(w.templates, prometheus.GaugeValue, float64(st.TemplatesReady), k[0], k[1])
	}
}

// ObserveWarmPool exports the scale set's warm pool until the returned
// function is called (when its backend shuts down).
func (s *ScaleSet) ObserveWarmPool(wp backend.WarmPool) (stop func()) {
	key := [2]string{s.name, s.backend}
	w := s.m.warm
	w.mu.Lock()
	w.srcs[key] = wp.WarmPoolStats
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		delete(w.srcs, key)
		w.mu.Unlock()
	}
}
