// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package scaler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/actions/scaleset"

	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
)

// start generates a JIT config and starts the runner on the backend. On
// failure it removes the registration so nothing is left on GitHub.
func (s *Scaler) start(ctx context.Context, r *runner) {
	jit, err := s.generateJIT(ctx, r)
	if err != nil {
		s.metrics.BackendError("generate_jit")
		s.mu.Lock()
		name := r.name
		s.fire(r, evStartFailed)
		s.noteFailure(s.clock.Now())
		s.mu.Unlock()
		s.logger.Error("failed to generate JIT config", "runner_name", name, "error", err)
		if !errors.Is(err, errNotJournaled) && !errors.Is(err, scaleset.RunnerExistsError) {
			// The request may have registered the runner before it
			// failed (a timeout): look the name up now; a failure
			// leaves the entry for the next process.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			s.resolveEntry(rctx, JournalEntry{Name: name})
			cancel()
		}
		return
	}
	runnerID := 0
	if jit.Runner != nil {
		runnerID = jit.Runner.ID
	}
	s.mu.Lock()
	s.setID(r, runnerID)
	id := backend.Identity{Name: r.name, RunnerID: runnerID}
	s.mu.Unlock()
	if runnerID != 0 {
		// Removal by ID from now on. Without this update the entry still
		// names the registration, so a failure is not fatal.
		if err := s.journalRecord(context.WithoutCancel(ctx), JournalEntry{Name: id.Name, RunnerID: runnerID}); err != nil {
			s.logger.Warn("failed to record the runner id in the start journal", "runner_name", id.Name, "runner_id", runnerID, "error", err)
		}
	}

	began := s.clock.Now()
	resourceID, err := s.be.StartIdentified(ctx, id, jit.EncodedJITConfig)
	took := s.clock.Now().Sub(began)
	if err != nil {
		s.metrics.BackendError("start")
		s.logger.Error("failed to start runner", "runner_name", id.Name, "runner_id", runnerID, "error", err)
		ev := evStartFailed
		if runnerID != 0 {
			// Its own bound: ctx may have ended (Shutdown cancels starts).
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			err := s.removeRegistration(rctx, runnerID)
			cancel()
			if err != nil {
				s.metrics.BackendError("github_remove")
				s.logger.Warn("failed to remove registration of a runner that did not start, will retry", "runner_name", id.Name, "error", err)
				ev = evFailed // kept (failed) so later passes remove the registration
			}
		}
		s.mu.Lock()
		r.removeReason, r.acceptedAt = ReasonFailed, s.clock.Now()
		s.fire(r, ev)
		s.noteFailure(s.clock.Now())
		s.mu.Unlock()
		if ev == evStartFailed {
			s.journalDrop(ctx, id.Name)
		}
		return
	}
	path := ""
	if pr, ok := s.be.(backend.StartPathReporter); ok {
		path = pr.StartPath(resourceID)
	}
	s.metrics.RunnerStarted(took, path)
	s.mu.Lock()
	r.resourceID = resourceID
	r.acceptedAt = s.clock.Now()
	s.fire(r, evBackendAccepted)
	s.settleStart(r)
	s.mu.Unlock()
	s.logger.Info("started runner", "runner_name", id.Name, "runner_id", runnerID, "took", took.String())
}

// settleStart applies the messages that arrived for r while its start was
// in flight. Caller holds mu.
func (s *Scaler) settleStart(r *runner) {
	switch {
	case r.jobCompleted:
		if s.fire(r, evJobCompleted) {
			r.removeReason = ReasonDone
		}
	case r.sawJob:
		if s.fire(r, evJobStarted) {
			r.onlineAt = r.acceptedAt
			s.failures = 0
		}
	}
}

// generateJIT asks for a JIT config. A name clash (a registration of that
// name exists, from another process or an earlier version) is not taken
// for this runner: the runner gets a fresh name and one more try.
//
// Each name is recorded in the start journal before its request, so a
// registration never exists that no journal entry, backend record or
// live process knows; a name that clashed is dropped (its registration is
// not this runner's).
func (s *Scaler) generateJIT(ctx context.Context, r *runner) (*scaleset.RunnerScaleSetJitRunnerConfig, error) {
	pending, err := s.journal.Pending(ctx)
	if err != nil {
		s.metrics.BackendError("journal")
		return nil, fmt.Errorf("%w: failed to read the start journal: %w", errNotJournaled, err)
	}
	held := make(map[string]bool, len(pending))
	for _, e := range pending {
		held[e.Name] = true
	}
	s.mu.Lock()
	for held[r.name] {
		// an earlier process's entry of the same name (names repeat
		// without a NameTag): never overwrite it
		s.rename(r)
	}
	name := r.name
	s.mu.Unlock()
	if err := s.journalRecord(ctx, JournalEntry{Name: name}); err != nil {
		return nil, fmt.Errorf("%w: %w", errNotJournaled, err)
	}
	jit, err := s.requestJIT(ctx, name)
	if err == nil || !errors.Is(err, scaleset.RunnerExistsError) {
		return jit, err
	}
	s.journalDrop(ctx, name)
	s.mu.Lock()
	for held[r.name] || r.name == name {
		s.rename(r)
	}
	renamed := r.name
	s.mu.Unlock()
	s.logger.Warn("runner name already registered, using a fresh name", "runner_name", name, "new_name", renamed)
	if err := s.journalRecord(ctx, JournalEntry{Name: renamed}); err != nil {
		return nil, fmt.Errorf("%w: %w", errNotJournaled, err)
	}
	jit, err = s.requestJIT(ctx, renamed)
	if errors.Is(err, scaleset.RunnerExistsError) {
		s.journalDrop(ctx, renamed)
	}
	return jit, err
}

// rename gives r a fresh name. Caller holds mu.
func (s *Scaler) rename(r *runner) {
	if s.runners[r.name] == r {
		delete(s.runners, r.name)
	}
	r.name = s.newName()
	s.runners[r.name] = r
}

// errNotJournaled: a start was refused because its journal entry could not
// be written; no JIT config was requested.
var errNotJournaled = errors.New("runner start not journaled")

// requestJIT asks GitHub for one JIT config; an empty answer is an error.
func (s *Scaler) requestJIT(ctx context.Context, name string) (*scaleset.RunnerScaleSetJitRunnerConfig, error) {
	jit, err := s.gh.GenerateJitRunnerConfig(ctx, &scaleset.RunnerScaleSetJitRunnerSetting{Name: name}, s.cfg.ScaleSetID)
	if err == nil && jit == nil {
		err = errors.New("empty JIT config response")
	}
	return jit, err
}
