// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"time"
)

// EventType names what happened.
type EventType string

// Event types emitted by Pool. Messages are ready to show as task events.
const (
	EventPulling     EventType = "pulling"          // pull progress (Event.Pull set)
	EventPulled      EventType = "pulled"           // image pulled
	EventWaitingSlot EventType = "waiting_for_slot" // all slots busy
	EventBooting     EventType = "booting"          // cloned, tart run started
	EventReady       EventType = "ready"            // guest agent answered
	EventClaimed     EventType = "claimed"          // a warm VM was handed out
	EventAdopted     EventType = "adopted"          // a warm VM from an earlier process kept
	EventPreempted   EventType = "preempted"        // a warm VM gave up its slot
	EventDeleted     EventType = "deleted"          // a VM of ours was stopped and deleted
	EventFailed      EventType = "failed"           // pull/boot/readiness failed (Event.Err)
	EventWaitingWarm EventType = "waiting_for_warm" // a start waits for a booting warm VM
	EventColdStart   EventType = "cold_start"       // a start boots from the image (and why)
	EventResuming    EventType = "resuming"         // cloned from a template, tart run started
	EventResumed     EventType = "resumed"          // a resumed VM's agent answered
	EventResumeFail  EventType = "resume_failed"    // a resume failed; a cold start follows
	EventTemplate    EventType = "template"         // a template was built, adopted or deleted
)

// Event tells a caller what the pool or a provisioning call is doing, e.g.
// "Pulling image: 42% (1.2 GiB of 28.0 GiB)", "Booting VM", "Claimed warm VM
// x in 0.4s". It never carries secrets.
type Event struct {
	Time time.Time
	Type EventType
	// Pool is the warm pool concerned ("" for a cold start).
	Pool string
	// VM is the VM concerned, if any.
	VM string
	// Message is a human-readable sentence.
	Message string
	// Pull is set for EventPulling.
	Pull *PullProgress
	// Duration is the time taken (boot, claim) when meaningful.
	Duration time.Duration
	// Err is set for EventFailed.
	Err error
	// RetryIn is the backoff before the pool retries after EventFailed.
	RetryIn time.Duration
	// Path is set on exactly the event that completes a start: EventClaimed
	// (PathWarm), EventResumed (PathResumed) and a cold start's EventReady
	// (PathCold), so counting events by Path counts starts.
	Path StartPath
}

// EventFunc receives events. It is called synchronously from pool
// goroutines, so it must be quick and must not call back into the Pool.
type EventFunc func(Event)

// emit calls every non-nil fn with e (Time filled in).
func emit(e Event, fns ...EventFunc) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	for _, fn := range fns {
		if fn != nil {
			fn(e)
		}
	}
}
