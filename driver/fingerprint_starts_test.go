// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

import (
	"context"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/tart"
)

func TestStartCounts_observe(t *testing.T) {
	var s startCounts
	attrs := map[string]any{}
	s.attributes(attrs)
	must.Eq(t, map[string]any{
		"driver.tart.starts.warm": int64(0), "driver.tart.starts.cold": int64(0), "driver.tart.starts.resumed": int64(0),
		"driver.tart.starts.warm.mean_ms": int64(0), "driver.tart.starts.cold.mean_ms": int64(0), "driver.tart.starts.resumed.mean_ms": int64(0),
	}, attrs)

	// The pool sets Path on exactly the event completing a start.
	for _, e := range []tart.Event{
		{Type: tart.EventClaimed, Pool: "macos", Duration: 100 * time.Millisecond, Path: tart.PathWarm},
		{Type: tart.EventClaimed, Pool: "macos", Duration: 300 * time.Millisecond, Path: tart.PathWarm},
		{Type: tart.EventReady, Pool: "macos", Duration: time.Minute},                           // a warm VM's own boot: not a task start
		{Type: tart.EventReady, Pool: "macos", Duration: 40 * time.Second, Path: tart.PathCold}, // a cold start
		{Type: tart.EventResumed, Pool: "macos", Duration: 3 * time.Second, Path: tart.PathResumed},
		{Type: tart.EventResumed, Pool: "macos", Err: context.DeadlineExceeded}, // the clock sync failed: not a start
		{Type: tart.EventColdStart, Pool: "macos"},                              // the decision, not the start
		{Type: tart.EventBooting},
	} {
		s.observe(e)
	}
	s.attributes(attrs)
	must.Eq[any](t, int64(2), attrs["driver.tart.starts.warm"])
	must.Eq[any](t, int64(200), attrs["driver.tart.starts.warm.mean_ms"])
	must.Eq[any](t, int64(1), attrs["driver.tart.starts.cold"])
	must.Eq[any](t, int64(40000), attrs["driver.tart.starts.cold.mean_ms"])
	must.Eq[any](t, int64(1), attrs["driver.tart.starts.resumed"])
	must.Eq[any](t, int64(3000), attrs["driver.tart.starts.resumed.mean_ms"])
}
