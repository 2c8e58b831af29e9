// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package actionssim_test

import (
	"errors"
	"testing"
	"time"

	"github.com/actions/scaleset"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/sim/actionssim"
)

func TestSimulator_ScaleSets_crud(t *testing.T) {
	t.Parallel()
	opts := fastOptions()
	opts.RunnerGroups = []string{"blue"}
	srv := startSim(t, opts)
	c := patClient(t, srv)
	ctx := t.Context()

	g, err := c.GetRunnerGroupByName(ctx, scaleset.DefaultRunnerGroup)
	must.NoError(t, err)
	must.Eq(t, 1, g.ID)
	must.True(t, g.IsDefault)
	blue, err := c.GetRunnerGroupByName(ctx, "blue")
	must.NoError(t, err)
	must.Eq(t, 2, blue.ID)
	_, err = c.GetRunnerGroupByName(ctx, "nope")
	must.ErrorContains(t, err, "no runner group found")

	got, err := c.GetRunnerScaleSet(ctx, 1, "linux")
	must.NoError(t, err)
	must.Nil(t, got)

	created := createScaleSet(t, c, "linux", "linux", "x64")
	must.Eq(t, "linux", created.Name)
	must.Eq(t, []scaleset.Label{{Type: "System", Name: "linux"}, {Type: "System", Name: "x64"}}, created.Labels)
	must.Eq(t, "default", created.RunnerGroupName)
	must.NotNil(t, created.Statistics)

	byName, err := c.GetRunnerScaleSet(ctx, 1, "linux")
	must.NoError(t, err)
	must.Eq(t, created.ID, byName.ID)
	byID, err := c.GetRunnerScaleSetByID(ctx, created.ID)
	must.NoError(t, err)
	must.Eq(t, "linux", byID.Name)
	must.True(t, byID.RunnerSetting.DisableUpdate)

	// Name only as label when labels are empty.
	plain := createScaleSet(t, c, "plain")
	must.Eq(t, []scaleset.Label{{Type: "System", Name: "plain"}}, plain.Labels)

	_, err = c.CreateRunnerScaleSet(ctx, &scaleset.RunnerScaleSet{Name: "linux", RunnerGroupID: 1})
	must.ErrorContains(t, err, "RunnerScaleSetExistsException")

	updated, err := c.UpdateRunnerScaleSet(ctx, created.ID, &scaleset.RunnerScaleSet{
		RunnerGroupID: blue.ID, Labels: []scaleset.Label{{Name: "arm64"}},
	})
	must.NoError(t, err)
	must.Eq(t, blue.ID, updated.RunnerGroupID)
	must.Eq(t, "blue", updated.RunnerGroupName)
	must.Eq(t, "linux", updated.Name)
	must.Eq(t, []scaleset.Label{{Type: "System", Name: "arm64"}}, updated.Labels)

	// Same name in another group is allowed.
	createScaleSet(t, c, "linux")

	must.NoError(t, c.DeleteRunnerScaleSet(ctx, created.ID))
	_, err = c.GetRunnerScaleSetByID(ctx, created.ID)
	must.ErrorContains(t, err, "RunnerScaleSetNotFoundException")
	must.ErrorContains(t, err, "404")
}

func TestSimulator_Session_conflictAndRelease(t *testing.T) {
	t.Parallel()
	srv := startSim(t, fastOptions())
	c := patClient(t, srv)
	ss := createScaleSet(t, c, "sess")

	first, err := c.MessageSessionClient(t.Context(), ss.ID, "owner-a")
	must.NoError(t, err)
	sess := first.Session()
	must.NotNil(t, sess.Statistics)
	must.Eq(t, "owner-a", sess.OwnerName)
	must.NotEq(t, "", sess.MessageQueueAccessToken)
	must.Eq(t, ss.ID, sess.RunnerScaleSet.ID)

	_, err = c.MessageSessionClient(t.Context(), ss.ID, "owner-b")
	must.ErrorContains(t, err, "409")
	must.ErrorContains(t, err, "GitHub.Actions.Runtime.WebApi.RunnerScaleSetSessionConflictException")
	must.ErrorContains(t, err, "already has an active session")

	must.NoError(t, first.Close(t.Context()))
	second := sessionClient(t, c, ss.ID)
	must.NotEq(t, sess.SessionID, second.Session().SessionID)
}

func TestSimulator_Session_idleExpiry(t *testing.T) {
	t.Parallel()
	opts := fastOptions()
	opts.SessionIdleTimeout = 100 * time.Millisecond
	srv := startSim(t, opts)
	c := patClient(t, srv)
	ss := createScaleSet(t, c, "idle")
	_, err := c.MessageSessionClient(t.Context(), ss.ID, "crashed")
	must.NoError(t, err)
	must.NoError(t, srv.WaitFor(waitCtx(t), func(s actionssim.Snapshot) bool {
		v, _ := s.ScaleSetByName("idle")
		return v.SessionID == ""
	}))
	sessionClient(t, c, ss.ID)
}

func TestSimulator_GetMessage_longPollAndRedelivery(t *testing.T) {
	t.Parallel()
	srv := startSim(t, fastOptions())
	c := patClient(t, srv)
	ss := createScaleSet(t, c, "poll", "poll")
	sc := sessionClient(t, c, ss.ID)
	ctx := t.Context()

	start := time.Now()
	msg, err := sc.GetMessage(ctx, 0, 10)
	must.NoError(t, err)
	must.Nil(t, msg) // 202 after the long-poll wait
	must.GreaterEq(t, 150*time.Millisecond, time.Since(start))

	job := srv.QueueJob(actionssim.JobSpec{Labels: []string{"poll"}, Duration: time.Second})
	msg, err = sc.GetMessage(ctx, 0, 10)
	must.NoError(t, err)
	must.NotNil(t, msg)
	must.Eq(t, 1, msg.Statistics.TotalAssignedJobs)
	must.Len(t, 1, msg.JobAssignedMessages)
	a := msg.JobAssignedMessages[0]
	must.Eq(t, job.ID, a.JobID)
	must.Eq(t, job.RunnerRequestID, a.RunnerRequestID)
	must.Eq(t, []string{"poll"}, a.RequestLabels)
	must.Eq(t, "octo-repo", a.RepositoryName)
	must.Eq(t, "octo-org", a.OwnerName)
	must.False(t, a.QueueTime.IsZero())
	must.False(t, a.ScaleSetAssignTime.IsZero())

	// Not acknowledged: delivered again from lastMessageId 0, not after it.
	again, err := sc.GetMessage(ctx, 0, 10)
	must.NoError(t, err)
	must.Eq(t, msg.MessageID, again.MessageID)
	none, err := sc.GetMessage(ctx, msg.MessageID, 10)
	must.NoError(t, err)
	must.Nil(t, none)

	must.NoError(t, sc.DeleteMessage(ctx, msg.MessageID))
	must.NoError(t, sc.DeleteMessage(ctx, msg.MessageID)) // re-ack is harmless
	none, err = sc.GetMessage(ctx, 0, 10)
	must.NoError(t, err)
	must.Nil(t, none)

	v, _ := srv.Snapshot().ScaleSetByName("poll")
	must.Eq(t, 10, v.MaxCapacity)
}

func TestSimulator_Capacity_limitsAssignment(t *testing.T) {
	t.Parallel()
	srv := startSim(t, fastOptions())
	c := patClient(t, srv)
	ss := createScaleSet(t, c, "cap")
	sc := sessionClient(t, c, ss.ID)
	ctx := t.Context()

	// Report capacity 1 before any job exists.
	msg, err := sc.GetMessage(ctx, 0, 1)
	must.NoError(t, err)
	must.Nil(t, msg)
	srv.QueueJobs(3, time.Second)
	msg, err = sc.GetMessage(ctx, 0, 1)
	must.NoError(t, err)
	must.Eq(t, 1, msg.Statistics.TotalAssignedJobs)
	must.Len(t, 1, msg.JobAssignedMessages)
	must.NoError(t, sc.DeleteMessage(ctx, msg.MessageID))

	// Raising capacity assigns the rest.
	msg, err = sc.GetMessage(ctx, msg.MessageID, 5)
	must.NoError(t, err)
	must.Eq(t, 3, msg.Statistics.TotalAssignedJobs)
	must.Len(t, 2, msg.JobAssignedMessages)
}

func TestSimulator_JIT_runnersLookupAndRemoval(t *testing.T) {
	t.Parallel()
	srv := startSim(t, fastOptions())
	c := patClient(t, srv)
	ss := createScaleSet(t, c, "jit")
	ctx := t.Context()

	cfg, err := c.GenerateJitRunnerConfig(ctx, &scaleset.RunnerScaleSetJitRunnerSetting{Name: "runner-1"}, ss.ID)
	must.NoError(t, err)
	must.Eq(t, "runner-1", cfg.Runner.Name)
	must.Eq(t, ss.ID, cfg.Runner.RunnerScaleSetID)
	jit, err := actionssim.ParseJITConfig(cfg.EncodedJITConfig)
	must.NoError(t, err)
	must.Eq(t, cfg.Runner.ID, jit.Runner.AgentID)
	must.Eq(t, "runner-1", jit.Runner.AgentName)
	must.True(t, jit.Runner.Ephemeral)
	must.StrHasPrefix(t, srv.URL+"/_sim/runner/", jit.RedeemURL())

	_, err = c.GenerateJitRunnerConfig(ctx, &scaleset.RunnerScaleSetJitRunnerSetting{Name: "runner-1"}, ss.ID)
	must.True(t, errors.Is(err, scaleset.RunnerExistsError), must.Sprintf("err = %v", err))

	byID, err := c.GetRunner(ctx, cfg.Runner.ID)
	must.NoError(t, err)
	must.Eq(t, "runner-1", byID.Name)
	byName, err := c.GetRunnerByName(ctx, "runner-1")
	must.NoError(t, err)
	must.Eq(t, cfg.Runner.ID, byName.ID)
	missing, err := c.GetRunnerByName(ctx, "nobody")
	must.NoError(t, err)
	must.Nil(t, missing)

	must.NoError(t, c.RemoveRunner(ctx, int64(cfg.Runner.ID)))
	_, err = c.GetRunner(ctx, cfg.Runner.ID)
	must.True(t, errors.Is(err, scaleset.RunnerNotFoundError), must.Sprintf("err = %v", err))
	err = c.RemoveRunner(ctx, int64(cfg.Runner.ID))
	must.True(t, errors.Is(err, scaleset.RunnerNotFoundError), must.Sprintf("err = %v", err))

	// The name is free again once the registration is gone.
	_, err = c.GenerateJitRunnerConfig(ctx, &scaleset.RunnerScaleSetJitRunnerSetting{Name: "runner-1"}, ss.ID)
	must.NoError(t, err)
}
