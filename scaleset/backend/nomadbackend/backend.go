// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package nomadbackend runs GitHub Actions runners for the scale-set service
// as dispatched instances of a parameterized Nomad job: one dispatch per
// runner, with the JIT config as the dispatch payload and the runner name
// in the meta and the job ID. Nomad places, runs and retries; this package
// dispatches, watches the dispatched children with blocking queries, and
// purges them.
//
// Nomad is the source of truth: on start the backend adopts the children
// that are still alive, purges dead ones after a grace period, and reports
// children that failed (with Nomad's reason) so the service removes their
// GitHub registration.
//
// It imports github.com/hashicorp/nomad/api only; it never logs or returns
// the JIT config.
package nomadbackend

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
)

// kindName is the backend kind reported by Backend.Name.
const kindName = "nomad"

// Errors callers can test for with errors.Is.
var (
	// ErrPermissionDenied: Nomad answered 403; the token lacks a capability.
	ErrPermissionDenied = errors.New("nomad: permission denied")
	// ErrUnreachable: Nomad did not answer (network error or 5xx).
	ErrUnreachable = errors.New("nomad: unreachable")
	// ErrJobInvalid: the parameterized job is missing or unusable.
	ErrJobInvalid = errors.New("nomad: parameterized job is not usable")
	// ErrPayloadTooLarge: the JIT config is over Nomad's 16 KiB limit.
	ErrPayloadTooLarge = errors.New("nomad: dispatch payload too large")
	// ErrNotOurs: a resource ID that is not a child of the configured job.
	ErrNotOurs = errors.New("nomad: not a dispatched child of this backend's job")
)

// Backend implements backend.Backend on Nomad dispatch.
type Backend struct {
	cfg      Config
	scaleSet string
	log      *slog.Logger
	client   *api.Client
	addr     string
	ns       string
	prefix   string // "<job_id>/dispatch-"
	now      func() time.Time
	backoff  func(attempt int) time.Duration
	getenv   func(string) string
	drivers  []string // of the parameterized job's tasks, for placement hints
	// sendRunnerID: the job declares RunnerIDMetaKey, so dispatches carry it.
	sendRunnerID bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	children map[string]*child
	// purged remembers children this backend purged, with the index of
	// the purge, so a list answered before the purge does not bring them
	// back.
	purged    map[string]uint64
	lastErr   error
	failingAt time.Time
	index     uint64
	// synced: a list succeeded before, so children first seen now were
	// dispatched since, not adopted.
	synced bool
}

// child is one dispatched job as the backend sees it.
type child struct {
	id, runner  string
	runnerID    int // GitHub runner ID from the dispatch meta; 0 if none
	createIndex uint64
	created     time.Time
	state       backend.State
	reason      string
	// capacity: pending because Nomad queued it for capacity (see
	// backend.Runner.WaitingForCapacity).
	capacity bool
	// detailIndex is the summary index the reason was read at.
	detailIndex uint64
	deadSince   time.Time
	warned      bool
	// listed: seen in a list at least once (before that, a child we just
	// dispatched may be missing from a list taken earlier).
	listed bool
}

var (
	_ backend.RunnerBackend = (*Backend)(nil)
	_ backend.Backend       = (*Backend)(nil)
)

// Option adjusts a Backend (mostly for tests).
type Option func(*Backend)

// WithGetenv replaces os.Getenv for the NOMAD_* variables.
func WithGetenv(f func(string) string) Option {
	return func(b *Backend) { b.getenv = f }
}

// WithBackoff replaces the retry delay after the attempt-th failure
// (default 1s doubling to 30s).
func WithBackoff(f func(attempt int) time.Duration) Option {
	return func(b *Backend) { b.backoff = f }
}

func (b *Backend) setDefaults() {
	if b.getenv == nil {
		b.getenv = os.Getenv
	}
	if b.now == nil {
		b.now = time.Now
	}
	if b.backoff == nil {
		b.backoff = func(attempt int) time.Duration {
			d := time.Second << min(attempt, 5)
			return min(d, 30*time.Second)
		}
	}
}

// New validates cfg, connects to Nomad (retrying with backoff up to
// startup_timeout while Nomad is unreachable), checks the parameterized
// job, adopts its live children and starts watching them.
//
// logger is expected to carry the scale set's scale_set and backend keys
// already (scaleset/service adds them to the logger it hands every
// backend); New adds only job_id and namespace, so no key is repeated.
func New(ctx context.Context, cfg Config, scaleSetName string, logger *slog.Logger, opts ...Option) (*Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("nomad backend config: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	b := &Backend{cfg: cfg, scaleSet: scaleSetName, children: map[string]*child{}, purged: map[string]uint64{}}
	for _, o := range opts {
		o(b)
	}
	b.setDefaults()
	ac, err := cfg.apiConfig(b.getenv)
	if err != nil {
		return nil, fmt.Errorf("nomad backend config: %w", err)
	}
	b.addr, b.ns = ac.Address, ac.Namespace
	b.prefix = cfg.JobID + "/dispatch-"
	b.log = logger.With("job_id", cfg.JobID, "namespace", b.ns)
	if b.client, err = api.NewClient(ac); err != nil {
		return nil, fmt.Errorf("nomad backend: failed to create the Nomad client for %s: %w", b.addr, err)
	}
	if err := b.startup(ctx); err != nil {
		b.client.Close()
		return nil, err
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.watch(b.ctx)
	}()
	return b, nil
}

// startup checks the parameterized job and takes the first view of its
// children, retrying while Nomad is unreachable.
func (b *Backend) startup(parent context.Context) error {
	ctx, cancel := context.WithTimeout(parent, b.cfg.Startup)
	defer cancel()
	for attempt := 0; ; attempt++ {
		err := b.checkJob(ctx)
		if err == nil {
			err = b.refresh(ctx, 0, 0)
		}
		if err == nil {
			b.mu.Lock()
			n := len(b.children)
			b.mu.Unlock()
			b.log.Info("nomad backend ready", "address", b.addr, "adopted_children", n)
			return nil
		}
		switch {
		case parent.Err() != nil:
			return fmt.Errorf("nomad backend: startup canceled: %w", err)
		case ctx.Err() != nil:
			// the deadline ended a request in flight
			return fmt.Errorf("nomad backend: gave up after %s (startup_timeout): %w: %w", b.cfg.Startup, ErrUnreachable, err)
		case !errors.Is(err, ErrUnreachable):
			return err
		}
		d := b.backoff(attempt)
		b.log.Warn("nomad is unreachable, retrying", "address", b.addr, "attempt", attempt+1, "retry_in", d.String(), "error", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("nomad backend: gave up after %s (startup_timeout): %w", b.cfg.Startup, err)
		case <-time.After(d):
		}
	}
}

// checkJob reads the parameterized job and checks that dispatching it
// with our payload and meta can work.
func (b *Backend) checkJob(ctx context.Context) error {
	job, _, err := b.client.Jobs().Info(b.cfg.JobID, b.query(ctx))
	if err != nil {
		var ue api.UnexpectedResponseError
		if errors.As(err, &ue) && ue.StatusCode() == http.StatusNotFound {
			return fmt.Errorf("%w: job %q does not exist in namespace %q at %s: register it first (nomad job run)",
				ErrJobInvalid, b.cfg.JobID, b.ns, b.addr)
		}
		return b.classify(err, "read job %q", b.cfg.JobID)
	}
	if err := b.validateJob(job); err != nil {
		return fmt.Errorf("%w: %w", ErrJobInvalid, err)
	}
	return nil
}

// validateJob returns a joined error naming each thing to fix in the job.
func (b *Backend) validateJob(job *api.Job) error {
	id := b.cfg.JobID
	pj := job.ParameterizedJob
	if pj == nil || job.Dispatched {
		return fmt.Errorf("job %q is not parameterized: add parameterized { payload = \"required\" meta_required = [%q, %q] }",
			id, b.cfg.RunnerNameMetaKey, b.cfg.ScaleSetMetaKey)
	}
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if job.Stop != nil && *job.Stop {
		add("job %q is stopped: run it again (nomad job run)", id)
	}
	if pj.Payload != "required" {
		add("job %q: parameterized.payload is %q: set payload = \"required\" (the JIT config is the payload)", id, pj.Payload)
	}
	for _, k := range []string{b.cfg.RunnerNameMetaKey, b.cfg.ScaleSetMetaKey} {
		if !slices.Contains(pj.MetaRequired, k) {
			add("job %q: parameterized.meta_required must contain %q (the service sends it with every dispatch)", id, k)
		}
	}
	for k := range b.cfg.Meta {
		if !slices.Contains(pj.MetaRequired, k) && !slices.Contains(pj.MetaOptional, k) {
			add("job %q: meta key %q from the nomad block is in neither parameterized.meta_required nor meta_optional", id, k)
		}
	}
	b.sendRunnerID = slices.Contains(pj.MetaRequired, b.cfg.RunnerIDMetaKey) || slices.Contains(pj.MetaOptional, b.cfg.RunnerIDMetaKey)
	if !b.sendRunnerID {
		b.log.Warn("the parameterized job does not declare the runner ID meta key: add it to meta_optional so a restarted service adopts runners by ID (without it, it looks each adopted runner up by its name)",
			"job_id", id, "meta_key", b.cfg.RunnerIDMetaKey)
	}
	for _, k := range pj.MetaRequired {
		if _, ok := b.cfg.Meta[k]; !ok && k != b.cfg.RunnerNameMetaKey && k != b.cfg.ScaleSetMetaKey && k != b.cfg.RunnerIDMetaKey {
			add("job %q: parameterized.meta_required has %q, which the service does not send: add it to meta in the nomad block or remove it", id, k)
		}
	}
	hasPayloadFile := false
	b.drivers = b.drivers[:0]
	for _, tg := range job.TaskGroups {
		for _, t := range tg.Tasks {
			if t.DispatchPayload != nil && t.DispatchPayload.File != "" {
				hasPayloadFile = true
			}
			if !slices.Contains(b.drivers, t.Driver) {
				b.drivers = append(b.drivers, t.Driver)
			}
		}
	}
	if !hasPayloadFile {
		add("job %q: no task has dispatch_payload { file = ... }, so the JIT config would never reach the runner", id)
	}
	if job.Type != nil && *job.Type != "batch" {
		b.log.Warn("the parameterized job is not a batch job; one-shot runners should be type = \"batch\"", "type", *job.Type)
	}
	return errors.Join(errs...)
}

func (b *Backend) query(ctx context.Context) *api.QueryOptions {
	return (&api.QueryOptions{Namespace: b.ns}).WithContext(ctx)
}

func (b *Backend) write(ctx context.Context) *api.WriteOptions {
	return (&api.WriteOptions{Namespace: b.ns}).WithContext(ctx)
}

// classify wraps a Nomad API error with one of the package's sentinels and
// what was being done.
func (b *Backend) classify(err error, format string, a ...any) error {
	what := fmt.Sprintf(format, a...)
	var ue api.UnexpectedResponseError
	if errors.As(err, &ue) && ue.HasStatusCode() {
		switch code := ue.StatusCode(); {
		case code == http.StatusForbidden:
			return fmt.Errorf("%w: failed to %s in namespace %q: the token needs list-jobs, read-job, dispatch-job and purge-job (or submit-job) there (see examples/scaleset-dispatch/scaleset-acl-policy.hcl): %s",
				ErrPermissionDenied, what, b.ns, ue.Body())
		case code >= 500:
			return fmt.Errorf("%w: failed to %s at %s: %d %s", ErrUnreachable, what, b.addr, code, ue.Body())
		default:
			return fmt.Errorf("nomad: failed to %s: %d %s", what, code, ue.Body())
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("nomad: failed to %s: %w", what, err)
	}
	return fmt.Errorf("%w: failed to %s at %s: %w", ErrUnreachable, what, b.addr, err)
}

// Name implements backend.Backend.
func (b *Backend) Name() string { return kindName }

// StartRunner dispatches the parameterized job with the JIT config as the
// payload. The resource ID is the dispatched job's ID.
func (b *Backend) StartRunner(ctx context.Context, name, jitConfig string) (string, error) {
	return b.StartIdentified(ctx, backend.Identity{Name: name}, jitConfig)
}

// StartIdentified is StartRunner that also sends the GitHub runner ID in
// the dispatch meta (runner_id_meta_key), when the job declares that key.
func (b *Backend) StartIdentified(ctx context.Context, id backend.Identity, jitConfig string) (string, error) {
	name := id.Name
	if len(jitConfig) > DispatchPayloadLimit {
		return "", fmt.Errorf("%w: runner %q: the JIT config is %d bytes, over Nomad's dispatch payload limit of %d bytes",
			ErrPayloadTooLarge, name, len(jitConfig), DispatchPayloadLimit)
	}
	if jitConfig == "" {
		return "", fmt.Errorf("nomad: runner %q: empty JIT config", name)
	}
	meta := make(map[string]string, len(b.cfg.Meta)+2)
	for k, v := range b.cfg.Meta {
		meta[k] = v
	}
	meta[b.cfg.RunnerNameMetaKey] = name
	meta[b.cfg.ScaleSetMetaKey] = b.scaleSet
	if b.sendRunnerID && id.RunnerID > 0 {
		meta[b.cfg.RunnerIDMetaKey] = strconv.Itoa(id.RunnerID)
	}
	resp, _, err := b.client.Jobs().Dispatch(b.cfg.JobID, meta, []byte(jitConfig), b.cfg.idPrefix(name, b.scaleSet), b.write(ctx))
	if err != nil {
		return "", redact(b.classify(err, "dispatch job %q for runner %q", b.cfg.JobID, name), jitConfig)
	}
	b.mu.Lock()
	if _, ok := b.children[resp.DispatchedJobID]; !ok {
		b.children[resp.DispatchedJobID] = &child{id: resp.DispatchedJobID, runner: name, runnerID: id.RunnerID, createIndex: resp.JobCreateIndex,
			created: b.now(), state: backend.StatePending}
	}
	b.mu.Unlock()
	b.log.Info("dispatched runner job", "runner_name", name, "dispatched_job_id", resp.DispatchedJobID, "eval_id", resp.EvalID)
	return resp.DispatchedJobID, nil
}

// redact removes the secret, and its base64 form as the dispatch request
// carries the payload, from an error's text, in case a server or proxy
// echoed the request. It runs after classify so the package's sentinels
// still match with errors.Is, while errors.As cannot reach the Nomad
// response (whose body holds the secret).
func redact(err error, secret string) error {
	if err == nil || secret == "" {
		return err
	}
	msg := err.Error()
	clean := strings.ReplaceAll(msg, secret, "[redacted]")
	clean = strings.ReplaceAll(clean, base64.StdEncoding.EncodeToString([]byte(secret)), "[redacted]")
	if clean == msg {
		return err
	}
	return &redactedError{msg: clean, err: err}
}

// redactedError is an error with a secret taken out of its text. It
// matches what the original matched with errors.Is but does not unwrap.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }

// Is lets errors.Is see the original's sentinels (ErrPermissionDenied,
// ErrUnreachable, context errors).
func (e *redactedError) Is(target error) bool { return errors.Is(e.err, target) }

// RemoveRunner stops and purges a dispatched job. One already gone is not
// an error; an ID that is not a child of the configured job is refused.
func (b *Backend) RemoveRunner(ctx context.Context, resourceID string) error {
	if !strings.HasPrefix(resourceID, b.prefix) {
		return fmt.Errorf("%w: %q (expected prefix %q)", ErrNotOurs, resourceID, b.prefix)
	}
	if err := b.purge(ctx, resourceID); err != nil {
		return err
	}
	b.log.Info("purged runner job", "dispatched_job_id", resourceID)
	return nil
}

// purge deregisters a child with purge=true and forgets it.
func (b *Backend) purge(ctx context.Context, id string) error {
	_, wm, err := b.client.Jobs().Deregister(id, true, b.write(ctx))
	if err != nil {
		return b.classify(err, "purge job %q", id)
	}
	b.mu.Lock()
	delete(b.children, id)
	b.purged[id] = max(wm.LastIndex, b.index+1)
	b.mu.Unlock()
	return nil
}

// ListRunners returns the runners of this scale set from the watched view
// (one per runner name: the newest dispatch). It fails while Nomad cannot
// be read, so callers do not act on a stale view.
func (b *Backend) ListRunners(_ context.Context) ([]backend.Runner, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.lastErr != nil {
		return nil, fmt.Errorf("nomad backend: view of dispatched jobs is stale since %s: %w",
			b.failingAt.UTC().Format(time.RFC3339), b.lastErr)
	}
	newest := map[string]*child{}
	for _, c := range b.children {
		if cur, ok := newest[c.runner]; !ok || c.createIndex > cur.createIndex {
			newest[c.runner] = c
		}
	}
	out := make([]backend.Runner, 0, len(newest))
	for _, c := range newest {
		out = append(out, backend.Runner{Name: c.runner, RunnerID: c.runnerID, ResourceID: c.id, State: c.state, Reason: c.reason,
			WaitingForCapacity: c.capacity && c.state == backend.StatePending, CreatedAt: c.created})
	}
	return out, nil
}

// Shutdown stops watching. Dispatched jobs keep running in Nomad; the next
// start adopts them.
func (b *Backend) Shutdown(_ context.Context) {
	if b.cancel != nil {
		b.cancel()
	}
	b.wg.Wait()
	b.client.Close()
	b.log.Info("nomad backend stopped; dispatched jobs keep running and are adopted on restart")
}
