// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package fakerunner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/tartnomad/nomad-driver-tart/sim/actionssim"
)

// Exit codes of the fake runner.
const (
	// ExitSuccess: the runner ran its job (whatever the job's result) and
	// is done.
	ExitSuccess = 0
	// ExitError: an unexpected protocol or internal error.
	ExitError = 1
	// ExitUsage: bad flags, or no JIT config given, or it could not be read.
	ExitUsage = 2
	// ExitBadJITConfig: the JIT config is malformed.
	ExitBadJITConfig = 3
	// ExitRejected: the service refused the runner: the JIT config was
	// already used, its credential is wrong, or the registration was deleted
	// (before or while the runner waited for a job).
	ExitRejected = 4
	// ExitUnreachable: the service could not be reached within the connect
	// timeout.
	ExitUnreachable = 5
	// ExitInterrupted: the runner was stopped (signal / context) before
	// finishing a job. It went offline (idle) or reported the job canceled.
	ExitInterrupted = 6
	// ExitIdleTimeout: no job arrived within the idle timeout; the runner
	// went offline.
	ExitIdleTimeout = 7
)

// exitError carries a fake-runner exit code with its cause; Code reads it.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// Code returns the exit code for an error returned by Run: ExitSuccess for
// nil, ExitError for errors not produced by Run.
func Code(err error) int {
	if err == nil {
		return ExitSuccess
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return ExitError
}

func fail(code int, format string, args ...any) error {
	return &exitError{code: code, err: fmt.Errorf(format, args...)}
}

// Config configures Run.
type Config struct {
	// JITConfig is the encodedJITConfig blob. Required. Secret.
	JITConfig string
	// Logger receives progress logs. Default: discard.
	Logger *slog.Logger
	// HTTPClient talks to the simulator. Default: a client without timeout
	// (long polls are bounded by the server).
	HTTPClient *http.Client
	// ConnectTimeout bounds how long the runner retries an unreachable or
	// failing (5xx) simulator before giving up with ExitUnreachable.
	// Default 15 s.
	ConnectTimeout time.Duration
	// OnJob, when set, is called with the job id after the runner took a
	// job and before it runs it (a test hook).
	OnJob func(jobID string)
	// IdleTimeout, when set, makes the runner go offline and stop with
	// ExitIdleTimeout if no job arrives in time. Default 0: wait forever,
	// like the real runner.
	IdleTimeout time.Duration
}

// Validate applies defaults and checks the config.
func (c *Config) Validate() error {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 15 * time.Second
	}
	var errs []error
	if strings.TrimSpace(c.JITConfig) == "" {
		errs = append(errs, errors.New("JITConfig is required"))
	}
	if c.ConnectTimeout < 0 {
		errs = append(errs, fmt.Errorf("ConnectTimeout must not be negative, got %s", c.ConnectTimeout))
	}
	if c.IdleTimeout < 0 {
		errs = append(errs, fmt.Errorf("IdleTimeout must not be negative, got %s", c.IdleTimeout))
	}
	return errors.Join(errs...)
}

// Result describes a finished run.
type Result struct {
	RunnerID   int
	RunnerName string
	JobID      string
	JobResult  string
}

// Run is one ephemeral runner life: redeem, online, take one job, run it,
// complete. The error's Code is the process exit code.
func Run(ctx context.Context, cfg Config) (res Result, err error) {
	defer func() {
		// Whatever failed while the runner was being stopped counts as
		// an interruption.
		if err != nil && ctx.Err() != nil && Code(err) == ExitError {
			err = &exitError{code: ExitInterrupted, err: err}
		}
	}()
	if err := cfg.Validate(); err != nil {
		return res, fail(ExitUsage, "invalid fake runner config: %w", err)
	}
	jit, err := actionssim.ParseJITConfig(cfg.JITConfig)
	if err != nil {
		return res, &exitError{code: ExitBadJITConfig, err: err}
	}
	c := &client{http: cfg.HTTPClient, connectTimeout: cfg.ConnectTimeout,
		base: strings.TrimSuffix(jit.RedeemURL(), "/redeem")}
	log := cfg.Logger.With("runner_name", jit.Runner.AgentName, "runner_id", jit.Runner.AgentID)

	var red actionssim.RedeemResponse
	if _, err := c.call(ctx, http.MethodPost, jit.RedeemURL(), actionssim.RedeemRequest{
		ClientID: jit.Credentials.Data.ClientID, Key: jit.RSAParams.D,
	}, &red); err != nil {
		return res, fmt.Errorf("redeeming JIT config: %w", err)
	}
	res.RunnerID, res.RunnerName = red.RunnerID, red.RunnerName
	c.token = red.AccessToken
	log.Info("redeemed JIT config")

	if _, err := c.call(ctx, http.MethodPost, c.base+"/online", nil, nil); err != nil {
		c.offline(log)
		return res, fmt.Errorf("going online: %w", err)
	}
	log.Info("runner online, waiting for a job")

	job, err := c.waitForJob(ctx, cfg.IdleTimeout)
	if err != nil {
		c.offline(log)
		return res, err
	}
	res.JobID = job.JobID
	log = log.With("job_id", job.JobID)
	log.Info("job started", "duration", time.Duration(job.DurationMS)*time.Millisecond)
	if cfg.OnJob != nil {
		cfg.OnJob(job.JobID)
	}

	result := job.Result
	hb := time.Duration(red.HeartbeatIntervalMS) * time.Millisecond
	if hb <= 0 {
		hb = 10 * time.Second
	}
	if err := c.runJob(ctx, time.Duration(job.DurationMS)*time.Millisecond, hb); err != nil {
		result = actionssim.ResultCanceled
	}
	// Report with a context that survives cancellation: a stopped runner
	// still tells the service the job ended.
	repCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ConnectTimeout)
	defer cancel()
	if _, err := c.call(repCtx, http.MethodPost, c.base+"/complete",
		actionssim.CompleteRequest{JobID: job.JobID, Result: result}, nil); err != nil {
		return res, fmt.Errorf("reporting job completion: %w", err)
	}
	res.JobResult = result
	log.Info("job completed", "result", result)
	if ctx.Err() != nil {
		return res, fail(ExitInterrupted, "runner stopped during job %s: %w", job.JobID, ctx.Err())
	}
	return res, nil
}

// offline tells the service an idle runner is leaving; best effort.
func (c *client) offline(log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.connectTimeout = min(c.connectTimeout, 5*time.Second)
	if _, err := c.call(ctx, http.MethodPost, c.base+"/offline", nil, nil); err != nil {
		log.Debug("failed to go offline", "error", err)
	}
}

func (c *client) waitForJob(ctx context.Context, idle time.Duration) (actionssim.RunnerJob, error) {
	var job actionssim.RunnerJob
	var deadline <-chan time.Time
	if idle > 0 {
		t := time.NewTimer(idle)
		defer t.Stop()
		deadline = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return job, fail(ExitInterrupted, "runner stopped while waiting for a job: %w", ctx.Err())
		case <-deadline:
			return job, fail(ExitIdleTimeout, "no job within the idle timeout of %s", idle)
		default:
		}
		status, err := c.call(ctx, http.MethodGet, c.base+"/job", nil, &job)
		if err != nil {
			if ctx.Err() != nil {
				return job, fail(ExitInterrupted, "runner stopped while waiting for a job: %w", ctx.Err())
			}
			return job, fmt.Errorf("polling for a job: %w", err)
		}
		if status == http.StatusOK {
			return job, nil
		}
	}
}

// runJob "runs" the job: waits d, sending heartbeats every hb.
func (c *client) runJob(ctx context.Context, d, hb time.Duration) error {
	done := time.NewTimer(d)
	defer done.Stop()
	beat := time.NewTicker(hb)
	defer beat.Stop()
	for {
		select {
		case <-done.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-beat.C:
			hbCtx, cancel := context.WithTimeout(ctx, hb)
			_, _ = c.call(hbCtx, http.MethodPost, c.base+"/heartbeat", nil, nil) // missed beats are retried next tick
			cancel()
		}
	}
}

// client is the runner-API client.
type client struct {
	http           *http.Client
	base           string // .../_sim/runner
	token          string
	connectTimeout time.Duration
}

// call sends one request, retrying transport errors and 5xx for up to
// connectTimeout. It returns the final status; 4xx answers become
// ExitRejected (404, 401, 409 on redeem) or ExitError.
func (c *client) call(ctx context.Context, method, url string, in, out any) (int, error) {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, fmt.Errorf("encoding request: %w", err)
		}
		body = b
	}
	giveUp := time.Now().Add(c.connectTimeout)
	backoff := 50 * time.Millisecond
	for {
		status, respBody, err := c.once(ctx, method, url, body)
		retryable := err != nil || status >= 500
		if !retryable {
			return c.decode(status, respBody, out)
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if time.Now().After(giveUp) {
			if err == nil {
				err = fmt.Errorf("status %d", status)
			}
			return 0, fail(ExitUnreachable, "simulator unreachable at %s %s after %s: %w",
				method, redactPath(url), c.connectTimeout, err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return 0, ctx.Err()
		}
		backoff = min(backoff*2, time.Second)
	}
}

func (c *client) once(ctx context.Context, method, url string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "actionssim-fakerunner")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// Every transport error counts as "unreachable" and is retried.
		return 0, nil, fmt.Errorf("sending request: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("reading response: %w", err)
	}
	return resp.StatusCode, bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")), nil
}

func (c *client) decode(status int, body []byte, out any) (int, error) {
	switch {
	case status == http.StatusOK && out != nil:
		if err := json.Unmarshal(body, out); err != nil {
			return status, fail(ExitError, "decoding response: %w", err)
		}
		return status, nil
	case status >= 200 && status < 300:
		return status, nil
	}
	var exc struct {
		TypeName string `json:"typeName"`
		Message  string `json:"message"`
	}
	_ = json.Unmarshal(body, &exc) // a non-JSON body leaves the message empty
	msg := fmt.Sprintf("status %d: %s", status, exc.Message)
	switch status {
	case http.StatusNotFound, http.StatusUnauthorized, http.StatusConflict:
		return status, fail(ExitRejected, "service refused the runner: %s", msg)
	default:
		return status, fail(ExitError, "unexpected answer: %s", msg)
	}
}

// redactPath keeps only scheme, host and path of a URL for errors.
func redactPath(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		return u[:i]
	}
	return u
}
