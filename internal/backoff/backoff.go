// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package backoff computes capped exponential retry delays, the one policy
// every retry loop in this repository uses (runner starts, listener
// restarts, warm-pool boots).
package backoff

import (
	"math/rand/v2"
	"time"
)

// Exponential is capped exponential backoff: Min, 2×Min, 4×Min, ... up to Max.
type Exponential struct{ Min, Max time.Duration }

// Delay is the wait before retry number attempt (1-based; below 1 counts
// as 1).
func (b Exponential) Delay(attempt int) time.Duration {
	d := b.Min
	for i := 1; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// Jittered is Delay plus up to 20% at random, so that many retriers that
// failed together do not retry together.
func (b Exponential) Jittered(attempt int) time.Duration {
	d := b.Delay(attempt)
	return d + time.Duration(rand.Int64N(int64(d)/5+1))
}
