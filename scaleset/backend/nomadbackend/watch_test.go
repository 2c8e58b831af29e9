// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadbackend

import (
	"testing"

	"github.com/hashicorp/nomad/api"
	"github.com/shoenig/test/must"
)

func Test_runnerFromID(t *testing.T) {
	cases := []struct{ id, want string }{
		{"github-runner-macos/dispatch-macos-arm64-12-1764445200-0a1b2c3d", "macos-arm64-12"},
		{"github-runner-macos/dispatch-r-1764445200-deadbeef", "r"},
	}
	for _, tc := range cases {
		must.Eq(t, tc.want, runnerFromID("github-runner-macos/dispatch-", tc.id))
	}
}

func Test_placementFailure(t *testing.T) {
	evals := []*api.Evaluation{
		{ID: "old", ModifyIndex: 5, FailedTGAllocs: map[string]*api.AllocationMetric{"runner": {NodesEvaluated: 3, ConstraintFiltered: map[string]int{"missing drivers": 3}}}},
		{ID: "new", ModifyIndex: 9, FailedTGAllocs: map[string]*api.AllocationMetric{"runner": {
			NodesEvaluated: 2, NodesExhausted: 2, DimensionExhausted: map[string]int{"memory": 2},
			NodesAvailable: map[string]int{"dc1": 2, "dc2": 0},
		}}},
		{ID: "blocked", ModifyIndex: 10, Status: "blocked"},
	}
	must.Eq(t, `Nomad cannot place the runner: task group "runner": no nodes are available in datacenter "dc2", resources exhausted on 2 nodes, dimension "memory" exhausted on 2 nodes`,
		placementFailure(evals, []string{"tart"}))
	must.Eq(t, `Nomad cannot place the runner: task group "runner": constraint "missing drivers" filtered 3 nodes (no eligible node with driver tart)`,
		placementFailure(evals[:1], []string{"tart"}))
	must.Eq(t, "waiting for Nomad to place the runner", placementFailure(evals[2:], nil))
	must.Eq(t, "no nodes were eligible for evaluation", describeMetric(&api.AllocationMetric{}))
}

func Test_allocFailure(t *testing.T) {
	allocs := []*api.AllocationListStub{
		{ID: "11111111-aaaa", CreateIndex: 3, NodeName: "mac-1", ClientStatus: "failed", ClientDescription: "Failed tasks"},
		{ID: "22222222-bbbb", CreateIndex: 7, NodeName: "mac-2", ClientStatus: "failed", ClientDescription: "Failed tasks",
			TaskStates: map[string]*api.TaskState{"runner": {Events: []*api.TaskEvent{
				{Type: "Received", DisplayMessage: "Task received by client"},
				{Type: "Driver Failure", DisplayMessage: "no free VM slot"},
				{Type: "Not Restarting", DisplayMessage: "Error was unrecoverable"},
			}}}},
	}
	must.Eq(t, `allocation 22222222 on node "mac-2" failed: task "runner": Driver Failure: no free VM slot`, allocFailure(allocs))
	must.Eq(t, "the dispatched job failed", allocFailure(nil))
}
