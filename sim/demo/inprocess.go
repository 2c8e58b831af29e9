// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/config"
	"github.com/tartnomad/nomad-driver-tart/scaleset/service"
)

// serviceStopTimeout bounds the wait for the in-process service to stop
// (its shutdown_timeout is serviceShutdownTimeout; the rest is margin).
const (
	serviceShutdownTimeout = 20 * time.Second
	serviceStopTimeout     = serviceShutdownTimeout + 10*time.Second
)

// countingBackend remembers the backend the service built and its peak.
type countingBackend struct {
	backend.Backend
	mu   sync.Mutex
	peak int
}

func (c *countingBackend) ListRunners(ctx context.Context) ([]backend.Runner, error) {
	rs, err := c.Backend.ListRunners(ctx)
	if err == nil {
		alive := 0
		for _, r := range rs {
			if r.State == backend.StatePending || r.State == backend.StateRunning {
				alive++
			}
		}
		c.mu.Lock()
		c.peak = max(c.peak, alive)
		c.mu.Unlock()
	}
	return rs, err
}

// purge removes every runner the backend still holds, within 30 s, and
// returns how many it removed.
func purge(ctx context.Context, out io.Writer, be backend.Backend) int {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rs, err := be.ListRunners(ctx)
	if err != nil {
		fmt.Fprintf(out, "failed to list runners to clean up: %v\n", err)
		return 0
	}
	n := 0
	for _, r := range rs {
		if err := be.RemoveRunner(ctx, r.ResourceID); err != nil {
			fmt.Fprintf(out, "failed to remove runner %s (%s): %v\n", r.Name, r.ResourceID, err)
			continue
		}
		n++
	}
	return n
}

func drain(ch chan error) error {
	select {
	case err := <-ch:
		return err
	case <-time.After(serviceStopTimeout):
		return fmt.Errorf("service did not stop within %s", serviceStopTimeout)
	}
}

func serviceConfig(url, name, stateDir string, env *backendEnv, o Options) (*config.Config, error) {
	maxR := o.MaxRunners
	ss := &config.ScaleSet{
		Name: name, Labels: []string{name}, MinRunners: o.MinRunners, MaxRunners: &maxR,
		Backend: env.kind, ReconcileInterval: "1s", RunnerOnlineTimeout: "2m",
		StartBackoffMin: "500ms", StartBackoffMax: "10s", RemoveIdleRunnersOnShutdown: true,
	}
	if env.docker != nil {
		ss.Docker = &config.BackendBlock{Value: env.docker}
	}
	if env.tart != nil {
		ss.Tart = &config.BackendBlock{Value: env.tart}
	}
	cfg := &config.Config{
		GitHubConfigURL: url, ListenAddress: "127.0.0.1:0", ShutdownTimeout: serviceShutdownTimeout.String(),
		GitHubToken: "demo-token", ScaleSets: []*config.ScaleSet{ss}, StateDir: stateDir,
	}
	if err := errors.Join(cfg.Validate(), service.ValidateBackends(cfg)); err != nil {
		return nil, fmt.Errorf("invalid demo configuration: %w", err)
	}
	return cfg, nil
}
