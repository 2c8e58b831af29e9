// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/shoenig/test/must"
)

func TestWrite_contentAndMode(t *testing.T) {
	for _, tc := range []struct {
		name     string
		existing bool
		perm     os.FileMode
	}{
		{"new file 0600", false, 0o600},
		{"new file 0755", false, 0o755},
		{"replaces 0644", true, 0o644},
		{"replaces 0600", true, 0o600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "f.json")
			if tc.existing {
				must.NoError(t, os.WriteFile(p, []byte("an older and longer content"), 0o666))
			}
			must.NoError(t, Write(p, []byte("new"), tc.perm))
			b, err := os.ReadFile(p)
			must.NoError(t, err)
			must.Eq(t, "new", string(b))
			fi, err := os.Stat(p)
			must.NoError(t, err)
			must.Eq(t, tc.perm, fi.Mode().Perm())
			mustOnly(t, dir, "f.json")
		})
	}
}

func TestWrite_concurrentWriters(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f.json")
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() { errs <- Write(p, []byte(fmt.Sprintf(`{"writer":%d}`, i)), 0o600) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must.NoError(t, err)
	}
	entries, err := os.ReadDir(filepath.Dir(p))
	must.NoError(t, err)
	must.SliceLen(t, 1, entries, must.Sprint("no temporary file left"))
	b, err := os.ReadFile(p)
	must.NoError(t, err)
	must.StrHasPrefix(t, `{"writer":`, string(b), must.Sprint("one writer's whole content"))
}

func TestWrite_failureLeavesNoTemporaryFile(t *testing.T) {
	t.Run("missing directory", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "nope", "f.json")
		err := Write(p, []byte("x"), 0o600)
		must.ErrorIs(t, err, os.ErrNotExist)
		must.ErrorContains(t, err, "create temporary file for "+p)
	})
	t.Run("target is a directory", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "f.json")
		must.NoError(t, os.MkdirAll(filepath.Join(p, "child"), 0o700))
		err := Write(p, []byte("x"), 0o600)
		must.Error(t, err)
		must.ErrorContains(t, err, "rename ")
		must.ErrorContains(t, err, " to "+p)
		var linkErr *os.LinkError
		must.True(t, errors.As(err, &linkErr), must.Sprintf("%T wraps the rename's *os.LinkError", err))
		mustOnly(t, dir, "f.json")
	})
}

// mustOnly asserts that dir holds exactly the named entry: no temporary
// file was left behind.
func mustOnly(t *testing.T, dir, name string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	must.NoError(t, err)
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	must.Eq(t, name, strings.Join(names, ","))
}
