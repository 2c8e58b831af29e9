// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package actionssim

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Go shortcuts for tests that want state without going through the HTTP
// API (for example fake-runner tests that need a JIT config but no
// official client). They act exactly like the matching endpoints.

// CreateScaleSet creates a scale set in the default runner group of the
// organization org, as POST runnerscalesets would. Labels default to the
// name.
func (s *Server) CreateScaleSet(org, name string, labels ...string) (ScaleSet, error) {
	if strings.TrimSpace(name) == "" {
		return ScaleSet{}, errors.New("creating scale set: name is required")
	}
	if len(labels) == 0 {
		labels = []string{name}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tenantLocked("orgs/" + org)
	if s.nameTakenLocked(t, 1, name, 0) {
		return ScaleSet{}, fmt.Errorf("creating scale set %q: name already taken in runner group 1", name)
	}
	var ls []Label
	for _, l := range labels {
		ls = append(ls, Label{Name: l})
	}
	ss := s.createScaleSetLocked(t, name, 1, ls, wireRunnerSetting{DisableUpdate: true})
	return s.scaleSetViewLocked(ss), nil
}

// GenerateJITConfig registers a runner in a scale set, as POST
// generatejitconfig would, and returns it with its JIT config blob.
func (s *Server) GenerateJITConfig(scaleSetID int, runnerName string) (Runner, string, error) {
	if strings.TrimSpace(runnerName) == "" {
		return Runner{}, "", errors.New("generating JIT config: runner name is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.scaleSets[scaleSetID]
	if !ok {
		return Runner{}, "", fmt.Errorf("generating JIT config: scale set %d not found", scaleSetID)
	}
	rn, blob, err := s.generateJITLocked(ss, wireJITSetting{Name: runnerName}, s.URL, time.Now())
	if err != nil {
		return Runner{}, "", fmt.Errorf("generating JIT config: %w", err)
	}
	return rn.Runner, blob, nil
}

// RemoveRunner deletes a runner registration, as DELETE agents/{id} would.
// It fails for a busy or unknown runner.
func (s *Simulator) RemoveRunner(runnerID int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rn, ok := s.runners[runnerID]
	switch {
	case !ok:
		return fmt.Errorf("removing runner %d: not found", runnerID)
	case rn.State == RunnerBusy:
		return fmt.Errorf("removing runner %d: job %s still running", runnerID, rn.JobID)
	}
	s.removeRunnerLocked(rn)
	return nil
}
