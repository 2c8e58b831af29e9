// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package actionssim

import (
	"net/http"
	"time"
)

// This file is the control API: the test API over HTTP, for demos where
// the simulator runs in another process. It has no authentication; serve
// the simulator on loopback only.
//
//	POST /_sim/control/jobs          ControlJobsRequest → {"jobs":[Job...]}
//	GET  /_sim/control/snapshot      → Snapshot
//	POST /_sim/control/faults        ControlFault → 204
//	DELETE /_sim/control/faults      → 204 (clear all)
//	POST /_sim/control/expire-tokens {"admin":bool,"messageQueue":bool} → 204
//	POST /_sim/control/drop-session  {"scaleSetId":n} → 204, or 404 without a session
//	POST /_sim/control/restart       → 204 (Restart: sessions and tokens lost)
//
// JSON of Job, Runner, ScaleSet and Snapshot uses the Go field names;
// durations are nanoseconds.

// ControlJobsRequest queues Count jobs (default 1) like QueueJob.
type ControlJobsRequest struct {
	Count      int      `json:"count"`
	DurationMS int64    `json:"durationMs"`
	Labels     []string `json:"labels"`
	ScaleSetID int      `json:"scaleSetId"`
	Result     string   `json:"result"`
}

// ControlFault is a Fault in JSON, with durations in milliseconds.
type ControlFault struct {
	Endpoints    []Endpoint `json:"endpoints"`
	Status       int        `json:"status"`
	RetryAfterMS int64      `json:"retryAfterMs"`
	Count        int        `json:"count"`
	ForMS        int64      `json:"forMs"`
	DelayMS      int64      `json:"delayMs"`
	PlainText    bool       `json:"plainText"`
}

func (s *Simulator) controlRoutes() {
	s.mux.HandleFunc("POST /_sim/control/jobs", s.handleControlJobs)
	s.mux.HandleFunc("GET /_sim/control/snapshot", func(w http.ResponseWriter, _ *http.Request) {
		s.writeServiceJSON(w, http.StatusOK, s.Snapshot())
	})
	s.mux.HandleFunc("POST /_sim/control/faults", s.handleControlFault)
	s.mux.HandleFunc("DELETE /_sim/control/faults", func(w http.ResponseWriter, _ *http.Request) {
		s.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	})
	s.mux.HandleFunc("POST /_sim/control/expire-tokens", s.handleControlExpire)
	s.mux.HandleFunc("POST /_sim/control/drop-session", s.handleControlDropSession)
	s.mux.HandleFunc("POST /_sim/control/restart", func(w http.ResponseWriter, _ *http.Request) {
		s.Restart()
		w.WriteHeader(http.StatusNoContent)
	})
}

func (s *Simulator) handleControlJobs(w http.ResponseWriter, r *http.Request) {
	var in ControlJobsRequest
	if err := decodeJSON(r, &in); err != nil {
		s.writeException(w, http.StatusBadRequest, typeBadRequest, err.Error())
		return
	}
	if in.Count == 0 {
		in.Count = 1
	}
	if in.Count < 0 || in.Count > 10000 || in.DurationMS < 0 {
		s.writeException(w, http.StatusBadRequest, typeBadRequest, "count must be 1..10000 and durationMs not negative")
		return
	}
	jobs := make([]Job, 0, in.Count)
	for range in.Count {
		jobs = append(jobs, s.QueueJob(JobSpec{
			Labels: in.Labels, ScaleSetID: in.ScaleSetID, Result: in.Result,
			Duration: time.Duration(in.DurationMS) * time.Millisecond,
		}))
	}
	s.writeServiceJSON(w, http.StatusOK, map[string][]Job{"jobs": jobs})
}

func (s *Simulator) handleControlFault(w http.ResponseWriter, r *http.Request) {
	var in ControlFault
	if err := decodeJSON(r, &in); err != nil {
		s.writeException(w, http.StatusBadRequest, typeBadRequest, err.Error())
		return
	}
	s.InjectFault(Fault{
		Endpoints: in.Endpoints, Status: in.Status, Count: in.Count,
		RetryAfter: time.Duration(in.RetryAfterMS) * time.Millisecond,
		For:        time.Duration(in.ForMS) * time.Millisecond,
		Delay:      time.Duration(in.DelayMS) * time.Millisecond,
		PlainText:  in.PlainText,
	})
	w.WriteHeader(http.StatusNoContent)
}

func (s *Simulator) handleControlExpire(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Admin        bool `json:"admin"`
		MessageQueue bool `json:"messageQueue"`
	}
	if err := decodeJSON(r, &in); err != nil {
		s.writeException(w, http.StatusBadRequest, typeBadRequest, err.Error())
		return
	}
	if in.Admin {
		s.ExpireAdminTokens()
	}
	if in.MessageQueue {
		s.ExpireMessageQueueTokens()
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Simulator) handleControlDropSession(w http.ResponseWriter, r *http.Request) {
	var in struct {
		ScaleSetID int `json:"scaleSetId"`
	}
	if err := decodeJSON(r, &in); err != nil {
		s.writeException(w, http.StatusBadRequest, typeBadRequest, err.Error())
		return
	}
	if !s.DropSession(in.ScaleSetID) {
		s.writeException(w, http.StatusNotFound, typeRunnerAdmin, "no session for that scale set")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
