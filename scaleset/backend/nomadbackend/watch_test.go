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
	// Full nodes: Nomad queues the placement (a blocked evaluation).
	reason, capacity := placementFailure(evals, []string{"tart"})
	must.Eq(t, `queued for capacity (Nomad places the runner when a node frees up): task group "runner": no nodes are available in datacenter "dc2", resources exhausted on 2 nodes, dimension "memory" exhausted on 2 nodes`, reason)
	must.True(t, capacity)
	// No node can ever run it: a failure, not a queue.
	reason, capacity = placementFailure(evals[:1], []string{"tart"})
	must.Eq(t, `Nomad cannot place the runner: task group "runner": constraint "missing drivers" filtered 3 nodes (no eligible node with driver tart)`, reason)
	must.False(t, capacity)
	reason, capacity = placementFailure(evals[2:], nil)
	must.Eq(t, "waiting for Nomad to place the runner", reason)
	must.False(t, capacity)
	// Every VM slot device taken, one node with tart broken (its slots
	// unhealthy, so filtered): still a queue, as one node only lacks a
	// free slot.
	reason, capacity = placementFailure([]*api.Evaluation{{ID: "dev", ModifyIndex: 3, FailedTGAllocs: map[string]*api.AllocationMetric{"runner": {
		NodesEvaluated: 2, NodesFiltered: 1, ConstraintFiltered: map[string]int{"missing devices": 1},
		NodesExhausted: 1, DimensionExhausted: map[string]int{"devices: no devices match request": 1},
	}}}}, []string{"tart"})
	must.True(t, capacity)
	must.StrContains(t, reason, `dimension "devices: no devices match request" exhausted on 1 nodes`)
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
