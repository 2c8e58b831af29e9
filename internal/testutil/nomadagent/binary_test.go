// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadagent

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/shoenig/test/must"
)

// recordTB records how Binary ended a test: Skipf and Fatalf stop the
// calling goroutine, as testing's do.
type recordTB struct {
	testing.TB
	skipped, failed string
}

func (r *recordTB) Helper() {}
func (r *recordTB) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (r *recordTB) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// binary runs Binary on a recordTB in its own goroutine.
func binary() (path string, r *recordTB) {
	r = &recordTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		path = Binary(r)
	}()
	<-done
	return path, r
}

func TestBinary(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "nomad")
	must.NoError(t, os.WriteFile(fake, []byte("#!/bin/sh\n"), 0o755))
	for _, tc := range []struct {
		name, nomadBin, ci string
		want, skip, fail   string // result, substrings of the skip / failure message
	}{
		{name: "NOMAD_BIN", nomadBin: fake, want: fake},
		{name: "none skips with the install hint", skip: "../shared/nomad/install.sh"},
		{name: "none fails under CI", ci: "true", fail: "../shared/nomad/install.sh"},
		{name: "NOMAD_BIN not a file", nomadBin: filepath.Dir(fake), ci: "true", fail: "is not a file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("NOMAD_BIN", tc.nomadBin)
			t.Setenv("PATH", t.TempDir()) // no nomad on PATH
			t.Setenv("CI", tc.ci)
			got, r := binary()
			must.Eq(t, tc.want, got)
			if tc.skip != "" {
				must.StrContains(t, r.skipped, tc.skip)
			} else {
				must.Eq(t, "", r.skipped)
			}
			if tc.fail != "" {
				must.StrContains(t, r.failed, tc.fail)
			} else {
				must.Eq(t, "", r.failed)
			}
		})
	}
}
