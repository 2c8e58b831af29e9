// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package actionssim_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/actions/scaleset"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/sim/actionssim"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.CleanupBuilds()
	os.Exit(code)
}

const testPAT = "ghp_simtesttoken"

// fastOptions are options with short waits for tests.
func fastOptions() actionssim.Options {
	return actionssim.Options{
		PersonalAccessTokens: []string{testPAT},
		LongPollTimeout:      150 * time.Millisecond,
		RunnerPollTimeout:    150 * time.Millisecond,
		SessionIdleTimeout:   time.Minute,
		RunnerLostTimeout:    time.Minute,
	}
}

// startSim starts a simulator that is closed when the test ends.
func startSim(t *testing.T, opts actionssim.Options) *actionssim.Server {
	t.Helper()
	srv, err := actionssim.Start("", opts)
	must.NoError(t, err)
	t.Cleanup(srv.Close)
	return srv
}

// fastRetry makes the official client retry quickly.
var fastRetry = []scaleset.HTTPOption{scaleset.WithRetryWaitMax(5 * time.Millisecond)}

// patClient returns an official client for the org "acme" on srv.
func patClient(t *testing.T, srv *actionssim.Server, opts ...scaleset.HTTPOption) *scaleset.Client {
	t.Helper()
	c, err := scaleset.NewClientWithPersonalAccessToken(scaleset.NewClientWithPersonalAccessTokenConfig{
		GitHubConfigURL:     srv.OrgConfigURL("acme"),
		PersonalAccessToken: testPAT,
		SystemInfo:          scaleset.SystemInfo{System: "actionssim-test", Subsystem: "test"},
	}, append(append([]scaleset.HTTPOption{}, fastRetry...), opts...)...)
	must.NoError(t, err)
	return c
}

// createScaleSet creates a scale set with the client and returns it.
func createScaleSet(t *testing.T, c *scaleset.Client, name string, labels ...string) *scaleset.RunnerScaleSet {
	t.Helper()
	ss := &scaleset.RunnerScaleSet{Name: name, RunnerGroupID: 1, RunnerSetting: scaleset.RunnerSetting{DisableUpdate: true}}
	for _, l := range labels {
		ss.Labels = append(ss.Labels, scaleset.Label{Name: l})
	}
	created, err := c.CreateRunnerScaleSet(t.Context(), ss)
	must.NoError(t, err)
	must.Positive(t, created.ID)
	return created
}

// sessionClient creates a message session that is closed when the test ends.
func sessionClient(t *testing.T, c *scaleset.Client, scaleSetID int) *scaleset.MessageSessionClient {
	t.Helper()
	sc, err := c.MessageSessionClient(t.Context(), scaleSetID, "test-owner")
	must.NoError(t, err)
	t.Cleanup(func() { _ = sc.Close(context.Background()) })
	return sc
}

// waitCtx returns a context bounded for waiting in tests.
func waitCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
