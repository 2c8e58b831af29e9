// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package service

import (
	"context"
	"time"

	"github.com/actions/scaleset"
)

// defaultUnreachableAfter is how long a scale set stays ready without an
// answer from the Actions service to its message session. A message
// poll is a long poll that GitHub answers within a minute (202 when no
// message came), so twice that means the service is not answering.
const defaultUnreachableAfter = 2 * time.Minute

// contactSession records every message poll's outcome on its scale set,
// for readiness.
type contactSession struct {
	session
	r *scaleSetRunner
}

// GetMessage polls through the session and records the outcome; a poll
// ended by the service's own shutdown is not an outage.
func (c contactSession) GetMessage(ctx context.Context, lastMessageID, maxCapacity int) (*scaleset.RunnerScaleSetMessage, error) {
	m, err := c.session.GetMessage(ctx, lastMessageID, maxCapacity)
	if err == nil || ctx.Err() == nil {
		c.r.contact(err)
	}
	return m, err
}

// contact records an answer of the Actions service (err nil) or a failed
// message poll.
func (r *scaleSetRunner) contact(err error) {
	if err != nil {
		r.pollErr.Store(&err)
		return
	}
	r.pollErr.Store(nil)
	r.lastContact.Store(time.Now().UnixNano())
}

// unreachableReason says why the Actions service counts as unreachable for this
// scale set ("" when it does not): the last message poll failed (after
// the client's retries), or nothing answered for unreachableAfter (a
// poll hanging in a network outage).
func (r *scaleSetRunner) unreachableReason(now time.Time) string {
	if p := r.pollErr.Load(); p != nil {
		return "GitHub unreachable: " + (*p).Error()
	}
	last := r.lastContact.Load()
	if last == 0 {
		return "GitHub unreachable: no message session yet"
	}
	if since := now.Sub(time.Unix(0, last)); since > r.unreachableAfter {
		return "GitHub unreachable: no answer for " + since.Round(time.Second).String()
	}
	return ""
}
