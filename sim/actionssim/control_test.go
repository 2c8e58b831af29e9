// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package actionssim_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/sim/actionssim"
)

func TestSimulator_ControlAPI(t *testing.T) {
	t.Parallel()
	srv := startSim(t, fastOptions())
	c := patClient(t, srv)
	ss := createScaleSet(t, c, "ctl", "ctl")
	sc := sessionClient(t, c, ss.ID)
	base := srv.URL + "/_sim/control/"

	r := post(t, base+"jobs", "", actionssim.ControlJobsRequest{Count: 2, DurationMS: 10, Labels: []string{"ctl"}})
	must.Eq(t, http.StatusOK, r.status)
	var queued struct{ Jobs []actionssim.Job }
	must.NoError(t, json.Unmarshal(r.body, &queued))
	must.Len(t, 2, queued.Jobs)
	must.Eq(t, actionssim.JobAssigned, queued.Jobs[0].State)

	r = post(t, base+"jobs", "", actionssim.ControlJobsRequest{Count: -1})
	must.Eq(t, http.StatusBadRequest, r.status)

	r = do(t, http.MethodGet, base+"snapshot", "", nil)
	must.Eq(t, http.StatusOK, r.status)
	var snap actionssim.Snapshot
	must.NoError(t, json.Unmarshal(r.body, &snap))
	must.Len(t, 2, snap.Jobs)
	must.Eq(t, 2, snap.ScaleSets[0].Statistics.TotalAssignedJobs)

	r = post(t, base+"faults", "", actionssim.ControlFault{Endpoints: []actionssim.Endpoint{actionssim.EndpointRunners}, Status: 500, Count: 1})
	must.Eq(t, http.StatusNoContent, r.status)
	r = do(t, http.MethodDelete, base+"faults", "", nil)
	must.Eq(t, http.StatusNoContent, r.status)
	_, err := c.GetRunnerByName(t.Context(), "nobody")
	must.NoError(t, err)
	must.Eq(t, 1, srv.RequestCount(actionssim.EndpointRunners)) // the cleared fault never fired

	r = post(t, base+"expire-tokens", "", map[string]bool{"messageQueue": true})
	must.Eq(t, http.StatusNoContent, r.status)
	before := srv.RequestCount(actionssim.EndpointSessions)
	_, err = sc.GetMessage(t.Context(), 0, 5)
	must.NoError(t, err)
	must.Eq(t, before+1, srv.RequestCount(actionssim.EndpointSessions))

	r = post(t, base+"drop-session", "", map[string]int{"scaleSetId": ss.ID})
	must.Eq(t, http.StatusNoContent, r.status)
	r = post(t, base+"drop-session", "", map[string]int{"scaleSetId": ss.ID})
	must.Eq(t, http.StatusNotFound, r.status)
}

// Restart loses sessions and tokens, keeps scale sets and registrations:
// the old client gets 401 on every call; a new client works at once.
func TestSimulator_Restart(t *testing.T) {
	t.Parallel()
	srv := startSim(t, fastOptions())
	c := patClient(t, srv)
	ss := createScaleSet(t, c, "rs", "rs")
	sc := sessionClient(t, c, ss.ID)
	_, _, err := srv.GenerateJITConfig(ss.ID, "rs-1")
	must.NoError(t, err)

	r := post(t, srv.URL+"/_sim/control/restart", "", nil)
	must.Eq(t, http.StatusNoContent, r.status)
	snap := srv.Snapshot()
	must.Eq(t, "", snap.ScaleSets[0].SessionID)
	must.Len(t, 1, snap.Runners)

	_, err = sc.GetMessage(t.Context(), 0, 5)
	must.ErrorContains(t, err, "401")
	_, err = c.GetRunnerByName(t.Context(), "rs-1")
	must.ErrorContains(t, err, "401")

	fresh := patClient(t, srv)
	ref, err := fresh.GetRunnerByName(t.Context(), "rs-1")
	must.NoError(t, err)
	must.NotNil(t, ref)
	sessionClient(t, fresh, ss.ID)
}
