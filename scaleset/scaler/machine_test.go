// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package scaler

import (
	"testing"

	"github.com/shoenig/test/must"
)

// The transition table never lets a busy runner be removed, and every
// phase but gone can reach gone.
func TestMachine_table(t *testing.T) {
	_, ok := allowed(PhaseBusy, evRemovalRequested)
	must.False(t, ok, must.Sprint("a busy runner is never removed"))
	for p := range transitions {
		seen := map[Phase]bool{p: true}
		queue := []Phase{p}
		for len(queue) > 0 {
			q := queue[0]
			queue = queue[1:]
			for _, next := range transitions[q] {
				if !seen[next] {
					seen[next] = true
					queue = append(queue, next)
				}
			}
		}
		must.True(t, seen[phaseGone], must.Sprintf("phase %s cannot end", p))
	}
}
