// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package scaler

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
)

// TestJournal_resolvesUnbackedEntriesOnceOwner plays the process after a
// SIGKILL: the journal holds a registration recorded by ID, one recorded
// by name only (killed before the JIT response), one whose registration
// is gone, a busy one and one a backend runner backs. Only the owner
// resolves them, after its backend list: the unbacked ones are removed
// and dropped, the busy one and the backed one stay.
func TestJournal_resolvesUnbackedEntriesOnceOwner(t *testing.T) {
	ctx := t.Context()
	gh := newFakeGitHub(7)
	be := newFakeBackend()
	byID := gh.register("linux-a-1")
	gh.register("linux-a-2")
	busy := gh.register("linux-a-4")
	gh.busy["linux-a-4"] = true
	backed := gh.register("linux-a-5")
	be.add("linux-a-5", backed.ID, backend.StateRunning)
	j := newMemJournal()
	for _, e := range []JournalEntry{{Name: "linux-a-1", RunnerID: byID.ID}, {Name: "linux-a-2"}, {Name: "linux-a-3", RunnerID: 999}, {Name: "linux-a-4", RunnerID: busy.ID}, {Name: "linux-a-5", RunnerID: backed.ID}} {
		must.NoError(t, j.Record(ctx, e))
	}
	rec := newCountingRecorder()
	s, err := New(Config{ScaleSetID: 7, NamePrefix: "linux", NameTag: "b", MaxRunners: 5}, gh, be,
		WithJournal(j), WithRecorder(rec), withClock(newFakeClock()), WithLogger(slog.New(slog.DiscardHandler)))
	must.NoError(t, err)

	must.NoError(t, s.reconcile(ctx)) // not the owner: read-only
	must.Eq(t, []string{"linux-a-1", "linux-a-2", "linux-a-4", "linux-a-5"}, gh.names())
	left, _ := j.Pending(ctx)
	must.Len(t, 5, left)

	s.SetOwner(true)
	must.NoError(t, s.reconcile(ctx))
	must.Eq(t, []string{"linux-a-4", "linux-a-5"}, gh.names())
	left, _ = j.Pending(ctx)
	must.Eq(t, []JournalEntry{{Name: "linux-a-4", RunnerID: busy.ID}, {Name: "linux-a-5", RunnerID: backed.ID}}, left)
	must.Eq(t, 2, rec.removed[string(ReasonOrphaned)])
}

// TestJournal_entryLivesAsLongAsTheRegistration: an entry is written
// before the JIT request, gains the runner ID, stays while the runner
// lives and is dropped when it is removed; a start that failed on the
// backend drops it once its registration is removed.
func TestJournal_entryLivesAsLongAsTheRegistration(t *testing.T) {
	ctx := t.Context()
	h := newHarness(t, Config{MaxRunners: 2}, nil, nil)
	j := newMemJournal()
	h.s.journal = j
	var atJIT []JournalEntry
	h.be.onStart = func(string) { atJIT, _ = j.Pending(ctx) }
	h.assign(t, 1)
	h.reconcile(t)
	names := h.be.names()
	must.Len(t, 1, names)
	ref, _ := h.gh.GetRunnerByName(ctx, names[0])
	must.Eq(t, []JournalEntry{{Name: names[0], RunnerID: ref.ID}}, atJIT)
	left, _ := j.Pending(ctx)
	must.Eq(t, atJIT, left, must.Sprint("kept while the runner lives"))

	h.assign(t, 0)
	h.reconcile(t)
	must.SliceEmpty(t, h.be.names())
	left, _ = j.Pending(ctx)
	must.SliceEmpty(t, left, must.Sprint("dropped with the runner"))

	h.be.onStart = nil
	h.be.startErr = errors.New("engine down")
	h.assign(t, 1)
	h.reconcile(t)
	must.SliceEmpty(t, h.gh.names())
	left, _ = j.Pending(ctx)
	must.SliceEmpty(t, left, must.Sprint("a failed start whose registration was removed"))
}

// failingJournal refuses every write.
type failingJournal struct{ *memJournal }

func (*failingJournal) Record(context.Context, JournalEntry) error { return errors.New("disk full") }

// TestJournal_noJITWithoutEntry: when the entry cannot be written, no JIT
// config is requested (it would be a registration nobody could find
// after a crash).
func TestJournal_noJITWithoutEntry(t *testing.T) {
	h := newHarness(t, Config{MaxRunners: 2}, nil, nil)
	h.s.journal = &failingJournal{newMemJournal()}
	h.assign(t, 1)
	h.reconcile(t)
	h.gh.mu.Lock()
	calls := h.gh.jitCalls
	h.gh.mu.Unlock()
	must.Zero(t, calls)
	must.SliceEmpty(t, h.be.names())
	must.Positive(t, h.rec.errors["journal"])
}
