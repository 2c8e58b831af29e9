// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package actionssim

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// This file is the runner side: what a runner talks to after it has a JIT
// config. The real protocol (broker sessions, job request renewals) is not
// standardised; the simulator uses this small JSON protocol instead, which
// README.md documents:
//
//	POST /_sim/runner/redeem     {clientId,key} → RedeemResponse (once per JIT config)
//	POST /_sim/runner/online     → 204, runner idle
//	GET  /_sim/runner/job        → 200 RunnerJob | 204 after the poll timeout
//	POST /_sim/runner/heartbeat  → 204
//	POST /_sim/runner/complete   {jobId,result} → 204, runner deleted
//	POST /_sim/runner/offline    → 204
//
// Every call but redeem carries "Authorization: Bearer <accessToken>".

// RedeemRequest is the body of POST /_sim/runner/redeem.
type RedeemRequest struct {
	ClientID string `json:"clientId"`
	// Key is the JIT config's RSAParams.D.
	Key string `json:"key"`
}

// RedeemResponse is the answer to a successful redeem.
type RedeemResponse struct {
	RunnerID    int    `json:"runnerId"`
	RunnerName  string `json:"runnerName"`
	ScaleSetID  int    `json:"scaleSetId"`
	AccessToken string `json:"accessToken"`
	// HeartbeatIntervalMS is how often a busy runner should call heartbeat.
	HeartbeatIntervalMS int64 `json:"heartbeatIntervalMs"`
}

// RunnerJob is a job handed to a runner.
type RunnerJob struct {
	JobID           string `json:"jobId"`
	RunnerRequestID int64  `json:"runnerRequestId"`
	DisplayName     string `json:"displayName"`
	Repository      string `json:"repository"`
	DurationMS      int64  `json:"durationMs"`
	// Result is what the runner should report when done.
	Result string `json:"result"`
}

// CompleteRequest is the body of POST /_sim/runner/complete.
type CompleteRequest struct {
	JobID  string `json:"jobId"`
	Result string `json:"result"`
}

// Runner-API exception type names (simulator-specific except the first).
const (
	typeRunnerCredentialUsed = "ActionsSim.RunnerCredentialAlreadyUsedException, ActionsSim"
	typeRunnerState          = "ActionsSim.RunnerStateException, ActionsSim"
)

// msgRegistrationGone is the 404 text for a deleted or unknown runner; the
// fake runner maps that 404 to ExitRejected wherever it happens.
const msgRegistrationGone = "The runner registration was not found; it may have been deleted."

func (s *Simulator) handleRunnerRedeem(w http.ResponseWriter, r *http.Request) {
	var in RedeemRequest
	if err := decodeJSON(r, &in); err != nil {
		s.writeException(w, http.StatusBadRequest, typeBadRequest, err.Error())
		return
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var rn *runner
	for _, c := range s.runnerHistory {
		if c.clientID == in.ClientID {
			rn = c
			break
		}
	}
	switch {
	case rn == nil || rn.State == RunnerDeleted:
		s.writeException(w, http.StatusNotFound, typeAgentNotFound, msgRegistrationGone)
		return
	case !secretEqual(rn.secret, in.Key):
		s.writeException(w, http.StatusUnauthorized, typeUnauthorized, "The runner credential is invalid.")
		return
	case rn.Redeemed:
		s.writeException(w, http.StatusConflict, typeRunnerCredentialUsed, "The JIT configuration of this runner was already used.")
		return
	}
	rn.Redeemed, rn.RedeemedAt, rn.lastSeen = true, now, now
	rn.accessToken = randomToken("sim_runner_", 20)
	s.log.Info("redeemed JIT config", "runner_name", rn.Name, "runner_id", rn.ID)
	s.changedLocked()
	s.writeServiceJSON(w, http.StatusOK, RedeemResponse{
		RunnerID: rn.ID, RunnerName: rn.Name, ScaleSetID: rn.ScaleSetID, AccessToken: rn.accessToken,
		HeartbeatIntervalMS: max(int64(s.opts.RunnerLostTimeout/time.Millisecond)/4, 1),
	})
}

type runnerHandler func(w http.ResponseWriter, r *http.Request, rn *runner)

// runnerAuth resolves the runner access token and records the runner as
// seen. Handlers run with s.mu held.
func (s *Simulator) runnerAuth(fn runnerHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, _ := bearer(r, "Bearer")
		s.mu.Lock()
		defer s.mu.Unlock()
		var rn *runner
		if tok != "" {
			for _, c := range s.runners {
				if c.accessToken != "" && secretEqual(c.accessToken, tok) {
					rn = c
					break
				}
			}
		}
		if rn == nil {
			s.writeException(w, http.StatusNotFound, typeAgentNotFound, msgRegistrationGone)
			return
		}
		rn.lastSeen = time.Now()
		fn(w, r, rn)
	}
}

func (s *Simulator) handleRunnerOnline(w http.ResponseWriter, _ *http.Request, rn *runner) {
	if rn.State == RunnerOffline {
		rn.State, rn.OnlineAt = RunnerIdle, time.Now()
		s.log.Info("runner came online", "runner_name", rn.Name, "runner_id", rn.ID)
		s.changedLocked()
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Simulator) handleRunnerHeartbeat(w http.ResponseWriter, _ *http.Request, _ *runner) {
	w.WriteHeader(http.StatusNoContent)
}

func runnerJobOf(j *job) RunnerJob {
	return RunnerJob{
		JobID: j.ID, RunnerRequestID: j.RunnerRequestID, DisplayName: j.DisplayName,
		Repository: j.Owner + "/" + j.Repository, DurationMS: j.Duration.Milliseconds(), Result: j.Result,
	}
}

// handleRunnerJob long-polls for a job of the runner's scale set. Taking
// one marks it running and emits JobStarted. A busy runner gets its current
// job again, so a retried poll is harmless.
func (s *Simulator) handleRunnerJob(w http.ResponseWriter, r *http.Request, rn *runner) {
	if rn.State == RunnerOffline {
		s.writeException(w, http.StatusConflict, typeRunnerState, "The runner is not online.")
		return
	}
	rn.polls++
	defer func() {
		rn.polls--
		rn.lastSeen = time.Now()
	}()
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.RunnerPollTimeout)
	defer cancel()
	for {
		if rn.State == RunnerDeleted || rn.State == RunnerOffline {
			s.writeException(w, http.StatusNotFound, typeAgentNotFound, msgRegistrationGone)
			return
		}
		if rn.State == RunnerBusy {
			if j := s.jobLocked(rn.JobID); j != nil {
				s.writeServiceJSON(w, http.StatusOK, runnerJobOf(j))
				return
			}
		}
		if j := s.takeJobLocked(rn, time.Now()); j != nil {
			s.writeServiceJSON(w, http.StatusOK, runnerJobOf(j))
			return
		}
		ch := s.notify
		s.mu.Unlock()
		select {
		case <-ch:
			s.mu.Lock()
		case <-ctx.Done():
			s.mu.Lock()
			w.WriteHeader(http.StatusNoContent)
			return
		case <-s.stop:
			s.mu.Lock()
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
}

// takeJobLocked gives the oldest assigned job of the runner's scale set to
// the runner.
func (s *Simulator) takeJobLocked(rn *runner, now time.Time) *job {
	for _, j := range s.jobs {
		if j.State != JobAssigned || j.ScaleSetID != rn.ScaleSetID {
			continue
		}
		j.State, j.RunnerID, j.RunnerName, j.StartedAt = JobRunning, rn.ID, rn.Name, now
		rn.State, rn.JobID, rn.BusyAt = RunnerBusy, j.ID, now
		if ss := s.scaleSets[j.ScaleSetID]; ss != nil {
			s.emitLocked(ss, withRunner(s.jobMessage(j, "JobStarted"), rn.ID, rn.Name))
		}
		s.log.Info("runner started job", "runner_name", rn.Name, "job_id", j.ID)
		s.changedLocked()
		return j
	}
	return nil
}

func (s *Simulator) handleRunnerComplete(w http.ResponseWriter, r *http.Request, rn *runner) {
	var in CompleteRequest
	if err := decodeJSON(r, &in); err != nil {
		s.writeException(w, http.StatusBadRequest, typeBadRequest, err.Error())
		return
	}
	if rn.State != RunnerBusy || rn.JobID != in.JobID {
		s.writeException(w, http.StatusConflict, typeRunnerState, fmt.Sprintf("The runner is not running job %s.", in.JobID))
		return
	}
	switch in.Result {
	case "":
		in.Result = ResultSucceeded
	case ResultSucceeded, ResultFailed, ResultCanceled:
	default:
		s.writeException(w, http.StatusBadRequest, typeBadRequest, fmt.Sprintf("Unknown job result %q.", in.Result))
		return
	}
	j := s.jobLocked(in.JobID)
	if j == nil {
		s.writeException(w, http.StatusConflict, typeRunnerState, fmt.Sprintf("The runner is not running job %s.", in.JobID))
		return
	}
	now := time.Now()
	s.finishJobLocked(j, in.Result, now)
	s.deleteRunnerLocked(rn, now) // ephemeral: one job, then gone
	s.dispatchLocked(now)
	s.changedLocked()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Simulator) handleRunnerOffline(w http.ResponseWriter, _ *http.Request, rn *runner) {
	s.runnerGoneLocked(rn, time.Now())
	s.log.Info("runner went offline", "runner_name", rn.Name, "runner_id", rn.ID)
	s.dispatchLocked(time.Now())
	s.changedLocked()
	w.WriteHeader(http.StatusNoContent)
}
