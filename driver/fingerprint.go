// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
)

const (
	// fingerprintPeriod is how often the fingerprint is re-sent; unchanged
	// values cause no node update.
	fingerprintPeriod = 30 * time.Second
	// tartVersionTimeout bounds `tart --version`.
	tartVersionTimeout = 10 * time.Second

	attrVersion = "driver." + PluginName + ".version"
)

// Fingerprint sends the first fingerprint at once, then every
// fingerprintPeriod until ctx ends. The goroutine is owned by ctx.
func (d *Driver) Fingerprint(ctx context.Context) (<-chan *sdk.Fingerprint, error) {
	ch := make(chan *sdk.Fingerprint, 1)
	go func() {
		defer close(ch)
		ticker := time.NewTicker(fingerprintPeriod)
		defer ticker.Stop()
		for {
			select {
			case ch <- d.fingerprint(ctx):
			case <-ctx.Done():
				return
			}
			select {
			case <-ticker.C:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, nil
}

// fingerprint is healthy only when the configured tart binary exists and
// answers `tart --version`. Descriptions stay stable between calls because
// every change is a node update.
func (d *Driver) fingerprint(ctx context.Context) *sdk.Fingerprint {
	tartPath := d.pluginConfig().TartPath
	resolved, err := d.lookPath(tartPath)
	if err != nil {
		return &sdk.Fingerprint{
			Health:            sdk.HealthStateUndetected,
			HealthDescription: fmt.Sprintf("tart binary %q not found", tartPath),
			// An empty value removes a version reported earlier.
			Attributes: map[string]any{attrVersion: ""},
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
	return &sdk.Fingerprint{
		Health:            sdk.HealthStateHealthy,
		HealthDescription: "Healthy",
		Attributes:        map[string]any{attrVersion: ver},
	}
}

// tartVersion runs `tart --version` and returns the first line it prints.
func tartVersion(ctx context.Context, tartPath string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, tartVersionTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, tartPath, "--version")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("failed to run %s --version: %w: %s", tartPath, err, firstLine(stderr.Bytes()))
	}
	ver := firstLine(stdout.Bytes())
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
