// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package actionssim

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// App is a GitHub App the simulated GitHub knows. Its installation tokens
// are accepted wherever a PAT is.
type App struct {
	// ClientID is what the App JWT's iss must equal (GitHub accepts the
	// client ID or the numeric App ID; register both as two Apps if needed).
	ClientID string
	// InstallationID is the only installation this App has.
	InstallationID int64
	// PublicKey verifies the RS256 App JWT.
	PublicKey *rsa.PublicKey
}

// Options configure a Simulator. The zero value is valid: Validate fills in
// production-like defaults (50 s long poll, 1 h tokens, 5 min assignment
// timeout). Tests shorten the waits.
type Options struct {
	// Logger receives request and lifecycle logs. Secrets are never logged.
	// Default: discard.
	Logger *slog.Logger

	// PersonalAccessTokens are the PATs GitHub accepts. Empty means any
	// non-empty bearer token is accepted as a PAT.
	PersonalAccessTokens []string
	// Apps are the GitHub Apps GitHub accepts.
	Apps []App

	// AdminTokenLifetime is the lifetime of the Actions-service admin JWT
	// returned by runner registration. The official client refreshes when
	// less than 60 s remain, so a lifetime under 60 s makes it refresh
	// before every admin call. Default 1 h.
	AdminTokenLifetime time.Duration
	// MessageQueueTokenLifetime is the lifetime of a session's message-queue
	// token. Default 1 h.
	MessageQueueTokenLifetime time.Duration
	// RegistrationTokenLifetime is the lifetime of a GitHub registration
	// token. Default 1 h.
	RegistrationTokenLifetime time.Duration
	// InstallationTokenLifetime is the lifetime of an App installation
	// token. Default 1 h.
	InstallationTokenLifetime time.Duration

	// LongPollTimeout is how long GET message waits before answering 202
	// when nothing is pending. Default 50 s.
	LongPollTimeout time.Duration
	// SessionIdleTimeout is how long a session may go without a poll or a
	// refresh before the service forgets it (and a new listener can create
	// one without a 409). Default 2 min.
	SessionIdleTimeout time.Duration
	// MessageBatchSize caps the job messages in one envelope. Default 50.
	MessageBatchSize int
	// NoStatisticsMessages turns off statistics-only messages (body "")
	// that are otherwise sent when statistics change without a job event,
	// e.g. when a runner comes online.
	NoStatisticsMessages bool
	// ByteOrderMark prefixes every Actions-service and message JSON body with
	// a UTF-8 byte-order mark, as the real service sometimes does.
	ByteOrderMark bool

	// JobAcquisition selects the GHES flow: jobs are offered with
	// JobAvailable and assigned only after acquirejobs. Default (false) is
	// the github.com flow: jobs are assigned directly (JobAssigned).
	JobAcquisition bool
	// AssignTimeout is how long an assigned job may wait for a runner of its
	// scale set before the assignment is cancelled (JobCompleted "canceled")
	// and the job goes back to the queue. Default 5 min.
	AssignTimeout time.Duration
	// MaxAssignAttempts is how many times a job is assigned before it is
	// given up (completed "canceled"). Default 3.
	MaxAssignAttempts int
	// RequeueDelay is multiplied by the attempt number to delay the next
	// assignment of a requeued job. Default 0 (immediately).
	RequeueDelay time.Duration

	// RunnerPollTimeout is how long the runner-side job poll waits before
	// answering 204. Default 20 s.
	RunnerPollTimeout time.Duration
	// RunnerLostTimeout is how long an online runner may go without any
	// runner-API request (an idle runner's poll counts while it is open)
	// before the service considers it gone: an idle runner goes offline, a
	// busy runner's job fails and the runner is deleted. Default 1 min.
	RunnerLostTimeout time.Duration

	// RunnerGroups are extra runner groups besides "default" (id 1). They get
	// ids 2, 3, ... in order.
	RunnerGroups []string
}

// Validate applies defaults and returns every invalid field, joined.
func (o *Options) Validate() error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"AdminTokenLifetime", &o.AdminTokenLifetime, time.Hour},
		{"MessageQueueTokenLifetime", &o.MessageQueueTokenLifetime, time.Hour},
		{"RegistrationTokenLifetime", &o.RegistrationTokenLifetime, time.Hour},
		{"InstallationTokenLifetime", &o.InstallationTokenLifetime, time.Hour},
		{"LongPollTimeout", &o.LongPollTimeout, 50 * time.Second},
		{"SessionIdleTimeout", &o.SessionIdleTimeout, 2 * time.Minute},
		{"AssignTimeout", &o.AssignTimeout, 5 * time.Minute},
		{"RunnerPollTimeout", &o.RunnerPollTimeout, 20 * time.Second},
		{"RunnerLostTimeout", &o.RunnerLostTimeout, time.Minute},
	}
	var errs []error
	for _, d := range durations {
		if *d.v == 0 {
			*d.v = d.def
		}
		if *d.v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative, got %s", d.name, *d.v))
		}
	}
	if o.RequeueDelay < 0 {
		errs = append(errs, fmt.Errorf("RequeueDelay must not be negative, got %s", o.RequeueDelay))
	}
	if o.MessageBatchSize == 0 {
		o.MessageBatchSize = 50
	}
	if o.MessageBatchSize < 0 {
		errs = append(errs, fmt.Errorf("MessageBatchSize must be positive, got %d", o.MessageBatchSize))
	}
	if o.MaxAssignAttempts == 0 {
		o.MaxAssignAttempts = 3
	}
	if o.MaxAssignAttempts < 0 {
		errs = append(errs, fmt.Errorf("MaxAssignAttempts must be positive, got %d", o.MaxAssignAttempts))
	}
	for i, a := range o.Apps {
		if a.ClientID == "" {
			errs = append(errs, fmt.Errorf("Apps[%d].ClientID is required", i))
		}
		if a.InstallationID <= 0 {
			errs = append(errs, fmt.Errorf("Apps[%d].InstallationID must be positive, got %d", i, a.InstallationID))
		}
		if a.PublicKey == nil {
			errs = append(errs, fmt.Errorf("Apps[%d].PublicKey is required", i))
		}
	}
	for i, g := range o.RunnerGroups {
		if g == "" || g == DefaultRunnerGroup {
			errs = append(errs, fmt.Errorf("RunnerGroups[%d] must be a non-empty name other than %q, got %q", i, DefaultRunnerGroup, g))
		}
	}
	return errors.Join(errs...)
}
