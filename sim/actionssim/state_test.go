// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package actionssim_test

import (
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/sim/actionssim"
)

func TestSnapshot_PeakOnline(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	cases := []struct {
		name    string
		runners []actionssim.Runner
		want    int
	}{
		{"none", nil, 0},
		{"never online", []actionssim.Runner{{CreatedAt: at(0), DeletedAt: at(5)}}, 0},
		{"overlapping", []actionssim.Runner{
			{OnlineAt: at(0), DeletedAt: at(10)},
			{OnlineAt: at(2), DeletedAt: at(4)},
			{OnlineAt: at(3)},
			{OnlineAt: at(5), DeletedAt: at(6)},
		}, 3},
		{"a deletion counts first at equal times", []actionssim.Runner{
			{OnlineAt: at(0), DeletedAt: at(2)},
			{OnlineAt: at(2), DeletedAt: at(4)},
		}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			must.Eq(t, tc.want, actionssim.Snapshot{Runners: tc.runners}.PeakOnline())
		})
	}
}
