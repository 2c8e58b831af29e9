// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
)

// writeFakeTart writes an executable shell script standing in for tart and
// returns its path.
func writeFakeTart(t *testing.T, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tart")
	must.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\n"+script+"\n"), 0o755))
	return p
}

func TestDriver_fingerprint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		path    func(t *testing.T) string
		health  sdk.HealthState
		desc    string
		version string
	}{
		{name: "healthy", path: func(t *testing.T) string { return writeFakeTart(t, `echo 2.32.1`) },
			health: sdk.HealthStateHealthy, desc: "Healthy", version: "2.32.1"},
		{name: "missing", path: func(t *testing.T) string { return filepath.Join(t.TempDir(), "tart") },
			health: sdk.HealthStateUndetected, desc: "not found"},
		{name: "fails", path: func(t *testing.T) string { return writeFakeTart(t, `echo boom >&2; exit 3`) },
			health: sdk.HealthStateUnhealthy, desc: "does not answer --version"},
		{name: "silent", path: func(t *testing.T) string { return writeFakeTart(t, `exit 0`) },
			health: sdk.HealthStateUnhealthy, desc: "does not answer --version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := New(nil)
			d.config = &PluginConfig{TartPath: tc.path(t), MaxVMs: 2}
			fp := d.fingerprint(t.Context())
			must.Eq(t, tc.health, fp.Health)
			must.StrContains(t, fp.HealthDescription, tc.desc)
			must.Eq(t, map[string]any{"driver.tart.version": tc.version}, fp.Attributes)
		})
	}
}

func TestDriver_Fingerprint_firstAtOnceThenStopsWithContext(t *testing.T) {
	t.Parallel()
	d := New(nil)
	d.config = &PluginConfig{TartPath: writeFakeTart(t, `echo 2.32.1`), MaxVMs: 2}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch, err := d.Fingerprint(ctx)
	must.NoError(t, err)
	fp := <-ch
	must.Eq(t, sdk.HealthStateHealthy, fp.Health)
	cancel()
	for range ch { // the goroutine closes the channel once ctx ends
	}
}

func Test_preflightWarnings(t *testing.T) {
	t.Parallel()
	cfg := PluginConfig{MaxVMs: 2, Pools: []PoolConfig{{Name: "a", Size: 1}}}
	must.SliceEmpty(t, preflightWarnings(cfg, "darwin", 501))
	must.SliceEmpty(t, preflightWarnings(cfg, "linux", 0))
	w := preflightWarnings(cfg, "darwin", 0)
	must.Len(t, 1, w)
	must.StrContains(t, w[0], "running as root")
	cfg.Pools[0].Size = 2
	w = preflightWarnings(cfg, "linux", 501)
	must.Eq(t, []string{"warm pools want 2 VMs and max_vms is 2: cold starts must preempt warm VMs"}, w)
}
