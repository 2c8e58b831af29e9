// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package fakerunner_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/sim/actionssim"
	"github.com/tartnomad/nomad-driver-tart/sim/fakerunner"
)

func startSim(t *testing.T) *actionssim.Server {
	t.Helper()
	srv, err := actionssim.Start("", actionssim.Options{
		LongPollTimeout:   100 * time.Millisecond,
		RunnerPollTimeout: 100 * time.Millisecond,
	})
	must.NoError(t, err)
	t.Cleanup(srv.Close)
	return srv
}

// setup returns a simulator with one scale set and a JIT config for a
// runner in it.
func setup(t *testing.T) (*actionssim.Server, actionssim.ScaleSet, actionssim.Runner, string) {
	t.Helper()
	srv := startSim(t)
	ss, err := srv.CreateScaleSet("acme", "linux")
	must.NoError(t, err)
	rn, blob, err := srv.GenerateJITConfig(ss.ID, "runner-1")
	must.NoError(t, err)
	return srv, ss, rn, blob
}

func ctxTimeout(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestMain_jitConfigSources(t *testing.T) {
	// Not parallel: one case sets the process environment.
	cases := []struct {
		name  string
		args  func(blob, dir string) []string
		stdin func(blob string) string
		env   bool
	}{
		{name: "flag", args: func(blob, _ string) []string { return []string{"--jitconfig", blob} }},
		{name: "stdin", args: func(string, string) []string { return []string{"--jitconfig", "-"} },
			stdin: func(blob string) string { return blob + "\n" }},
		{name: "file", args: func(blob, dir string) []string {
			p := filepath.Join(dir, "jit")
			must.NoError(t, os.WriteFile(p, []byte(blob+"\n"), 0o600))
			return []string{"--jitconfig-file", p}
		}},
		{name: "env", args: func(string, string) []string { return nil }, env: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, _, rn, blob := setup(t)
			job := srv.QueueJob(actionssim.JobSpec{Duration: 50 * time.Millisecond, Result: actionssim.ResultFailed})
			if tc.env {
				t.Setenv(fakerunner.EnvJITConfig, blob)
			}
			var stdin string
			if tc.stdin != nil {
				stdin = tc.stdin(blob)
			}
			var stdout, stderr testutil.SyncBuffer
			code := fakerunner.Main(ctxTimeout(t), tc.args(blob, t.TempDir()), strings.NewReader(stdin), &stdout, &stderr)
			must.Eq(t, fakerunner.ExitSuccess, code, must.Sprintf("stderr:\n%s", stderr.String()))
			_, stillSet := os.LookupEnv(fakerunner.EnvJITConfig)
			must.False(t, stillSet)
			must.StrNotContains(t, stderr.String(), blob)
			must.StrContains(t, stderr.String(), job.ID)

			got := srv.Jobs()[0]
			must.Eq(t, actionssim.JobCompleted, got.State)
			must.Eq(t, actionssim.ResultFailed, got.Result) // the runner reports what the job asked for
			must.Eq(t, rn.ID, got.RunnerID)
			must.Eq(t, actionssim.RunnerDeleted, srv.Runners()[0].State)
		})
	}
}

func TestMain_usageErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cases := []struct {
		name  string
		args  []string
		stdin string
		want  int
	}{
		{name: "nothing", want: fakerunner.ExitUsage},
		{name: "both flags", args: []string{"--jitconfig", "x", "--jitconfig-file", "y"}, want: fakerunner.ExitUsage},
		{name: "missing file", args: []string{"--jitconfig-file", filepath.Join(dir, "nope")}, want: fakerunner.ExitUsage},
		{name: "empty stdin", args: []string{"--jitconfig", "-"}, want: fakerunner.ExitUsage},
		{name: "unknown flag", args: []string{"--bogus"}, want: fakerunner.ExitUsage},
		{name: "not base64", args: []string{"--jitconfig", "%%%"}, want: fakerunner.ExitBadJITConfig},
		{name: "base64 of junk", args: []string{"--jitconfig", "aGVsbG8="}, want: fakerunner.ExitBadJITConfig},
		{name: "version", args: []string{"--version"}, want: fakerunner.ExitSuccess},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut testutil.SyncBuffer
			code := fakerunner.Main(t.Context(), tc.args, strings.NewReader(tc.stdin), &out, &errOut)
			must.Eq(t, tc.want, code, must.Sprintf("stderr:\n%s", errOut.String()))
		})
	}
}

func TestRun_redeemsOnlyOnce(t *testing.T) {
	t.Parallel()
	srv, _, _, blob := setup(t)
	ctx, cancel := context.WithCancel(ctxTimeout(t))
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := fakerunner.Run(ctx, fakerunner.Config{JITConfig: blob})
		done <- err
	}()
	must.NoError(t, srv.WaitFor(ctxTimeout(t), func(s actionssim.Snapshot) bool {
		return len(s.RunnersIn(actionssim.RunnerIdle)) == 1
	}))
	st, _ := srv.Stats(1)
	must.Eq(t, actionssim.Statistics{TotalRegisteredRunners: 1, TotalIdleRunners: 1}, st)

	// A second process with the same blob while the first is idle.
	_, err := fakerunner.Run(ctxTimeout(t), fakerunner.Config{JITConfig: blob})
	must.Eq(t, fakerunner.ExitRejected, fakerunner.Code(err))
	must.ErrorContains(t, err, "already used")

	// Stopping the idle runner takes it offline.
	cancel()
	err = <-done
	must.Eq(t, fakerunner.ExitInterrupted, fakerunner.Code(err), must.Sprintf("err = %v", err))
	must.Eq(t, actionssim.RunnerOffline, srv.Runners()[0].State)
	st, _ = srv.Stats(1)
	must.Eq(t, actionssim.Statistics{}, st)
}

func TestRun_removedWhileIdle(t *testing.T) {
	t.Parallel()
	srv, _, rn, blob := setup(t)
	done := make(chan error, 1)
	go func() {
		_, err := fakerunner.Run(ctxTimeout(t), fakerunner.Config{JITConfig: blob})
		done <- err
	}()
	must.NoError(t, srv.WaitFor(ctxTimeout(t), func(s actionssim.Snapshot) bool {
		return len(s.RunnersIn(actionssim.RunnerIdle)) == 1
	}))
	must.NoError(t, srv.RemoveRunner(rn.ID))
	err := <-done
	must.Eq(t, fakerunner.ExitRejected, fakerunner.Code(err), must.Sprintf("err = %v", err))
}

func TestRun_removedBeforeStart(t *testing.T) {
	t.Parallel()
	srv, _, rn, blob := setup(t)
	must.NoError(t, srv.RemoveRunner(rn.ID))
	_, err := fakerunner.Run(ctxTimeout(t), fakerunner.Config{JITConfig: blob})
	must.Eq(t, fakerunner.ExitRejected, fakerunner.Code(err))
	must.ErrorContains(t, err, "not found")
}

func TestRun_idleTimeout(t *testing.T) {
	t.Parallel()
	srv, _, _, blob := setup(t)
	_, err := fakerunner.Run(ctxTimeout(t), fakerunner.Config{JITConfig: blob, IdleTimeout: 150 * time.Millisecond})
	must.Eq(t, fakerunner.ExitIdleTimeout, fakerunner.Code(err))
	must.Eq(t, actionssim.RunnerOffline, srv.Runners()[0].State)
}

func TestRun_interruptedDuringJob(t *testing.T) {
	t.Parallel()
	srv, _, _, blob := setup(t)
	srv.QueueJob(actionssim.JobSpec{Duration: time.Hour})
	ctx, cancel := context.WithCancel(ctxTimeout(t))
	defer cancel()
	done := make(chan error, 1)
	took := make(chan string, 1)
	go func() {
		_, err := fakerunner.Run(ctx, fakerunner.Config{JITConfig: blob, OnJob: func(id string) { took <- id }})
		done <- err
	}()
	select {
	case <-took:
	case <-ctxTimeout(t).Done():
		t.Fatal("runner never took the job")
	}
	cancel()
	err := <-done
	must.Eq(t, fakerunner.ExitInterrupted, fakerunner.Code(err), must.Sprintf("err = %v", err))
	got := srv.Jobs()[0]
	must.Eq(t, actionssim.JobCompleted, got.State)
	must.Eq(t, actionssim.ResultCanceled, got.Result)
}

func TestRun_unreachable(t *testing.T) {
	t.Parallel()
	// A port that nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must.NoError(t, err)
	addr := ln.Addr().String()
	must.NoError(t, ln.Close())
	blob, err := actionssim.EncodeJITConfig(actionssim.JITConfig{
		Runner:      actionssim.RunnerSettings{AgentID: 1, AgentName: "r"},
		Credentials: actionssim.Credentials{Data: actionssim.CredentialsData{ClientID: "c", AuthorizationURL: "http://" + addr + "/_sim/runner/redeem"}},
		RSAParams:   actionssim.RSAParams{D: "secret"},
	})
	must.NoError(t, err)
	_, err = fakerunner.Run(ctxTimeout(t), fakerunner.Config{JITConfig: blob, ConnectTimeout: 200 * time.Millisecond})
	must.Eq(t, fakerunner.ExitUnreachable, fakerunner.Code(err))
	must.StrNotContains(t, err.Error(), "secret")
}

func TestRun_survivesServiceErrors(t *testing.T) {
	t.Parallel()
	srv, _, _, blob := setup(t)
	srv.QueueJob(actionssim.JobSpec{Duration: 10 * time.Millisecond})
	srv.FailNext(3, 503, actionssim.EndpointRunnerAPI)
	res, err := fakerunner.Run(ctxTimeout(t), fakerunner.Config{JITConfig: blob})
	must.NoError(t, err)
	must.Eq(t, actionssim.ResultSucceeded, res.JobResult)
}

func TestRun_lostRunnerFailsJob(t *testing.T) {
	t.Parallel()
	srv, err := actionssim.Start("", actionssim.Options{RunnerLostTimeout: 100 * time.Millisecond, RunnerPollTimeout: 50 * time.Millisecond})
	must.NoError(t, err)
	t.Cleanup(srv.Close)
	ss, err := srv.CreateScaleSet("acme", "lost")
	must.NoError(t, err)
	_, blob, err := srv.GenerateJITConfig(ss.ID, "r")
	must.NoError(t, err)
	srv.QueueJob(actionssim.JobSpec{Duration: time.Hour})
	// Heartbeats keep a busy runner alive; blocking them makes it "lost".
	ctx, cancel := context.WithCancel(ctxTimeout(t))
	defer cancel()
	go func() { _, _ = fakerunner.Run(ctx, fakerunner.Config{JITConfig: blob, ConnectTimeout: time.Hour}) }()
	must.NoError(t, srv.WaitFor(ctxTimeout(t), func(s actionssim.Snapshot) bool {
		return len(s.JobsIn(actionssim.JobRunning)) == 1
	}))
	srv.FailFor(time.Hour, 503, actionssim.EndpointRunnerAPI)
	must.NoError(t, srv.WaitFor(ctxTimeout(t), func(s actionssim.Snapshot) bool {
		return len(s.JobsIn(actionssim.JobCompleted)) == 1
	}))
	must.Eq(t, actionssim.ResultFailed, srv.Jobs()[0].Result)
	must.Eq(t, actionssim.RunnerDeleted, srv.Runners()[0].State)
}
