// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package service

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/scaleset/config"
	"github.com/tartnomad/nomad-driver-tart/scaleset/scaler"
)

func TestFileJournal_recordResolvePending(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	j, err := openJournal(dir, 7)
	must.NoError(t, err)
	got, err := j.Pending(ctx)
	must.NoError(t, err)
	must.SliceEmpty(t, got)

	must.NoError(t, j.Record(ctx, scaler.JournalEntry{Name: "linux-ab-2"}))
	must.NoError(t, j.Record(ctx, scaler.JournalEntry{Name: "linux-ab-1"}))
	must.NoError(t, j.Record(ctx, scaler.JournalEntry{Name: "linux-ab-2", RunnerID: 42}))
	must.NoError(t, j.Resolve(ctx, "linux-ab-1"))
	must.NoError(t, j.Resolve(ctx, "never-recorded"))

	// a new process reads what the last one wrote
	j2, err := openJournal(dir, 7)
	must.NoError(t, err)
	got, err = j2.Pending(ctx)
	must.NoError(t, err)
	must.Eq(t, []scaler.JournalEntry{{Name: "linux-ab-2", RunnerID: 42}}, got)

	// the file holds names and IDs only, readable by its owner only
	b, err := os.ReadFile(filepath.Join(dir, "scale-set-7.json"))
	must.NoError(t, err)
	var raw map[string]any
	must.NoError(t, json.Unmarshal(b, &raw))
	must.Eq(t, map[string]any{"version": 1.0, "scale_set_id": 7.0,
		"runners": []any{map[string]any{"name": "linux-ab-2", "runner_id": 42.0}}}, raw)
	for _, name := range []string{"scale-set-7.json", "scale-set-7.lock"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		must.NoError(t, err)
		must.Eq(t, os.FileMode(0o600), fi.Mode().Perm(), must.Sprint(name))
	}
	// no temporary file is left behind
	entries, err := os.ReadDir(dir)
	must.NoError(t, err)
	must.Len(t, 2, entries)
}

// TestFileJournal_atomicUnderConcurrentWriters: two journals on one file
// (two processes sharing state_dir) and many goroutines write at once
// while a reader decodes the raw file: no update is lost, every read sees
// a whole file, and no temporary file is left.
func TestFileJournal_atomicUnderConcurrentWriters(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	a, err := openJournal(dir, 3)
	must.NoError(t, err)
	b, err := openJournal(dir, 3)
	must.NoError(t, err)
	path := filepath.Join(dir, "scale-set-3.json")

	stop := make(chan struct{})
	readErr := make(chan error, 1)
	go func() {
		defer close(readErr)
		for {
			select {
			case <-stop:
				return
			default:
			}
			raw, err := os.ReadFile(path)
			if os.IsNotExist(err) {
				continue
			}
			var jf journalFile
			if err == nil {
				err = json.Unmarshal(raw, &jf)
			}
			if err != nil {
				readErr <- fmt.Errorf("torn read: %w (%q)", err, raw)
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range 8 {
		j := a
		if w%2 == 1 {
			j = b
		}
		wg.Go(func() {
			for i := range 10 {
				name := fmt.Sprintf("r-%d-%d", w, i)
				must.NoError(t, j.Record(ctx, scaler.JournalEntry{Name: name}))
				must.NoError(t, j.Record(ctx, scaler.JournalEntry{Name: name, RunnerID: w*100 + i + 1}))
				if i%2 == 0 {
					must.NoError(t, j.Resolve(ctx, name))
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	must.NoError(t, <-readErr)

	got, err := a.Pending(ctx)
	must.NoError(t, err)
	must.Len(t, 8*5, got)
	for _, e := range got {
		must.Positive(t, e.RunnerID, must.Sprint(e.Name))
	}
	matches, err := filepath.Glob(filepath.Join(dir, "*.tmp"))
	must.NoError(t, err)
	must.SliceEmpty(t, matches)
}

func TestFileJournal_corruptFileNamesThePath(t *testing.T) {
	for _, tc := range []struct{ name, content, want string }{
		{"not json", "{\"version\": 1, \"runn", "corrupt (unexpected end of JSON input)"},
		{"other version", `{"version": 9, "scale_set_id": 5, "runners": []}`, "version 9, want 1"},
		{"other scale set", `{"version": 1, "scale_set_id": 6, "runners": []}`, "scale set 6's, not 5's"},
		{"entry without a name", `{"version": 1, "scale_set_id": 5, "runners": [{"runner_id": 3}]}`, "an entry without a name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "scale-set-5.json")
			must.NoError(t, os.WriteFile(path, []byte(tc.content), 0o600))
			_, err := openJournal(dir, 5)
			must.ErrorContains(t, err, "start journal "+path+" is corrupt")
			must.ErrorContains(t, err, tc.want)
			// writes refuse too, rather than replace what they cannot read
			j := &fileJournal{dir: dir, path: path, lock: path + ".lock", scaleSetID: 5}
			must.ErrorContains(t, j.Record(t.Context(), scaler.JournalEntry{Name: "x"}), path)
			b, _ := os.ReadFile(path)
			must.Eq(t, tc.content, string(b))
		})
	}
}

func TestFileJournal_leftoverTempFileIsIgnored(t *testing.T) {
	dir := t.TempDir()
	// a process killed between writing its temporary file and the rename
	must.NoError(t, os.WriteFile(filepath.Join(dir, ".scale-set-4.json.123.tmp"), []byte("{\"vers"), 0o600))
	j, err := openJournal(dir, 4)
	must.NoError(t, err)
	must.NoError(t, j.Record(t.Context(), scaler.JournalEntry{Name: "a"}))
	got, err := j.Pending(t.Context())
	must.NoError(t, err)
	must.Eq(t, []scaler.JournalEntry{{Name: "a"}}, got)
}

func TestCheckStateDir_errorNamesTheField(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "a-file")
	must.NoError(t, os.WriteFile(file, nil, 0o600))
	_, err := New(Options{Config: testConfigStateDir(t, filepath.Join(file, "state"))})
	must.ErrorContains(t, err, "state_dir: cannot create "+`"`+filepath.Join(file, "state")+`"`)

	ok := filepath.Join(dir, "x", "y")
	_, err = New(Options{Config: testConfigStateDir(t, ok)})
	must.NoError(t, err)
	fi, err := os.Stat(ok)
	must.NoError(t, err)
	must.True(t, fi.IsDir())
	must.Eq(t, os.FileMode(0o700), fi.Mode().Perm())
	entries, _ := os.ReadDir(ok)
	must.SliceEmpty(t, entries, must.Sprint("the write check leaves nothing"))
}

func testConfigStateDir(t *testing.T, dir string) *config.Config {
	c := testConfig(t, "http://127.0.0.1:1/acme", scaleSetSpec{name: "linux", max: 1})
	c.StateDir = dir
	return c
}
