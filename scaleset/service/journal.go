// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/tartnomad/nomad-driver-tart/internal/atomicfile"
	"github.com/tartnomad/nomad-driver-tart/scaleset/scaler"
)

// journalVersion is the format version of a start journal file.
const journalVersion = 1

// journalFile is what a start journal file holds: names and runner IDs of
// the scale set's runner registrations, never a JIT config or any other
// secret.
type journalFile struct {
	Version    int                   `json:"version"`
	ScaleSetID int                   `json:"scale_set_id"`
	Runners    []scaler.JournalEntry `json:"runners"`
}

// fileJournal is the scaler's StartJournal as one small JSON file per
// scale set under state_dir, scale-set-<id>.json. Every change rewrites
// the file through a uniquely named temporary file (0600), synced and
// renamed over it, so a crash leaves the old or the new file, never a
// torn one. An flock on scale-set-<id>.lock serialises the
// read-modify-write across processes sharing the directory (a second
// instance taking over the session).
type fileJournal struct {
	dir        string
	path, lock string
	scaleSetID int
	mu         sync.Mutex // serialises this process's updates
}

var _ scaler.StartJournal = (*fileJournal)(nil)

// openJournal opens the start journal of a scale set in dir (which must
// exist) and reads it once, so that a corrupt file stops the scale set at
// start-up with an error naming it.
func openJournal(dir string, scaleSetID int) (*fileJournal, error) {
	name := fmt.Sprintf("scale-set-%d", scaleSetID)
	j := &fileJournal{dir: dir, path: filepath.Join(dir, name+".json"), lock: filepath.Join(dir, name+".lock"), scaleSetID: scaleSetID}
	if _, err := j.Pending(context.Background()); err != nil {
		return nil, err
	}
	return j, nil
}

// Record implements scaler.StartJournal.
func (j *fileJournal) Record(_ context.Context, e scaler.JournalEntry) error {
	return j.update(func(m map[string]scaler.JournalEntry) bool {
		if old, ok := m[e.Name]; ok && old == e {
			return false
		}
		m[e.Name] = e
		return true
	})
}

// Resolve implements scaler.StartJournal.
func (j *fileJournal) Resolve(_ context.Context, name string) error {
	return j.update(func(m map[string]scaler.JournalEntry) bool {
		if _, ok := m[name]; !ok {
			return false
		}
		delete(m, name)
		return true
	})
}

// Pending implements scaler.StartJournal, sorted by name.
func (j *fileJournal) Pending(context.Context) ([]scaler.JournalEntry, error) {
	var out []scaler.JournalEntry
	err := j.update(func(m map[string]scaler.JournalEntry) bool {
		out = sorted(m)
		return false
	})
	return out, err
}

// update applies f to the entries under both locks and writes the file
// when f reports a change.
func (j *fileJournal) update(f func(map[string]scaler.JournalEntry) bool) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	lk, err := os.OpenFile(j.lock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("failed to open start journal lock %s: %w", j.lock, err)
	}
	defer lk.Close() // releases the flock
	if err := syscall.Flock(int(lk.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("failed to lock start journal %s: %w", j.lock, err)
	}
	m, err := j.read()
	if err != nil {
		return err
	}
	if !f(m) {
		return nil
	}
	return j.write(m)
}

// read loads the entries; a missing file is an empty journal.
func (j *fileJournal) read() (map[string]scaler.JournalEntry, error) {
	m := map[string]scaler.JournalEntry{}
	b, err := os.ReadFile(j.path)
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read start journal %s: %w", j.path, err)
	}
	var jf journalFile
	corrupt := func(why string) error {
		return fmt.Errorf("start journal %s is corrupt (%s); move it away once no registration it names is left on GitHub", j.path, why)
	}
	if err := json.Unmarshal(b, &jf); err != nil {
		return nil, corrupt(err.Error())
	}
	switch {
	case jf.Version != journalVersion:
		return nil, corrupt(fmt.Sprintf("version %d, want %d", jf.Version, journalVersion))
	case jf.ScaleSetID != j.scaleSetID:
		return nil, corrupt(fmt.Sprintf("it is scale set %d's, not %d's", jf.ScaleSetID, j.scaleSetID))
	}
	for _, e := range jf.Runners {
		if e.Name == "" {
			return nil, corrupt("an entry without a name")
		}
		m[e.Name] = e
	}
	return m, nil
}

// write replaces the file atomically (atomicfile.Write): a unique
// temporary file in the same directory, synced, renamed over the journal,
// then the directory synced.
func (j *fileJournal) write(m map[string]scaler.JournalEntry) error {
	b, err := json.MarshalIndent(journalFile{Version: journalVersion, ScaleSetID: j.scaleSetID, Runners: sorted(m)}, "", "  ")
	if err != nil {
		return fmt.Errorf("failed to encode start journal %s: %w", j.path, err)
	}
	if err := atomicfile.Write(j.path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("failed to write start journal %s: %w", j.path, err)
	}
	return nil
}

func sorted(m map[string]scaler.JournalEntry) []scaler.JournalEntry {
	out := make([]scaler.JournalEntry, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b scaler.JournalEntry) int { return strings.Compare(a.Name, b.Name) })
	return out
}
