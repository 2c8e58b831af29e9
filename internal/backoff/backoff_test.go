// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package backoff

import (
	"testing"
	"time"

	"github.com/shoenig/test/must"
)

func TestExponential_Delay(t *testing.T) {
	b := Exponential{Min: time.Second, Max: 5 * time.Second}
	cases := []struct {
		attempt int
		want    time.Duration
	}{
		{0, time.Second},
		{1, time.Second},
		{2, 2 * time.Second},
		{3, 4 * time.Second},
		{4, 5 * time.Second},
		{100, 5 * time.Second},
	}
	for _, tc := range cases {
		must.Eq(t, tc.want, b.Delay(tc.attempt), must.Sprintf("attempt %d", tc.attempt))
	}
}

func TestExponential_Jittered(t *testing.T) {
	b := Exponential{Min: time.Second, Max: 5 * time.Second}
	for attempt := 1; attempt < 6; attempt++ {
		for range 50 {
			d := b.Jittered(attempt)
			must.GreaterEq(t, b.Delay(attempt), d)
			must.LessEq(t, b.Delay(attempt)*6/5, d)
		}
	}
}
