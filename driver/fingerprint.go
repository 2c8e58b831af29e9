// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
	"github.com/tartnomad/nomad-driver-tart/tart"
)

const (
	// fingerprintPeriod is how often tart is asked for its version; the
	// slot and pool attributes are compared after every pool event and
	// every attrPeriod, and sent when they change (unchanged values cause
	// no node update).
	fingerprintPeriod = 30 * time.Second
	attrPeriod        = 2 * time.Second
	// changeDelay gathers the burst of pool events around one change (a
	// claim, the slot's release, the refill's boot) into one comparison:
	// at most one every changeDelay. Nomad batches node updates for
	// seconds anyway.
	changeDelay = 200 * time.Millisecond
	// tartVersionTimeout bounds `tart --version`.
	tartVersionTimeout = 10 * time.Second

	attrPrefix         = "driver." + pluginName + "."
	attrVersion        = attrPrefix + "version"
	attrSlotsTotal     = attrPrefix + "slots.total"
	attrSlotsAvailable = attrPrefix + "slots.available"
	attrStartsWarm     = attrPrefix + "starts.warm"
	attrStartsCold     = attrPrefix + "starts.cold"
	attrStartsResumed  = attrPrefix + "starts.resumed"
)

// minTartVersion is the first tart with `tart exec`, which runs every task.
var minTartVersion = [3]int{2, 27, 0}

// Fingerprint sends the first fingerprint at once, then again whenever
// tart's health or the slot and pool attributes change, until ctx ends: a
// pool event (a claim, a warm VM ready or deleted) sends the attributes it
// changed within changeDelay, and a comparison every attrPeriod catches
// the rest. Nomad opens one stream; a second one gets the periodic
// comparison and whichever wake-ups the first does not take.
// Only Nomad's long-lived plugin process calls it, so it also starts the
// tart host (slots, warm pools) in the background. The goroutine is owned by ctx.
func (d *Driver) Fingerprint(ctx context.Context) (<-chan *sdk.Fingerprint, error) {
	ch := make(chan *sdk.Fingerprint, 1)
	go func() {
		defer close(ch)
		versionTick := time.NewTicker(d.versionEvery)
		defer versionTick.Stop()
		attrTick := time.NewTicker(d.attrEvery)
		defer attrTick.Stop()
		base := d.fingerprint(ctx)
		var last *sdk.Fingerprint
		refreshed := true
		var settled <-chan time.Time // armed by a pool event, nil otherwise
		for {
			if refreshed && (base.Health == sdk.HealthStateHealthy || d.hostError() != nil) {
				d.startHostInBackground() // a failed start is retried at the next version check
			}
			refreshed = false
			fp := d.withHostAttributes(base)
			if last == nil || !sameFingerprint(last, fp) {
				select {
				case ch <- fp:
					last = fp
				case <-ctx.Done():
					return
				}
			}
		wait:
			for {
				select {
				case <-versionTick.C:
					base, refreshed = d.fingerprint(ctx), true
					break wait
				case <-attrTick.C:
					break wait
				case <-d.poolChanged:
					if settled == nil {
						settled = time.After(changeDelay)
					}
				case <-settled:
					settled = nil
					break wait
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return ch, nil
}

// startHostInBackground starts the tart host without waiting for it.
func (d *Driver) startHostInBackground() {
	d.rtMu.Lock()
	defer d.rtMu.Unlock()
	d.startHostLocked()
}

// withHostAttributes adds slot and pool attributes to a healthy
// fingerprint once the tart host runs.
func (d *Driver) withHostAttributes(base *sdk.Fingerprint) *sdk.Fingerprint {
	fp := &sdk.Fingerprint{Health: base.Health, HealthDescription: base.HealthDescription, Attributes: map[string]any{}}
	for k, v := range base.Attributes {
		fp.Attributes[k] = v
	}
	rt := d.currentHost()
	if rt == nil || base.Health != sdk.HealthStateHealthy {
		return fp
	}
	if m := d.noteMismatch(rt.deviceMismatch()); m != "" {
		fp.HealthDescription += " (warning: " + m + ")"
	}
	fp.Attributes[attrSlotsTotal] = int64(rt.slots.Max())
	fp.Attributes[attrSlotsAvailable] = int64(rt.slots.Available())
	for _, ps := range rt.pool.Stats() {
		p := attrPrefix + "pool." + ps.Name + "."
		fp.Attributes[p+"ready"] = int64(ps.Ready)
		fp.Attributes[p+"size"] = int64(ps.Size)
		fp.Attributes[p+"booting"] = int64(ps.Booting)
		fp.Attributes[p+"mode"] = string(ps.Mode)
		if ps.Mode == tart.ModeResume {
			fp.Attributes[p+"templates_ready"] = int64(ps.TemplatesReady)
		}
	}
	if rt.starts != nil {
		rt.starts.attributes(fp.Attributes)
	}
	return fp
}

// startCounts counts, from the pool's events, the task VMs started per
// path (warm claim, resume from a template, cold start) and their
// durations (the claim with any wait for a booting warm VM, the resume,
// or the boot until the guest agent answered), for the driver.tart.starts.*
// attributes.
type startCounts struct {
	mu    sync.Mutex
	n     map[tart.StartPath]int64
	total map[tart.StartPath]time.Duration
}

// observe counts the event that completes a start: the pool sets
// Event.Path on exactly that one (claimed, resumed, a cold start's ready).
func (s *startCounts) observe(e tart.Event) {
	if e.Path == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == nil {
		s.n, s.total = map[tart.StartPath]int64{}, map[tart.StartPath]time.Duration{}
	}
	s.n[e.Path]++
	s.total[e.Path] += e.Duration
}

// attributes sets driver.tart.starts.{warm,resumed,cold} (counts since the
// plugin started) and their .mean_ms (0 before the first).
func (s *startCounts) attributes(attrs map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for attr, path := range map[string]tart.StartPath{attrStartsWarm: tart.PathWarm, attrStartsResumed: tart.PathResumed, attrStartsCold: tart.PathCold} {
		n := s.n[path]
		attrs[attr] = n
		mean := int64(0)
		if n > 0 {
			mean = (s.total[path] / time.Duration(n)).Milliseconds()
		}
		attrs[attr+".mean_ms"] = mean
	}
}

// noteMismatch logs a max_vms difference with the device plugin when it
// changes, and returns it.
func (d *Driver) noteMismatch(m string) string {
	d.mu.Lock()
	changed := m != d.mismatch
	d.mismatch = m
	d.mu.Unlock()
	switch {
	case changed && m != "":
		d.logger.Warn("vm slot count differs from the device plugin's", "problem", m)
	case changed:
		d.logger.Info("vm slot count agrees with the device plugin's")
	}
	return m
}

func sameFingerprint(a, b *sdk.Fingerprint) bool {
	if a.Health != b.Health || a.HealthDescription != b.HealthDescription || len(a.Attributes) != len(b.Attributes) {
		return false
	}
	for k, v := range a.Attributes {
		if w, ok := b.Attributes[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// fingerprint is healthy only when the configured tart binary exists,
// answers `tart --version` and is recent enough. Descriptions stay stable
// between calls because every change is a node update.
func (d *Driver) fingerprint(ctx context.Context) *sdk.Fingerprint {
	cfg := d.pluginConfig()
	tartPath := cfg.TartPath
	resolved, err := d.lookPath(tartPath)
	if err != nil {
		return &sdk.Fingerprint{
			Health:            sdk.HealthStateUndetected,
			HealthDescription: fmt.Sprintf("tart binary %q not found", tartPath),
			// An empty value removes a version reported earlier.
			Attributes: map[string]any{attrVersion: ""},
		}
	}
	if err := tart.NewClient(tart.WithHome(cfg.TartHome)).CheckHome(); err != nil {
		return &sdk.Fingerprint{
			Health:            sdk.HealthStateUnhealthy,
			HealthDescription: "tart_home: " + err.Error(),
			Attributes:        map[string]any{attrVersion: ""},
		}
	}
	ver, err := tartVersion(ctx, resolved)
	if err != nil {
		d.logger.Warn("failed to run tart --version", "tart_path", resolved, "error", err)
		return &sdk.Fingerprint{
			Health:            sdk.HealthStateUnhealthy,
			HealthDescription: fmt.Sprintf("tart binary %q does not answer --version", resolved),
			Attributes:        map[string]any{attrVersion: ""},
		}
	}
	if !versionAtLeast(ver, minTartVersion) {
		return &sdk.Fingerprint{
			Health:            sdk.HealthStateUnhealthy,
			HealthDescription: fmt.Sprintf("tart %s is too old: tart exec needs %d.%d.%d or newer", ver, minTartVersion[0], minTartVersion[1], minTartVersion[2]),
			Attributes:        map[string]any{attrVersion: ver},
		}
	}
	if rt := d.currentHost(); rt == nil {
		if err := d.hostError(); err != nil {
			return &sdk.Fingerprint{
				Health:            sdk.HealthStateUnhealthy,
				HealthDescription: "tart does not work: " + firstLine([]byte(err.Error())),
				Attributes:        map[string]any{attrVersion: ver},
			}
		}
	}
	desc := "Healthy"
	if w := preflightWarnings(cfg, runtime.GOOS, os.Geteuid()); len(w) > 0 {
		desc += " (warning: " + strings.Join(w, "; ") + ")"
	}
	return &sdk.Fingerprint{
		Health:            sdk.HealthStateHealthy,
		HealthDescription: desc,
		Attributes:        map[string]any{attrVersion: ver},
	}
}

// preflightWarnings lists host problems that do not stop the driver but
// will bite later. The texts are stable: every change is a node update.
func preflightWarnings(cfg PluginConfig, goos string, euid int) []string {
	var w []string
	if goos == "darwin" && euid == 0 {
		w = append(w, "running as root: tart cannot start macOS 15+ guests as root; run the agent as the GUI user")
	}
	total := 0
	for _, p := range cfg.Pools {
		total += p.Size
	}
	if total >= cfg.MaxVMs && total > 0 {
		w = append(w, fmt.Sprintf("warm pools want %d VMs and max_vms is %d: cold starts must preempt warm VMs", total, cfg.MaxVMs))
	}
	return w
}

// hostError is the last tart host start error, if the tart host is not up.
func (d *Driver) hostError() error {
	d.rtMu.Lock()
	defer d.rtMu.Unlock()
	if d.rt != nil {
		return nil
	}
	return d.rtErr
}

// versionAtLeast compares a dotted version with min; versions it cannot
// parse (a locally built tart prints SNAPSHOT) are accepted.
func versionAtLeast(v string, min [3]int) bool {
	parts := strings.SplitN(strings.TrimPrefix(strings.TrimSpace(v), "v"), ".", 3)
	for i := 0; i < 3; i++ {
		if i >= len(parts) {
			return true
		}
		n, err := strconv.Atoi(strings.TrimFunc(parts[i], func(r rune) bool { return r < '0' || r > '9' }))
		if err != nil {
			return true
		}
		if n != min[i] {
			return n > min[i]
		}
	}
	return true
}

// tartVersion runs `tart --version` and returns the first line it prints.
// It builds a bare client for tartPath: the tart host's client may not exist
// yet (the tart host starts only once tart is healthy).
func tartVersion(ctx context.Context, tartPath string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, tartVersionTimeout)
	defer cancel()
	out, err := tart.NewClient(tart.WithBinary(tartPath)).Version(ctx)
	if err != nil {
		return "", fmt.Errorf("failed to run %s --version: %w", tartPath, err)
	}
	ver := firstLine([]byte(out))
	if ver == "" {
		return "", fmt.Errorf("%s --version printed no version", tartPath)
	}
	return ver, nil
}

func firstLine(b []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			return line
		}
	}
	return ""
}
