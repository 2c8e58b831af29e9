// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package harness

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
)

// newUUID returns a random version-4 UUID in the textual form Nomad uses for
// allocation and node IDs.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// newTaskID returns a task ID in Nomad's format <alloc_id>/<task>/<8 chars>.
// Nomad takes the first 8 characters of a fresh UUID, so do we.
func newTaskID(allocID, task string) string {
	return fmt.Sprintf("%s/%s/%s", allocID, task, newUUID()[:8])
}

// splitTaskID returns the allocation ID and task name encoded in a task ID.
func splitTaskID(taskID string) (allocID, task string, ok bool) {
	parts := strings.Split(taskID, "/")
	if len(parts) != 3 {
		return "", "", false
	}
	return parts[0], parts[1], true
}
