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
	changed  chan struct{} // closed and replaced on every write
}

func newTestLogWriter(t testing.TB) *testLogWriter {
	return &testLogWriter{t: t, changed: make(chan struct{})}
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all.Write(p)
	close(w.changed)
	w.changed = make(chan struct{})
	if !w.disabled {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testLogWriter) String() string {
	text, _ := w.snapshot()
	return text
}

func (w *testLogWriter) snapshot() (string, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all.String(), w.changed
}

func (w *testLogWriter) disable() {
	w.mu.Lock()
	w.disabled = true
	w.mu.Unlock()
}
