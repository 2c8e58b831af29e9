// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package actionssim

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// This file holds runner registrations on the admin side: generate JIT
// config, runner by id / name, remove runner (reference 2.3 (14)-(17)).

func (s *Simulator) wireRunnerRef(rn *runner) wireRunnerRef {
	status := "offline"
	if rn.State == RunnerIdle || rn.State == RunnerBusy {
		status = "online"
	}
	return wireRunnerRef{ID: rn.ID, Name: rn.Name, RunnerScaleSetID: rn.ScaleSetID, Status: status, Ephemeral: true}
}

func (s *Simulator) handleGenerateJIT(w http.ResponseWriter, r *http.Request, t *tenant) {
	var in wireJITSetting
	if err := decodeJSON(r, &in); err != nil {
		s.writeException(w, http.StatusBadRequest, typeBadRequest, err.Error())
		return
	}
	if strings.TrimSpace(in.Name) == "" {
		s.writeException(w, http.StatusBadRequest, typeBadRequest, "The runner name is required.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.scaleSetFromPathLocked(w, r, t)
	if ss == nil {
		return
	}
	rn, blob, err := s.generateJITLocked(ss, in, baseURL(r), time.Now())
	switch {
	case errors.Is(err, errRunnerExists):
		s.writeException(w, http.StatusConflict, typeAgentExists,
			fmt.Sprintf("A runner with the name %s already exists.", in.Name))
		return
	case err != nil:
		s.writeException(w, http.StatusInternalServerError, typeBadRequest, "failed to encode JIT config")
		return
	}
	s.writeServiceJSON(w, http.StatusOK, wireJITConfig{Runner: s.wireRunnerRef(rn), EncodedJITConfig: blob})
}

var errRunnerExists = errors.New("a runner with this name already exists")

// generateJITLocked registers an offline runner in ss and returns it with
// its JIT config blob. base is the simulator's base URL as the runner will
// reach it. Callers hold s.mu.
func (s *Simulator) generateJITLocked(ss *scaleSet, in wireJITSetting, base string, now time.Time) (*runner, string, error) {
	t := ss.tenant
	for _, rn := range s.runners {
		if rn.tenant == t && strings.EqualFold(rn.Name, in.Name) {
			return nil, "", fmt.Errorf("registering runner %q: %w", in.Name, errRunnerExists)
		}
	}
	rn := &runner{
		Runner: Runner{ID: s.nextRunner, Name: in.Name, ScaleSetID: ss.id, State: RunnerOffline, CreatedAt: now},
		tenant: t, clientID: newUUID(), secret: base64.StdEncoding.EncodeToString([]byte(randomToken("", 32))),
	}
	workFolder := in.WorkFolder
	if workFolder == "" {
		workFolder = "_work"
	}
	blob, err := EncodeJITConfig(JITConfig{
		Runner: RunnerSettings{
			AgentID: rn.ID, AgentName: rn.Name, PoolID: 1, PoolName: DefaultRunnerGroup,
			ServerURL: fmt.Sprintf("%s/_services/%d/", base, t.id), GitHubURL: base + "/" + t.scope,
			WorkFolder: workFolder, Ephemeral: true, DisableUpdate: ss.setting.DisableUpdate, UseV2Flow: true,
		},
		Credentials: Credentials{Scheme: "OAuth", Data: CredentialsData{
			ClientID: rn.clientID, AuthorizationURL: base + "/_sim/runner/redeem", RequireFipsCryptography: "True",
		}},
		RSAParams: RSAParams{
			D: rn.secret, DP: randomToken("", 8), DQ: randomToken("", 8), Exponent: "AQAB",
			InverseQ: randomToken("", 8), Modulus: randomToken("", 16), P: randomToken("", 8), Q: randomToken("", 8),
		},
	})
	if err != nil {
		return nil, "", err
	}
	s.nextRunner++
	s.runners[rn.ID] = rn
	s.runnerHistory = append(s.runnerHistory, rn)
	s.log.Info("generated JIT config", "runner_name", rn.Name, "runner_id", rn.ID, "scale_set_id", ss.id)
	s.changedLocked()
	return rn, blob, nil
}

func (s *Simulator) runnerFromPathLocked(w http.ResponseWriter, r *http.Request, t *tenant) *runner {
	id, err := strconv.Atoi(r.PathValue("rid"))
	rn, ok := s.runners[id]
	if err != nil || !ok || rn.tenant != t {
		s.writeException(w, http.StatusNotFound, typeAgentNotFound,
			fmt.Sprintf("No runner with id %s was found.", r.PathValue("rid")))
		return nil
	}
	return rn
}

func (s *Simulator) handleGetRunner(w http.ResponseWriter, r *http.Request, t *tenant) {
	s.mu.Lock()
	rn := s.runnerFromPathLocked(w, r, t)
	if rn == nil {
		s.mu.Unlock()
		return
	}
	out := s.wireRunnerRef(rn)
	s.mu.Unlock()
	s.writeServiceJSON(w, http.StatusOK, out)
}

func (s *Simulator) handleListRunners(w http.ResponseWriter, r *http.Request, t *tenant) {
	name := r.URL.Query().Get("agentName")
	s.mu.Lock()
	out := wireList[wireRunnerRef]{Value: []wireRunnerRef{}}
	for _, rn := range s.runnerHistory {
		if rn.State == RunnerDeleted || rn.tenant != t || (name != "" && !strings.EqualFold(rn.Name, name)) {
			continue
		}
		out.Value = append(out.Value, s.wireRunnerRef(rn))
	}
	s.mu.Unlock()
	out.Count = len(out.Value)
	s.writeServiceJSON(w, http.StatusOK, out)
}

func (s *Simulator) handleRemoveRunner(w http.ResponseWriter, r *http.Request, t *tenant) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rn := s.runnerFromPathLocked(w, r, t)
	if rn == nil {
		return
	}
	if rn.State == RunnerBusy {
		s.writeException(w, http.StatusConflict, typeJobStillRunning,
			fmt.Sprintf("Runner %s is still running job %s.", rn.Name, rn.JobID))
		return
	}
	s.removeRunnerLocked(rn)
	w.WriteHeader(http.StatusNoContent)
}

// removeRunnerLocked deletes an idle or offline runner's registration at
// the admin's request. Callers hold s.mu and have refused a busy runner.
func (s *Simulator) removeRunnerLocked(rn *runner) {
	s.deleteRunnerLocked(rn, time.Now())
	s.log.Info("removed runner", "runner_name", rn.Name, "runner_id", rn.ID)
	s.changedLocked()
}

// deleteRunnerLocked deletes a registration. Its JIT config and access
// token stop working.
func (s *Simulator) deleteRunnerLocked(rn *runner, now time.Time) {
	delete(s.runners, rn.ID)
	rn.State, rn.DeletedAt, rn.accessToken = RunnerDeleted, now, ""
}

// runnerGoneLocked handles a runner that went away: an idle one goes
// offline (its registration stays until removed); a busy one fails its job
// and is deleted.
func (s *Simulator) runnerGoneLocked(rn *runner, now time.Time) {
	if rn.State == RunnerBusy {
		if j := s.jobLocked(rn.JobID); j != nil {
			s.finishJobLocked(j, ResultFailed, now)
		}
		s.deleteRunnerLocked(rn, now)
		return
	}
	rn.State = RunnerOffline
}
