// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadbackend_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/nomadbackend"
)

// caseEnv is what one case works with.
type caseEnv struct {
	nt    nomadTarget
	proxy *countingProxy
	jobID string
	slug  string
	// token holds the example policy's rights; the backend uses it
	// unless a case says otherwise.
	token string
	logs  []*testutil.SyncBuffer
}

// runner is a runner name unique to the case (the control files are
// shared by the target's cases).
func (e *caseEnv) runner(n int) string { return fmt.Sprintf("%s-r-%d", e.slug, n) }

func (e *caseEnv) q(ctx context.Context) *api.QueryOptions {
	return (&api.QueryOptions{Namespace: runnerNS}).WithContext(ctx)
}

func (e *caseEnv) w(ctx context.Context) *api.WriteOptions {
	return (&api.WriteOptions{Namespace: runnerNS}).WithContext(ctx)
}

func (e *caseEnv) config() nomadbackend.Config {
	return nomadbackend.Config{Address: e.proxy.url, Namespace: runnerNS, JobID: e.jobID,
		PurgeGracePeriod: "1h", StartupTimeout: "5s"}
}

// newBackend starts a backend with token (the example policy's when
// empty) and mutate applied to the config.
func (e *caseEnv) newBackend(t *testing.T, token string, mutate func(*nomadbackend.Config)) (*nomadbackend.Backend, *testutil.SyncBuffer, error) {
	t.Helper()
	if token == "" {
		token = e.token
	}
	cfg := e.config()
	if mutate != nil {
		mutate(&cfg)
	}
	logs := &testutil.SyncBuffer{}
	e.logs = append(e.logs, logs)
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	env := func(k string) string {
		if k == "NOMAD_TOKEN" {
			return token
		}
		return ""
	}
	b, err := nomadbackend.New(t.Context(), cfg, caseScaleSet, logger, nomadbackend.WithGetenv(env),
		nomadbackend.WithBackoff(func(int) time.Duration { return 50 * time.Millisecond }))
	if err == nil {
		t.Cleanup(func() { b.Shutdown(context.Background()) })
	}
	return b, logs, err
}

func (e *caseEnv) backend(t *testing.T, mutate func(*nomadbackend.Config)) (*nomadbackend.Backend, *testutil.SyncBuffer) {
	t.Helper()
	b, logs, err := e.newBackend(t, "", mutate)
	must.NoError(t, err)
	return b, logs
}

// dispatchRaw dispatches the case's job as an earlier run of the service
// (or another tool) would.
func (e *caseEnv) dispatchRaw(t *testing.T, jobID, runner, scaleSet string) *api.JobDispatchResponse {
	t.Helper()
	resp, _, err := e.nt.API().Jobs().Dispatch(jobID, map[string]string{nomadbackendRunnerKey: runner, nomadbackendScaleSetKey: scaleSet},
		[]byte(caseJIT), runner, e.w(t.Context()))
	must.NoError(t, err)
	return resp
}

// cleanup purges every job the case left (children first) and checks that
// no JIT config reached a backend log.
func (e *caseEnv) cleanup(t *testing.T) {
	for _, l := range e.logs {
		if strings.Contains(l.String(), caseJIT) {
			t.Errorf("the JIT config is in a backend log")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stubs, _, err := e.nt.API().Jobs().List(e.q(ctx).WithContext(ctx))
	if err != nil {
		t.Errorf("cleanup: list jobs: %v", err)
		return
	}
	for _, s := range stubs {
		if s.ParentID == e.jobID || strings.HasPrefix(s.ID, e.jobID) {
			_, _, _ = e.nt.API().Jobs().Deregister(s.ID, true, e.w(ctx))
		}
	}
}

// waitRunner polls ListRunners until runner is in state.
func waitRunner(t *testing.T, b *nomadbackend.Backend, runner string, state backend.State) backend.Runner {
	t.Helper()
	var last []backend.Runner
	var lastErr error
	deadline := time.Now().Add(caseWait)
	for time.Now().Before(deadline) {
		list, err := b.ListRunners(t.Context())
		last, lastErr = list, err
		for _, r := range list {
			if r.Name == runner && r.State == state {
				return r
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("runner %s never reached %s; last list %+v (error %v)", runner, state, last, lastErr)
	return backend.Runner{}
}

// eventually polls cond until it holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(caseWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func runnerNames(list []backend.Runner) map[string]backend.State {
	out := map[string]backend.State{}
	for _, r := range list {
		out[r.Name] = r.State
	}
	return out
}

// jobGone reports whether id no longer exists (404 job not found).
func (e *caseEnv) jobGone(t *testing.T, id string) bool {
	t.Helper()
	_, _, err := e.nt.API().Jobs().Info(id, e.q(t.Context()))
	if err == nil {
		return false
	}
	var ue api.UnexpectedResponseError
	must.True(t, errors.As(err, &ue), must.Sprintf("read %s: %v", id, err))
	must.Eq(t, 404, ue.StatusCode())
	must.StrContains(t, ue.Body(), "job not found")
	return true
}

// listedStub finds id in the job list of the case's namespace.
func listedStub(t *testing.T, e *caseEnv, id string) *api.JobListStub {
	t.Helper()
	stubs, _, err := e.nt.API().Jobs().ListOptions(&api.JobListOptions{Fields: &api.JobListFields{Meta: true}},
		&api.QueryOptions{Namespace: runnerNS, Prefix: id})
	must.NoError(t, err)
	for _, s := range stubs {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("%s not listed", id)
	return nil
}

// mustRemove deletes runner's control files, so the runner name can be
// dispatched again.
func mustRemove(t *testing.T, e *caseEnv, runner string) {
	t.Helper()
	for _, suffix := range []string{".exit", ".payload", ".started"} {
		_ = os.Remove(filepath.Join(e.nt.CtlDir(), runner+suffix))
	}
}
