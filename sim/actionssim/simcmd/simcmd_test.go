// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package simcmd_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/sim/actionssim"
	"github.com/tartnomad/nomad-driver-tart/sim/actionssim/simcmd"
)

func TestMain_servesControlAPI(t *testing.T) {
	t.Parallel()
	urlFile := filepath.Join(t.TempDir(), "url")
	ctx, cancel := context.WithCancel(t.Context())
	var stdout, stderr testutil.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- simcmd.Main(ctx, []string{"--url-file", urlFile, "--long-poll-timeout", "100ms"}, &stdout, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		must.Eq(t, 0, <-done)
	})

	var base string
	deadline := time.Now().Add(10 * time.Second)
	for base == "" {
		b, err := os.ReadFile(urlFile)
		if err == nil && strings.HasSuffix(string(b), "\n") {
			base = strings.TrimSpace(string(b))
			break
		}
		must.True(t, time.Now().Before(deadline), must.Sprint("simulator never wrote its URL"))
		time.Sleep(10 * time.Millisecond) // polling a file another goroutine writes
	}
	resp, err := http.Post(base+"/_sim/control/jobs", "application/json", strings.NewReader(`{"count":2,"durationMs":5}`))
	must.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	must.Eq(t, http.StatusOK, resp.StatusCode)

	resp, err = http.Get(base + "/_sim/control/snapshot")
	must.NoError(t, err)
	defer resp.Body.Close()
	var snap actionssim.Snapshot
	must.NoError(t, json.NewDecoder(resp.Body).Decode(&snap))
	must.Len(t, 2, snap.Jobs)
	must.Eq(t, actionssim.JobQueued, snap.Jobs[0].State)
}

func TestMain_flags(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		want int
	}{
		{name: "non-loopback", args: []string{"--listen", "0.0.0.0:0"}, want: 2},
		{name: "bad flag", args: []string{"--nope"}, want: 2},
		{name: "bad duration", args: []string{"--assign-timeout", "x"}, want: 2},
		{name: "negative duration", args: []string{"--assign-timeout", "-1s"}, want: 1},
		{name: "version", args: []string{"--version"}, want: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut testutil.SyncBuffer
			must.Eq(t, tc.want, simcmd.Main(t.Context(), tc.args, &out, &errOut))
		})
	}
}
