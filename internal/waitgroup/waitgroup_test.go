// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package waitgroup

import (
	"context"
	"sync"
	"testing"

	"github.com/shoenig/test/must"
)

func TestWait_done(t *testing.T) {
	var wg sync.WaitGroup
	wg.Go(func() {})
	must.NoError(t, Wait(t.Context(), &wg))
}

func TestWait_contextEnds(t *testing.T) {
	var wg sync.WaitGroup
	release := make(chan struct{})
	wg.Go(func() { <-release })
	t.Cleanup(func() { close(release); wg.Wait() })
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	must.ErrorIs(t, Wait(ctx, &wg), context.Canceled)
}
