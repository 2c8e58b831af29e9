// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"context"
	"testing"

	"github.com/shoenig/test/must"
)

func TestClient_Pull_progress(t *testing.T) {
	t.Parallel()
	out := "pulling ghcr.io/cirruslabs/macos:latest...\npulling manifest...\n" +
		"pulling disk (25.0 GB compressed)...\n0%\n\x1b[1A\x1b[K42%\r100%\npulling NVRAM...\n"
	f := okRunner(out)
	var got []PullProgress
	err := NewClient(withRunner(f)).Pull(context.Background(), "ghcr.io/cirruslabs/macos:latest", PullOptions{
		Progress: func(p PullProgress) { got = append(got, p) },
	})
	must.NoError(t, err)
	var phases []PullPhase
	for _, p := range got {
		phases = append(phases, p.Phase)
	}
	must.Eq(t, []PullPhase{PullStarted, PullManifest, PullDisk, PullDisk, PullDisk, PullNVRAM}, phases)
	// The size line reports 0% at once; tart's own "0%" line after it is
	// not reported a second time.
	must.Eq(t, "Pulling image: 0% (0 B of 23.3 GiB)", got[2].String())
	p42 := got[3]
	must.Eq(t, 42, p42.Percent)
	must.Eq(t, uint64(25_000_000_000), p42.TotalBytes)
	must.Eq(t, uint64(10_500_000_000), p42.Bytes)
	must.Eq(t, "Pulling image: 42% (9.8 GiB of 23.3 GiB)", p42.String())
	must.Eq(t, 100, got[4].Percent)
}

// TestPullParser_line_noRepeatedPercent feeds tart pull output in which a
// percentage repeats (the size line then "0%", a re-rendered "42%"): each
// disk progress message is reported once, in order.
func TestPullParser_line_noRepeatedPercent(t *testing.T) {
	t.Parallel()
	var msgs []string
	pp := newPullParser("ghcr.io/c/macos:latest", func(p PullProgress) {
		if p.Phase == PullDisk {
			msgs = append(msgs, p.String())
		}
	})
	for _, l := range []string{"pulling disk (2.5 GB compressed)...", "0%", "42%", "42%", "100%", "100%"} {
		pp.line(l)
	}
	must.Eq(t, []string{"Pulling image: 0% (0 B of 2.3 GiB)", "Pulling image: 42% (1001.4 MiB of 2.3 GiB)",
		"Pulling image: 100% (2.3 GiB of 2.3 GiB)"}, msgs)
}

func TestClient_Pull_cached(t *testing.T) {
	t.Parallel()
	f := okRunner("pulling x/y:1...\npulling manifest...\nx/y@sha256:ab image is already cached and linked!\n")
	var last PullProgress
	must.NoError(t, NewClient(withRunner(f)).Pull(context.Background(), "x/y:1", PullOptions{Progress: func(p PullProgress) { last = p }}))
	must.Eq(t, PullCached, last.Phase)
	must.Eq(t, "Image already cached", last.String())
}

func TestClient_EnsureImage(t *testing.T) {
	t.Parallel()
	list := `[{"Source":"local","Name":"base-vm","State":"stopped"},{"Source":"OCI","Name":"ghcr.io/c/macos:latest","State":"stopped"}]`
	cases := []struct {
		name       string
		image      string
		wantPulled bool
		wantErr    error
	}{
		{"cached default tag", "ghcr.io/c/macos", false, nil},
		{"cached explicit tag", "ghcr.io/c/macos:latest", false, nil},
		{"local vm", "base-vm", false, nil},
		{"other tag pulled", "ghcr.io/c/macos:15", true, nil},
		{"missing local vm", "nope", false, ErrVMNotFound},
		{"local name never matches oci", "ghcr.io/c/macos:latest-x", true, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeRunner{handler: func(a []string) fakeResult {
				if a[0] == "list" {
					return fakeResult{stdout: list}
				}
				return fakeResult{}
			}}
			pulled, err := NewClient(withRunner(f)).EnsureImage(context.Background(), tc.image, PullOptions{})
			if tc.wantErr != nil {
				must.ErrorIs(t, err, tc.wantErr)
				return
			}
			must.NoError(t, err)
			must.Eq(t, tc.wantPulled, pulled)
			if tc.wantPulled {
				must.Eq(t, "pull "+tc.image, f.lastCall())
			} else {
				must.Len(t, 1, f.Calls())
			}
		})
	}
}
