// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package waitgroup waits for a sync.WaitGroup with a deadline, the shape
// every shutdown path in this repository needs (warm pool, tart backend,
// scaler starts).
package waitgroup

import (
	"context"
	"sync"
)

// Wait waits until wg is done or ctx ends. It returns nil when the group
// finished (also when that is seen just after ctx ended) and ctx's error
// otherwise.
// On a timeout the helper goroutine stays until wg is done: the caller has
// decided not to wait for work it cannot cancel from here.
func Wait(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		select {
		case <-done: // finished just in time
			return nil
		default:
			return ctx.Err()
		}
	}
}
