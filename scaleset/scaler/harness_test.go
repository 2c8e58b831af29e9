// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package scaler

import (
	"log/slog"
	"testing"

	"github.com/actions/scaleset"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
)

type harness struct {
	s     *Scaler
	gh    *fakeGitHub
	be    *fakeBackend
	clock *fakeClock
	rec   *countingRecorder
	logs  *testutil.SyncBuffer
}

func newHarness(t *testing.T, cfg Config, gh *fakeGitHub, be *fakeBackend) *harness {
	t.Helper()
	if cfg.ScaleSetID == 0 {
		cfg.ScaleSetID = 7
	}
	if cfg.NamePrefix == "" {
		cfg.NamePrefix = "linux"
	}
	if cfg.MaxRunners == 0 {
		cfg.MaxRunners = 10
	}
	if gh == nil {
		gh = newFakeGitHub(cfg.ScaleSetID)
	}
	if be == nil {
		be = newFakeBackend()
	}
	h := &harness{gh: gh, be: be, clock: newFakeClock(), rec: newCountingRecorder(), logs: &testutil.SyncBuffer{}}
	logger := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := New(cfg, gh, be, withClock(h.clock), WithLogger(logger), WithRecorder(h.rec))
	must.NoError(t, err)
	s.SetOwner(true)
	h.s = s
	return h
}

func (h *harness) assign(t *testing.T, n int) {
	t.Helper()
	_, err := h.s.HandleDesiredRunnerCount(t.Context(), n)
	must.NoError(t, err)
}

func (h *harness) reconcile(t *testing.T) {
	t.Helper()
	must.NoError(t, h.s.reconcile(t.Context()))
}

func (h *harness) jobStarted(t *testing.T, name string) {
	t.Helper()
	ref, _ := h.gh.GetRunnerByName(t.Context(), name)
	id := 0
	if ref != nil {
		id = ref.ID
	}
	h.gh.mu.Lock()
	h.gh.busy[name] = true
	h.gh.mu.Unlock()
	must.NoError(t, h.s.HandleJobStarted(t.Context(), &scaleset.JobStarted{RunnerName: name, RunnerID: id}))
}

// jobCompleted plays an ephemeral runner finishing: GitHub drops the
// registration, the process exits, the listener delivers JobCompleted.
func (h *harness) jobCompleted(t *testing.T, name string) {
	t.Helper()
	ref, _ := h.gh.GetRunnerByName(t.Context(), name)
	id := 0
	if ref != nil {
		id = ref.ID
	}
	h.gh.mu.Lock()
	delete(h.gh.byName, name)
	delete(h.gh.busy, name)
	h.gh.mu.Unlock()
	h.be.setState(name, backend.StateExited)
	must.NoError(t, h.s.HandleJobCompleted(t.Context(), &scaleset.JobCompleted{RunnerName: name, RunnerID: id, Result: "succeeded"}))
}

// runnerExited plays an ephemeral runner that finished its job and exited
// before the listener delivered JobCompleted.
func (h *harness) runnerExited(name string) {
	h.gh.mu.Lock()
	delete(h.gh.byName, name)
	delete(h.gh.busy, name)
	h.gh.mu.Unlock()
	h.be.setState(name, backend.StateExited)
}
