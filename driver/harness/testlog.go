// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package harness

import (
	"strings"
	"sync"
	"testing"
)

// testLogWriter sends each write (one hclog line) to t.Log until disabled.
// The plugin's stderr is read by go-plugin goroutines that can outlive the
// test; testing panics on t.Log after the test ends, so the harness disables
// the writer as its last cleanup step.
//
// It also keeps everything written, so that tests can search the plugin's
// log output (e.g. for secrets that must never be logged).
type testLogWriter struct {
	mu       sync.Mutex
	t        testing.TB
	disabled bool
	all      strings.Builder
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all.Write(p)
	if !w.disabled {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testLogWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all.String()
}

func (w *testLogWriter) disable() {
	w.mu.Lock()
	w.disabled = true
	w.mu.Unlock()
}
