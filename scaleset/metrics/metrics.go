// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package metrics holds the scale-set service's Prometheus metrics: the
// gha_* series that actions-runner-controller's listener exports (same
// names, same labels, so existing dashboards work) and this service's own
// nomad_gha_scaleset_* series (runner start latency per backend, backend
// errors, removals, listener restarts, readiness, warm pool hits against
// cold starts).
//
// Each Metrics owns its own registry (no global state), so tests and
// several services in one process do not collide. Label values never carry
// secrets: only scale set names, repository coordinates, job names and
// backend kinds.
package metrics

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/actions/scaleset"
	"github.com/actions/scaleset/listener"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tartnomad/nomad-driver-tart/scaleset/scaler"
	"github.com/tartnomad/nomad-driver-tart/version"
)

// Label keys, as ARC's listener names them.
const (
	labelName         = "name"
	labelEnterprise   = "enterprise"
	labelOrganization = "organization"
	labelRepository   = "repository"
	labelJobName      = "job_name"
	labelWorkflowRef  = "job_workflow_ref"
	labelEventName    = "event_name"
	labelJobResult    = "job_result"
	labelBackend      = "backend"
	labelOperation    = "operation"
	labelReason       = "reason"
	labelPhase        = "phase"
	labelPath         = "path"
)

var (
	scaleSetLabels     = []string{labelName, labelEnterprise, labelOrganization, labelRepository}
	jobLabels          = []string{labelName, labelEnterprise, labelOrganization, labelRepository, labelJobName, labelWorkflowRef, labelEventName}
	completedJobLabels = append(append([]string{}, jobLabels...), labelJobResult)

	// durationBuckets span a warm container (sub-second) to a cold macOS
	// VM boot plus a long queue (an hour).
	durationBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 900, 1800, 3600}
)

// Metrics is the service's metric set and its registry.
type Metrics struct {
	reg *prometheus.Registry

	assignedJobs, runningJobs, registeredRunners, busyRunners, idleRunners *prometheus.GaugeVec
	availableJobs, acquiredJobs, desiredRunners, minRunners, maxRunners    *prometheus.GaugeVec
	startedJobs, completedJobs                                             *prometheus.CounterVec
	jobStartup, jobExecution                                               *prometheus.HistogramVec

	runnerStart, runnerOnline *prometheus.HistogramVec
	backendErrors, removed    *prometheus.CounterVec
	listenerRestarts          *prometheus.CounterVec
	sessionConflicts          *prometheus.CounterVec
	sessionOwner              *prometheus.GaugeVec
	backendHealthy            *prometheus.GaugeVec
	staleMessages             *prometheus.CounterVec
	runners                   *prometheus.GaugeVec
	ready                     *prometheus.GaugeVec
	warm                      *warmPools
	waitingForCapacity        *prometheus.GaugeVec
}

func gauge(name, help string, labels []string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
}

func counter(name, help string, labels []string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

func histogram(name, help string, labels []string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: durationBuckets}, labels)
}

// New returns a Metrics with every series registered, plus Go runtime,
// process and build-info collectors.
func New() *Metrics {
	ownLabels := []string{labelName, labelBackend}
	m := &Metrics{
		reg:               prometheus.NewRegistry(),
		assignedJobs:      gauge("gha_assigned_jobs", "Number of jobs assigned to this scale set.", scaleSetLabels),
		runningJobs:       gauge("gha_running_jobs", "Number of jobs running (or about to run).", scaleSetLabels),
		registeredRunners: gauge("gha_registered_runners", "Number of runners registered by the scale set.", scaleSetLabels),
		busyRunners:       gauge("gha_busy_runners", "Number of registered runners running a job.", scaleSetLabels),
		idleRunners:       gauge("gha_idle_runners", "Number of registered runners not running a job.", scaleSetLabels),
		availableJobs:     gauge("gha_available_jobs", "Number of jobs with runs-on matching the scale set, not yet acquired.", scaleSetLabels),
		acquiredJobs:      gauge("gha_acquired_jobs", "Number of jobs acquired by the scale set.", scaleSetLabels),
		desiredRunners:    gauge("gha_desired_runners", "Number of runners desired by the scale set.", scaleSetLabels),
		minRunners:        gauge("gha_min_runners", "Minimum number of runners.", scaleSetLabels),
		maxRunners:        gauge("gha_max_runners", "Maximum number of runners.", scaleSetLabels),
		startedJobs:       counter("gha_started_jobs_total", "Total number of jobs started.", jobLabels),
		completedJobs:     counter("gha_completed_jobs_total", "Total number of jobs completed.", completedJobLabels),
		jobStartup:        histogram("gha_job_startup_duration_seconds", "Seconds from the scale set assigning a job to a runner taking it.", jobLabels),
		jobExecution:      histogram("gha_job_execution_duration_seconds", "Seconds a job ran, from runner assignment to finish.", completedJobLabels),

		runnerStart:      histogram("nomad_gha_scaleset_runner_start_duration_seconds", "Seconds the backend took to accept a runner start, by start path (warm, resumed, cold; unknown when the backend does not say).", []string{labelName, labelBackend, labelPath}),
		runnerOnline:     histogram("nomad_gha_scaleset_runner_online_duration_seconds", "Seconds from requesting a runner to seeing it running.", ownLabels),
		backendErrors:    counter("nomad_gha_scaleset_backend_errors_total", "Failed backend or GitHub operations, by operation.", []string{labelName, labelBackend, labelOperation}),
		removed:          counter("nomad_gha_scaleset_runners_removed_total", "Runners removed, by reason.", []string{labelName, labelBackend, labelReason}),
		listenerRestarts: counter("nomad_gha_scaleset_listener_restarts_total", "Times the message listener ended with an error and was restarted.", []string{labelName}),
		sessionConflicts: counter("nomad_gha_scaleset_session_conflicts_total", "Session creations refused because another listener holds the session (409).", []string{labelName}),
		sessionOwner:     gauge("nomad_gha_scaleset_session_owner", "1 while this process holds the scale set's message session and may change its runners; 0 while it waits read-only.", []string{labelName}),
		backendHealthy:   gauge("nomad_gha_scaleset_backend_healthy", "1 while the backend answers; 0 while it fails (the listener then offers GitHub no capacity).", []string{labelName, labelBackend}),
		staleMessages:    counter("nomad_gha_scaleset_stale_messages_total", "Job messages applied to no runner: for an earlier runner or process, redelivered or duplicated (kind: job_started, job_completed).", []string{labelName, labelBackend, "kind"}),
		runners:          gauge("nomad_gha_scaleset_runners", "Runners this service tracks, by phase.", []string{labelName, labelBackend, labelPhase}),
		ready:            gauge("nomad_gha_scaleset_scale_set_ready", "1 while the scale set's listener holds a message session and takes jobs, else 0.", []string{labelName, labelBackend}),
		warm:             newWarmPools(),
		waitingForCapacity: gauge("nomad_gha_scaleset_runners_waiting_for_capacity",
			"Pending runners the backend has queued until capacity frees (e.g. every Mac's VM slots taken), not failed.", []string{labelName, labelBackend}),
	}
	m.reg.MustRegister(
		m.assignedJobs, m.runningJobs, m.registeredRunners, m.busyRunners, m.idleRunners,
		m.availableJobs, m.acquiredJobs, m.desiredRunners, m.minRunners, m.maxRunners,
		m.startedJobs, m.completedJobs, m.jobStartup, m.jobExecution,
		m.runnerStart, m.runnerOnline, m.backendErrors, m.removed, m.listenerRestarts,
		m.sessionConflicts, m.sessionOwner, m.backendHealthy, m.staleMessages, m.runners, m.ready, m.warm, m.waitingForCapacity,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	info := gauge("nomad_gha_scaleset_build_info", "Build information; the value is always 1.", []string{"version"})
	info.WithLabelValues(version.String()).Set(1)
	m.reg.MustRegister(info)
	return m
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// ScaleSet returns the recorder of one scale set. configURL is the GitHub
// config URL; its enterprise/organization/repository become labels.
func (m *Metrics) ScaleSet(name, configURL, backendName string, minRunners, maxRunners int) *ScaleSet {
	ent, org, repo := scope(configURL)
	s := &ScaleSet{m: m, name: name, backend: backendName, ent: ent, org: org, repo: repo}
	s.base = prometheus.Labels{labelName: name, labelEnterprise: ent, labelOrganization: org, labelRepository: repo}
	m.minRunners.With(s.base).Set(float64(minRunners))
	m.maxRunners.With(s.base).Set(float64(maxRunners))
	// Counters exist at 0 from the start, so dashboards show 0 rather
	// than no data and increase() sees the first error.
	for _, op := range backendOperations {
		m.backendErrors.WithLabelValues(name, backendName, op)
	}
	for _, r := range removeReasons {
		m.removed.WithLabelValues(name, backendName, r)
	}
	for _, k := range staleMessageKinds {
		m.staleMessages.WithLabelValues(name, backendName, k)
	}
	m.sessionOwner.WithLabelValues(name).Set(0)
	m.backendHealthy.WithLabelValues(name, backendName).Set(1)
	m.listenerRestarts.WithLabelValues(name)
	m.sessionConflicts.WithLabelValues(name)
	m.ready.WithLabelValues(name, backendName).Set(0)
	// The runner gauges too: a scrape before the scaler's first count
	// (or a backend that never queues, like docker and tart) still shows
	// 0, so the capacity panel and alert see the series, not no data.
	for _, p := range runnerPhases {
		m.runners.WithLabelValues(name, backendName, p).Set(0)
	}
	m.waitingForCapacity.WithLabelValues(name, backendName).Set(0)
	return s
}

// backendOperations are the operation label values the scaler counts
// errors of; removeReasons the reason values of removals. Both are
// initialized at 0.
var (
	backendOperations = []string{"list", "generate_jit", "start", "remove", "github_remove", "github_lookup", "journal"}
	removeReasons     = []string{
		string(scaler.ReasonDone), string(scaler.ReasonFailed), string(scaler.ReasonSurplus),
		string(scaler.ReasonNeverOnline), string(scaler.ReasonVanished), string(scaler.ReasonShutdown),
		string(scaler.ReasonOrphaned),
	}
	// staleMessageKinds are the kind values of stale messages.
	staleMessageKinds = []string{"job_started", "job_completed"}
	// runnerPhases are the phase values of nomad_gha_scaleset_runners.
	runnerPhases = []string{
		string(scaler.PhaseStarting), string(scaler.PhasePending),
		string(scaler.PhaseIdle), string(scaler.PhaseBusy), phaseFinishing,
	}
)

// phaseFinishing groups the scaler's done, failed and removing runners.
const phaseFinishing = "finishing"

// SetReady sets nomad_gha_scaleset_scale_set_ready.
func (s *ScaleSet) SetReady(ready bool) {
	v := 0.0
	if ready {
		v = 1
	}
	s.m.ready.WithLabelValues(s.name, s.backend).Set(v)
}

// scope splits a config URL into enterprise, organization and repository
// the way the scaleset client does (1 segment: org; enterprises/x; o/r).
func scope(configURL string) (ent, org, repo string) {
	u, err := url.Parse(strings.Trim(configURL, "/"))
	if err != nil {
		return "", "", ""
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	switch {
	case len(parts) == 1:
		return "", parts[0], ""
	case len(parts) == 2 && strings.EqualFold(parts[0], "enterprises"):
		return parts[1], "", ""
	case len(parts) == 2:
		return "", parts[0], parts[1]
	}
	return "", "", ""
}

// ScaleSet records one scale set's metrics. It implements the listener's
// MetricsRecorder and the scaler's Recorder.
type ScaleSet struct {
	m              *Metrics
	name, backend  string
	ent, org, repo string
	base           prometheus.Labels
}

var (
	_ listener.MetricsRecorder = (*ScaleSet)(nil)
	_ scaler.Recorder          = (*ScaleSet)(nil)
)

// RecordStatistics sets the gha_* gauges from the service's statistics.
func (s *ScaleSet) RecordStatistics(st *scaleset.RunnerScaleSetStatistic) {
	if st == nil {
		return
	}
	s.m.assignedJobs.With(s.base).Set(float64(st.TotalAssignedJobs))
	s.m.runningJobs.With(s.base).Set(float64(st.TotalRunningJobs))
	s.m.registeredRunners.With(s.base).Set(float64(st.TotalRegisteredRunners))
	s.m.busyRunners.With(s.base).Set(float64(st.TotalBusyRunners))
	s.m.idleRunners.With(s.base).Set(float64(st.TotalIdleRunners))
	s.m.availableJobs.With(s.base).Set(float64(st.TotalAvailableJobs))
	s.m.acquiredJobs.With(s.base).Set(float64(st.TotalAcquiredJobs))
}

func (s *ScaleSet) jobLabels(b scaleset.JobMessageBase) prometheus.Labels {
	l := prometheus.Labels{
		labelName: s.name, labelEnterprise: s.ent, labelOrganization: b.OwnerName, labelRepository: b.RepositoryName,
		labelJobName: b.JobDisplayName, labelWorkflowRef: b.JobWorkflowRef, labelEventName: b.EventName,
	}
	if l[labelOrganization] == "" {
		l[labelOrganization] = s.org
	}
	if l[labelRepository] == "" {
		l[labelRepository] = s.repo
	}
	return l
}

// RecordJobStarted counts a started job and observes its startup time
// (scale-set assignment to runner assignment).
func (s *ScaleSet) RecordJobStarted(msg *scaleset.JobStarted) {
	if msg == nil {
		return
	}
	l := s.jobLabels(msg.JobMessageBase)
	s.m.startedJobs.With(l).Inc()
	if d := msg.RunnerAssignTime.Sub(msg.ScaleSetAssignTime); !msg.ScaleSetAssignTime.IsZero() && d >= 0 {
		s.m.jobStartup.With(l).Observe(d.Seconds())
	}
}

// RecordJobCompleted counts a completed job and observes its run time.
func (s *ScaleSet) RecordJobCompleted(msg *scaleset.JobCompleted) {
	if msg == nil {
		return
	}
	l := s.jobLabels(msg.JobMessageBase)
	l[labelJobResult] = msg.Result
	s.m.completedJobs.With(l).Inc()
	if d := msg.FinishTime.Sub(msg.RunnerAssignTime); !msg.RunnerAssignTime.IsZero() && !msg.FinishTime.IsZero() && d >= 0 {
		s.m.jobExecution.With(l).Observe(d.Seconds())
	}
}

// RecordDesiredRunners sets gha_desired_runners.
func (s *ScaleSet) RecordDesiredRunners(n int) { s.m.desiredRunners.With(s.base).Set(float64(n)) }

func (s *ScaleSet) own() prometheus.Labels {
	return prometheus.Labels{labelName: s.name, labelBackend: s.backend}
}

// RunnerStarted observes the backend's start latency under the start
// path the backend reported ("" is "unknown").
func (s *ScaleSet) RunnerStarted(took time.Duration, path string) {
	if path == "" {
		path = "unknown"
	}
	s.m.runnerStart.WithLabelValues(s.name, s.backend, path).Observe(took.Seconds())
}

// RunnerOnline observes request-to-running latency.
func (s *ScaleSet) RunnerOnline(took time.Duration) {
	s.m.runnerOnline.With(s.own()).Observe(took.Seconds())
}

// BackendError counts a failed operation.
func (s *ScaleSet) BackendError(op string) {
	s.m.backendErrors.WithLabelValues(s.name, s.backend, op).Inc()
}

// RunnerRemoved counts a removal by reason.
func (s *ScaleSet) RunnerRemoved(reason string) {
	s.m.removed.WithLabelValues(s.name, s.backend, reason).Inc()
}

// ListenerRestarted counts a listener restart.
func (s *ScaleSet) ListenerRestarted() { s.m.listenerRestarts.WithLabelValues(s.name).Inc() }

// SessionConflict counts a 409 on session creation.
func (s *ScaleSet) SessionConflict() { s.m.sessionConflicts.WithLabelValues(s.name).Inc() }

// SetSessionOwner sets whether this process holds the message session.
func (s *ScaleSet) SetSessionOwner(owner bool) {
	v := 0.0
	if owner {
		v = 1
	}
	s.m.sessionOwner.WithLabelValues(s.name).Set(v)
}

// SetBackendHealthy sets whether the backend answers.
func (s *ScaleSet) SetBackendHealthy(healthy bool) {
	v := 0.0
	if healthy {
		v = 1
	}
	s.m.backendHealthy.With(s.own()).Set(v)
}

// StaleMessage counts a job message applied to no runner.
func (s *ScaleSet) StaleMessage(kind string) {
	s.m.staleMessages.WithLabelValues(s.name, s.backend, kind).Inc()
}

// SetRunnerCounts sets the per-phase runner gauge from the scaler.
func (s *ScaleSet) SetRunnerCounts(c scaler.Counts) {
	for phase, n := range map[scaler.Phase]int{
		scaler.PhaseStarting: c.Starting, scaler.PhasePending: c.Pending,
		scaler.PhaseIdle: c.Idle, scaler.PhaseBusy: c.Busy, phaseFinishing: c.Finishing,
	} {
		s.m.runners.WithLabelValues(s.name, s.backend, string(phase)).Set(float64(n))
	}
	s.m.waitingForCapacity.WithLabelValues(s.name, s.backend).Set(float64(c.WaitingForCapacity))
}
