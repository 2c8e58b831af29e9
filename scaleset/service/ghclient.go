// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package service

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/actions/scaleset"

	"github.com/tartnomad/nomad-driver-tart/scaleset/scaler"
)

// renewEvery bounds how often a client is rebuilt after 401s.
const renewEvery = 5 * time.Second

// ghClient holds a scale set's GitHub client and replaces it when the
// Actions service no longer accepts its tokens. The official client
// caches its admin token until it expires and does not refresh on a 401,
// so after a restart of the Actions service (which forgets every token it
// issued) every admin call would fail until then; a new client fetches a
// new registration token and admin token.
type ghClient struct {
	build  func() (*scaleset.Client, error)
	logger *slog.Logger

	mu      sync.Mutex
	cur     *scaleset.Client
	info    scaleset.SystemInfo
	renewed time.Time
}

var _ scaler.GitHub = (*ghClient)(nil)

func newGHClient(build func() (*scaleset.Client, error), logger *slog.Logger) (*ghClient, error) {
	c, err := build()
	if err != nil {
		return nil, err
	}
	return &ghClient{build: build, logger: logger, cur: c}, nil
}

// client returns the current client.
func (g *ghClient) client() *scaleset.Client {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cur
}

// SetSystemInfo sets the system info of this and every later client.
func (g *ghClient) SetSystemInfo(info scaleset.SystemInfo) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.info = info
	g.cur.SetSystemInfo(info)
}

// unauthorized reports a 401 from the Actions service.
func unauthorized(err error) bool {
	return err != nil && (strings.Contains(err.Error(), `status="401`) || strings.Contains(err.Error(), "VssUnauthorizedException"))
}

// renewOn401 rebuilds the client when err is a 401, at most once per
// renewEvery. It reports whether it did.
func (g *ghClient) renewOn401(err error) bool {
	if !unauthorized(err) {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if time.Since(g.renewed) < renewEvery {
		return false
	}
	g.renewed = time.Now()
	c, berr := g.build()
	if berr != nil {
		g.logger.Warn("failed to rebuild the GitHub client after a 401", "error", berr)
		return false
	}
	if g.info != (scaleset.SystemInfo{}) {
		c.SetSystemInfo(g.info)
	}
	g.cur = c
	g.logger.Warn("the Actions service refused our token (401): fetched new credentials", "error", err)
	return true
}

// GenerateJitRunnerConfig implements scaler.GitHub.
func (g *ghClient) GenerateJitRunnerConfig(ctx context.Context, s *scaleset.RunnerScaleSetJitRunnerSetting, id int) (*scaleset.RunnerScaleSetJitRunnerConfig, error) {
	jit, err := g.client().GenerateJitRunnerConfig(ctx, s, id)
	if g.renewOn401(err) {
		jit, err = g.client().GenerateJitRunnerConfig(ctx, s, id)
	}
	return jit, err
}

// GetRunnerByName implements scaler.GitHub.
func (g *ghClient) GetRunnerByName(ctx context.Context, name string) (*scaleset.RunnerReference, error) {
	ref, err := g.client().GetRunnerByName(ctx, name)
	if g.renewOn401(err) {
		ref, err = g.client().GetRunnerByName(ctx, name)
	}
	return ref, err
}

// RemoveRunner implements scaler.GitHub.
func (g *ghClient) RemoveRunner(ctx context.Context, id int64) error {
	err := g.client().RemoveRunner(ctx, id)
	if g.renewOn401(err) {
		err = g.client().RemoveRunner(ctx, id)
	}
	return err
}

// MessageSessionClient opens the message session, renewing the client on
// a 401 once.
func (g *ghClient) MessageSessionClient(ctx context.Context, scaleSetID int, owner string) (*scaleset.MessageSessionClient, error) {
	s, err := g.client().MessageSessionClient(ctx, scaleSetID, owner)
	if g.renewOn401(err) {
		s, err = g.client().MessageSessionClient(ctx, scaleSetID, owner)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to create message session: %w", err)
	}
	return s, nil
}
