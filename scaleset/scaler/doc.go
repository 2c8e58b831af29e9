// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package scaler decides how many ephemeral runners one scale set needs and
// makes a backend hold exactly that many.
//
// It implements the scaleset listener's Scaler interface: the listener feeds
// it statistics.TotalAssignedJobs and the JobStarted/JobCompleted events, and
// a reconcile loop compares the target min(max_runners, min_runners +
// assigned) with what the backend actually holds and with what GitHub knows.
// The loop starts what is missing, removes idle surplus, removes runners
// that never came online, and cleans up finished ones. Runner phases and the
// events that move them are one table (machine.go) that every phase change
// goes through. A runner is identified by its GitHub runner ID, which the
// backend records with the resource; messages apply only to the runner
// their ID names. After a restart it adopts the runners the backend lists,
// by those IDs; the only thing it persists is a start journal of the
// registrations its runners hold (StartJournal), because a registration
// whose runner the backend never recorded can be found no other way. Only
// the process holding the scale set's message session changes anything
// (SetOwner).
//
// The package imports the scaleset client types but no HTTP, metrics or
// config packages: GitHub, the backend, the clock and the metrics sink are
// small interfaces defined here.
package scaler
