// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package actionssim is an in-process simulator of GitHub and the GitHub
// Actions runner scale-set service, faithful enough that the official
// github.com/actions/scaleset client (and its listener package) runs
// against it unmodified. It is the stand-in for GitHub in this repository's
// tests and demos; it must not import the scale-set service it tests.
//
// # Serving
//
//	srv, err := actionssim.Start("", actionssim.Options{LongPollTimeout: 200 * time.Millisecond})
//	defer srv.Close()
//	client, err := scaleset.NewClientWithPersonalAccessToken(scaleset.NewClientWithPersonalAccessTokenConfig{
//		GitHubConfigURL: srv.OrgConfigURL("acme"), PersonalAccessToken: "any",
//	})
//
// A *Simulator is also an http.Handler (httptest.NewServer(sim) works);
// every URL it hands out is derived from the request's Host. Because the
// host is not github.com, the client sends GitHub REST calls under /api/v3.
//
// # What it models
//
// GitHub REST: App installation tokens (RS256 App JWT checked against the
// configured public key), registration tokens for org, repo and enterprise
// config URLs (PAT or installation token), and runner registration, which
// returns the service URL and an admin JWT with exp (Options.AdminTokenLifetime).
//
// Actions service: runner groups, scale sets (get by name / id, create,
// update, delete), message sessions (one per scale set, 409
// RunnerScaleSetSessionConflictException on a second; idle expiry), the
// long-poll message queue (202 after Options.LongPollTimeout; redelivery of
// unacknowledged messages; ack = DELETE), batched job messages (JobAvailable,
// JobAssigned, JobStarted, JobCompleted) always with statistics,
// acquirejobs (GHES flow, Options.JobAcquisition), generate JIT config
// (AgentExistsException on a duplicate name), runner by id / name and remove
// (JobStillRunningException for a busy runner, AgentNotFoundException when
// gone).
//
// Jobs: QueueJob / QueueJobs put workflow jobs in a queue; a job goes to the
// scale set whose labels include all its labels, within the capacity the
// listener reports in X-ScaleSetMaxCapacity. A runner of that scale set
// takes it (JobStarted), runs it for the job's Duration and completes it
// (JobCompleted), then is deleted (ephemeral). An assignment no runner takes
// within Options.AssignTimeout is cancelled (JobCompleted "canceled", no
// runner) and requeued, up to Options.MaxAssignAttempts times. Statistics
// are always derived from this state, never counted separately:
//
//	totalAvailableJobs   jobs offered with JobAvailable, not yet acquired
//	totalAcquiredJobs    acquired, waiting for capacity
//	totalAssignedJobs    assigned to the scale set: waiting for a runner or running
//	totalRunningJobs     taken by a runner
//	totalIdleRunners     online runners without a job
//	totalBusyRunners     online runners with a job
//	totalRegisteredRunners = idle + busy (a JIT config not yet used does not count)
//
// Runner side: the JIT config blob has the real shape (base64 of a JSON map
// of .runner, .credentials and .credentials_rsaparams, each base64 JSON);
// ParseJITConfig decodes it. A runner redeems it exactly once at
// /_sim/runner/redeem and then uses the small protocol in runnerapi.go
// (online, poll for a job, heartbeat, complete, offline). Package
// fakerunner implements that runner, in-process (fakerunner.Run) or as the
// sim/cmd/fakerunner binary.
//
// # Test API
//
// Snapshot, Jobs, Runners, ScaleSets and Stats return copies with states and
// timestamps (QueuedAt, AssignedAt, StartedAt, CompletedAt; CreatedAt,
// RedeemedAt, OnlineAt, BusyAt, DeletedAt) for latency measurements.
// WaitFor blocks until a condition on a Snapshot holds. Faults: FailNext,
// FailFor, SlowDown, InjectFault (per Endpoint, with Retry-After),
// ExpireAdminTokens, ExpireMessageQueueTokens, DropSession. RequestCount
// counts requests per Endpoint. Server.CreateScaleSet and
// Server.GenerateJITConfig skip the HTTP client. The control API
// (/_sim/control/..., control.go) offers the same over HTTP for a simulator
// running as its own process (package simcmd).
//
// See README.md for the endpoint list, the runner protocol, every option
// and what the simulator does not model.
package actionssim
