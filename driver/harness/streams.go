// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package harness

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	driverpb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/drivers"
	structspb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/structs"
)

// Fingerprint is one message of the Fingerprint stream as the client reads
// it into the node's Drivers entry (reference 3.4).
type Fingerprint struct {
	Health            driverpb.FingerprintResponse_HealthState
	Detected          bool // health != UNDETECTED
	Healthy           bool // health == HEALTHY
	HealthDescription string
	// Attributes are rendered as node attributes: value then unit, no space
	// (64 + "MiB" = "64MiB").
	Attributes map[string]string
	Err        string
	Received   time.Time
	Proto      *driverpb.FingerprintResponse
}

func newFingerprint(r *driverpb.FingerprintResponse) Fingerprint {
	fp := Fingerprint{
		Health:            r.GetHealth(),
		Detected:          r.GetHealth() != driverpb.FingerprintResponse_UNDETECTED,
		Healthy:           r.GetHealth() == driverpb.FingerprintResponse_HEALTHY,
		HealthDescription: r.GetHealthDescription(),
		Attributes:        map[string]string{},
		Err:               r.GetErr(),
		Received:          time.Now(),
		Proto:             r,
	}
	for k, a := range r.GetAttributes() {
		fp.Attributes[k] = renderAttribute(a)
	}
	return fp
}

func renderAttribute(a *structspb.Attribute) string {
	var v string
	switch x := a.GetValue().(type) {
	case *structspb.Attribute_StringVal:
		v = x.StringVal
	case *structspb.Attribute_IntVal:
		v = fmt.Sprint(x.IntVal)
	case *structspb.Attribute_FloatVal:
		v = fmt.Sprint(x.FloatVal)
	case *structspb.Attribute_BoolVal:
		v = fmt.Sprint(x.BoolVal)
	}
	return v + a.GetUnit()
}

// Event is a DriverTaskEvent as received on the TaskEvents stream.
type Event struct {
	TaskID      string
	AllocID     string
	TaskName    string
	Timestamp   time.Time
	Message     string
	Annotations map[string]string
}

func (h *Harness) addFingerprint(fp Fingerprint) {
	h.mu.Lock()
	h.fps = append(h.fps, fp)
	h.notifyLocked()
	h.mu.Unlock()
}

func (h *Harness) addEvent(ev *driverpb.DriverTaskEvent) {
	e := Event{
		TaskID:      ev.GetTaskId(),
		AllocID:     ev.GetAllocId(),
		TaskName:    ev.GetTaskName(),
		Timestamp:   ev.GetTimestamp().AsTime(),
		Message:     ev.GetMessage(),
		Annotations: maps.Clone(ev.GetAnnotations()),
	}
	if e.AllocID == "" || e.TaskName == "" {
		h.violation("task event %q lacks alloc_id or task_name; Nomad routes events by them and drops this one", e.Message)
	}
	h.mu.Lock()
	h.events = append(h.events, e)
	h.notifyLocked()
	h.mu.Unlock()
}

// Fingerprints returns the fingerprints the running plugin process sent so
// far, oldest first.
func (h *Harness) Fingerprints() []Fingerprint {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.fps)
}

// LastFingerprint returns the newest fingerprint of the running process.
func (h *Harness) LastFingerprint(t testing.TB) Fingerprint {
	t.Helper()
	fps := h.Fingerprints()
	if len(fps) == 0 {
		t.Fatalf("harness: no fingerprint received yet")
	}
	return fps[len(fps)-1]
}

// WaitFingerprint waits until the running plugin process has sent a
// fingerprint for which match returns true, and returns it. Fingerprints
// received before the call count too.
func (h *Harness) WaitFingerprint(t testing.TB, match func(*Fingerprint) bool) Fingerprint {
	t.Helper()
	fp, err := h.waitFingerprint(time.Now().Add(h.opts.Timeout), match)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	return fp
}

func (h *Harness) waitFingerprint(deadline time.Time, match func(*Fingerprint) bool) (Fingerprint, error) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	seen := 0
	for {
		h.mu.Lock()
		fps, changed := slices.Clone(h.fps), h.changed
		h.mu.Unlock()
		for ; seen < len(fps); seen++ {
			if match(&fps[seen]) {
				return fps[seen], nil
			}
		}
		select {
		case <-changed:
		case <-timer.C:
			return Fingerprint{}, fmt.Errorf("no matching fingerprint within %s; received %d: %s", h.opts.Timeout, len(fps), describeFingerprints(fps))
		}
	}
}

func describeFingerprints(fps []Fingerprint) string {
	var b strings.Builder
	for _, fp := range fps {
		fmt.Fprintf(&b, "\n\t%v %q attributes=%v err=%q", fp.Health, fp.HealthDescription, fp.Attributes, fp.Err)
	}
	return b.String()
}

// Events returns every task event received so far (across plugin restarts),
// oldest first.
func (h *Harness) Events() []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.events)
}

// TaskEvents returns the events Nomad would attach to the task: those whose
// alloc_id and task_name match the task ID's.
func (h *Harness) TaskEvents(taskID string) []Event {
	var out []Event
	for _, e := range h.Events() {
		if eventFor(e, taskID) {
			out = append(out, e)
		}
	}
	return out
}

func eventFor(e Event, taskID string) bool {
	allocID, task, ok := splitTaskID(taskID)
	return ok && e.AllocID == allocID && e.TaskName == task
}

// WaitEvent waits until an event for the task (routed by alloc_id and
// task_name, as Nomad does) has a message containing substr, and returns
// it. Events received before the call count too.
func (h *Harness) WaitEvent(t testing.TB, taskID, substr string) Event {
	t.Helper()
	timer := time.NewTimer(h.opts.Timeout)
	defer timer.Stop()
	for {
		h.mu.Lock()
		events, changed := slices.Clone(h.events), h.changed
		h.mu.Unlock()
		for _, e := range events {
			if eventFor(e, taskID) && strings.Contains(e.Message, substr) {
				return e
			}
		}
		select {
		case <-changed:
		case <-timer.C:
			var b strings.Builder
			for _, e := range events {
				fmt.Fprintf(&b, "\n\t%s/%s: %q %v", e.AllocID, e.TaskName, e.Message, e.Annotations)
			}
			t.Fatalf("harness: no event containing %q for task %s within %s; events so far:%s", substr, taskID, h.opts.Timeout, b.String())
		}
	}
}
