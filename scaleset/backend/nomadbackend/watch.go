// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadbackend

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
)

// minWait bounds how short a blocking query's wait gets when a purge is
// due soon.
const minWait = 50 * time.Millisecond

// watch keeps the view current with blocking queries on the list of
// dispatched children until ctx ends. The list's index covers the jobs and
// their summaries, and a summary changes with every allocation status
// change, so one blocking query sees pending → running → complete/failed
// of every child without polling each one.
func (b *Backend) watch(ctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		b.mu.Lock()
		index := b.index
		b.mu.Unlock()
		began := time.Now()
		err := b.refresh(ctx, index, b.nextWait())
		if ctx.Err() != nil {
			return
		}
		b.mu.Lock()
		unchanged := b.index == index
		b.mu.Unlock()
		if err == nil && unchanged && time.Since(began) < minWait {
			// A blocking query that answers at once without a new index
			// (a proxy that drops ?index, a server bug) must not spin.
			select {
			case <-ctx.Done():
				return
			case <-time.After(minWait):
			}
		}
		if err != nil {
			b.mu.Lock()
			if b.lastErr == nil {
				b.failingAt = b.now()
			}
			b.lastErr = err
			// Start over with a non-blocking query: a Nomad that comes
			// back may have a lower index (a restored snapshot, a new
			// cluster), and a blocking query on the old one would wait.
			b.index = 0
			b.mu.Unlock()
			d := b.backoff(failures)
			failures++
			b.log.Warn("failed to watch dispatched jobs, retrying", "attempt", failures, "retry_in", d.String(), "error", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
			continue
		}
		if failures > 0 {
			b.log.Info("nomad is reachable again", "failed_attempts", failures)
			failures = 0
		}
		b.purgeDue(ctx)
	}
}

// nextWait is the blocking wait: blocking_wait, or less when a purge of a
// dead child falls due sooner.
func (b *Backend) nextWait() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	wait := b.cfg.Wait
	now := b.now()
	for _, c := range b.children {
		if c.deadSince.IsZero() {
			continue
		}
		wait = min(wait, max(c.deadSince.Add(b.cfg.PurgeGrace).Sub(now), minWait))
	}
	return wait
}

// observed is one listed child with what the list and details say.
type observed struct {
	stub     *api.JobListStub
	runner   string
	runnerID int
	state    backend.State
	reason   string
	// capacity: queued for capacity (placement failed on exhausted nodes).
	capacity bool
	fetch    string // "allocs", "evals" or ""
	summary  uint64
}

// refresh lists the children (blocking when index > 0) and folds them into
// the view.
func (b *Backend) refresh(ctx context.Context, index uint64, wait time.Duration) error {
	q := b.query(ctx)
	q.Prefix, q.WaitIndex, q.WaitTime = b.prefix, index, wait
	stubs, qm, err := b.client.Jobs().ListOptions(&api.JobListOptions{Fields: &api.JobListFields{Meta: true}}, q)
	if err != nil {
		return b.classify(err, "list jobs with prefix %q", b.prefix)
	}
	var seen []*observed
	for _, s := range stubs {
		if s.ParentID != b.cfg.JobID {
			continue
		}
		o, err := b.observe(ctx, s)
		if err != nil {
			return err
		}
		if o != nil {
			seen = append(seen, o)
		}
	}
	for _, o := range seen {
		b.details(ctx, o)
	}
	b.merge(seen, qm.LastIndex)
	return nil
}

// observe maps a stub to a runner and a state. Children of another scale
// set (a shared parent job) are skipped.
func (b *Backend) observe(ctx context.Context, s *api.JobListStub) (*observed, error) {
	meta := s.Meta
	if meta == nil {
		b.mu.Lock()
		known := b.children[s.ID]
		b.mu.Unlock()
		if known != nil {
			meta = map[string]string{b.cfg.RunnerNameMetaKey: known.runner, b.cfg.ScaleSetMetaKey: b.scaleSet,
				b.cfg.RunnerIDMetaKey: strconv.Itoa(known.runnerID)}
		} else {
			// Nomad before 1.6 has no ?meta=true: read the job once.
			job, _, err := b.client.Jobs().Info(s.ID, b.query(ctx))
			if err != nil {
				return nil, b.classify(err, "read job %q", s.ID)
			}
			meta = job.Meta
		}
	}
	if meta[b.cfg.ScaleSetMetaKey] != b.scaleSet {
		return nil, nil
	}
	o := &observed{stub: s, runner: meta[b.cfg.RunnerNameMetaKey]}
	if o.runner == "" {
		o.runner = runnerFromID(b.prefix, s.ID)
	}
	if id, err := strconv.Atoi(meta[b.cfg.RunnerIDMetaKey]); err == nil && id > 0 {
		o.runnerID = id
	}
	var sum api.TaskGroupSummary
	if s.JobSummary != nil {
		o.summary = s.JobSummary.ModifyIndex
		for _, tg := range s.JobSummary.Summary {
			sum.Queued += tg.Queued
			sum.Starting += tg.Starting
			sum.Running += tg.Running
			sum.Complete += tg.Complete
			sum.Failed += tg.Failed
			sum.Lost += tg.Lost
		}
	}
	switch {
	case sum.Running > 0:
		o.state = backend.StateRunning
	case sum.Failed > 0 || sum.Lost > 0:
		o.state, o.fetch = backend.StateFailed, "allocs"
	case s.Status == "dead" && sum.Complete > 0:
		o.state = backend.StateExited
	case s.Status == "dead":
		o.state, o.reason = backend.StateFailed, "the dispatched job was stopped before its runner started"
	case sum.Queued > 0:
		o.state, o.fetch = backend.StatePending, "evals"
	default:
		o.state = backend.StatePending
	}
	return o, nil
}

var dispatchSuffix = regexp.MustCompile(`-\d+-[0-9a-f]{8}$`)

// runnerFromID recovers the runner name from <prefix><runner>-<unix>-<8 hex>.
func runnerFromID(prefix, id string) string {
	return dispatchSuffix.ReplaceAllString(strings.TrimPrefix(id, prefix), "")
}

// details reads why a child failed or cannot be placed, once per summary
// change. Errors leave the reason empty; the state is still right.
func (b *Backend) details(ctx context.Context, o *observed) {
	if o.fetch == "" {
		return
	}
	b.mu.Lock()
	c := b.children[o.stub.ID]
	if c != nil && c.detailIndex == o.summary && c.reason != "" {
		o.reason, o.capacity = c.reason, c.capacity
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	switch o.fetch {
	case "allocs":
		allocs, _, err := b.client.Jobs().Allocations(o.stub.ID, true, b.query(ctx))
		if err != nil {
			b.log.Debug("failed to read allocations", "dispatched_job_id", o.stub.ID, "error", err)
			return
		}
		o.reason = allocFailure(allocs)
	case "evals":
		evals, _, err := b.client.Jobs().Evaluations(o.stub.ID, b.query(ctx))
		if err != nil {
			b.log.Debug("failed to read evaluations", "dispatched_job_id", o.stub.ID, "error", err)
			return
		}
		o.reason, o.capacity = placementFailure(evals, b.drivers)
	}
}

// allocFailure describes the newest allocation's failure from its task
// events.
func allocFailure(allocs []*api.AllocationListStub) string {
	if len(allocs) == 0 {
		return "the dispatched job failed"
	}
	a := allocs[0]
	for _, x := range allocs[1:] {
		if x.CreateIndex > a.CreateIndex {
			a = x
		}
	}
	msg := a.ClientDescription
	tasks := make([]string, 0, len(a.TaskStates))
	for name := range a.TaskStates {
		tasks = append(tasks, name)
	}
	sort.Strings(tasks)
	for _, name := range tasks {
		for _, e := range a.TaskStates[name].Events {
			switch e.Type {
			case "Driver Failure", "Setup Failure", "Failed Validation", "Task hook failed", "Terminated", "Failed Artifact Download":
				text := e.DisplayMessage
				if text == "" {
					text = e.Message
				}
				msg = fmt.Sprintf("task %q: %s: %s", name, e.Type, text)
			}
		}
	}
	return fmt.Sprintf("allocation %s on node %q %s: %s", short(a.ID), a.NodeName, a.ClientStatus, msg)
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// placementFailure describes the newest evaluation's failed placements as
// `nomad job status` does, and reports whether they are a wait for
// capacity: every failed task group was refused only by nodes that fit it
// but are full (NodesExhausted, e.g. "devices: no devices match request"
// once every VM slot is taken), so Nomad keeps the evaluation blocked and
// places the runner when capacity frees. A group no node can ever run
// (filtered by constraints, a missing driver, unhealthy devices) is a
// failure to report, not a queue.
func placementFailure(evals []*api.Evaluation, drivers []string) (reason string, capacity bool) {
	var ev *api.Evaluation
	for _, e := range evals {
		if len(e.FailedTGAllocs) > 0 && (ev == nil || e.ModifyIndex > ev.ModifyIndex) {
			ev = e
		}
	}
	if ev == nil {
		return "waiting for Nomad to place the runner", false
	}
	groups := make([]string, 0, len(ev.FailedTGAllocs))
	for g := range ev.FailedTGAllocs {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	var parts []string
	capacity = true
	for _, g := range groups {
		m := ev.FailedTGAllocs[g]
		if m.NodesExhausted == 0 {
			capacity = false
		}
		text := describeMetric(m)
		// The hint only helps when no node could take it at all: with full
		// nodes the driver is there, on the nodes that are full.
		if m.ConstraintFiltered["missing drivers"] > 0 && m.NodesExhausted == 0 && len(drivers) > 0 {
			text += fmt.Sprintf(" (no eligible node with driver %s)", strings.Join(drivers, ", "))
		}
		parts = append(parts, fmt.Sprintf("task group %q: %s", g, text))
	}
	if capacity {
		return "queued for capacity (Nomad places the runner when a node frees up): " + strings.Join(parts, "; "), true
	}
	return "Nomad cannot place the runner: " + strings.Join(parts, "; "), false
}

func describeMetric(m *api.AllocationMetric) string {
	var parts []string
	if m.NodesEvaluated == 0 {
		parts = append(parts, "no nodes were eligible for evaluation")
	}
	for dc, n := range m.NodesAvailable {
		if n == 0 {
			parts = append(parts, fmt.Sprintf("no nodes are available in datacenter %q", dc))
		}
	}
	sorted := func(mm map[string]int, format string) {
		keys := make([]string, 0, len(mm))
		for k := range mm {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf(format, k, mm[k]))
		}
	}
	sorted(m.ClassFiltered, "class %q filtered %d nodes")
	sorted(m.ConstraintFiltered, "constraint %q filtered %d nodes")
	if m.NodesExhausted > 0 {
		parts = append(parts, fmt.Sprintf("resources exhausted on %d nodes", m.NodesExhausted))
	}
	sorted(m.ClassExhausted, "class %q exhausted on %d nodes")
	sorted(m.DimensionExhausted, "dimension %q exhausted on %d nodes")
	for _, q := range m.QuotaExhausted {
		parts = append(parts, fmt.Sprintf("quota limit reached: %s", q))
	}
	if len(parts) == 0 {
		return "no node could run it"
	}
	return strings.Join(parts, ", ")
}

// merge folds observations at index into the view.
func (b *Backend) merge(seen []*observed, index uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	present := make(map[string]bool, len(seen))
	for _, o := range seen {
		id := o.stub.ID
		if at, ok := b.purged[id]; ok && index < at {
			continue // listed before our purge took effect
		}
		present[id] = true
		c := b.children[id]
		if c == nil {
			c = &child{id: id, runner: o.runner, runnerID: o.runnerID, createIndex: o.stub.CreateIndex, created: time.Unix(0, o.stub.SubmitTime)}
			b.children[id] = c
			if !b.synced {
				b.log.Info("adopted dispatched runner job", "runner_name", c.runner, "dispatched_job_id", id, "state", string(o.state))
			}
		}
		if c.createIndex == 0 {
			c.createIndex = o.stub.CreateIndex
		}
		c.listed = true
		c.state = o.state
		if o.reason != "" || o.fetch == "" {
			c.reason, c.detailIndex = o.reason, o.summary
			b.noteCapacity(c, o.capacity && o.state == backend.StatePending)
		}
		if o.state == backend.StatePending && o.fetch == "evals" && c.reason != "" && !c.capacity && !c.warned {
			c.warned = true
			b.log.Warn("nomad cannot place runner", "runner_name", c.runner, "dispatched_job_id", id, "reason", c.reason)
		}
		if o.state == backend.StateFailed && !c.warned {
			c.warned = true
			b.log.Warn("runner job failed", "runner_name", c.runner, "dispatched_job_id", id, "reason", c.reason)
		}
		terminal := o.state == backend.StateExited || o.state == backend.StateFailed
		switch {
		case terminal && c.deadSince.IsZero():
			c.deadSince = now
		case !terminal:
			c.deadSince = time.Time{}
		}
	}
	for id, c := range b.children {
		// gone from Nomad (purged or garbage collected) unless it was
		// dispatched after this list was taken
		if !present[id] && (c.listed || c.createIndex <= index) {
			delete(b.children, id)
		}
	}
	for id, at := range b.purged {
		if index >= at {
			delete(b.purged, id)
		}
	}
	// An index that went backwards is taken as is; 0 becomes 1 so the next
	// query blocks instead of spinning.
	b.index = max(index, 1)
	b.lastErr = nil
	b.synced = true
}

// noteCapacity records whether a child waits for capacity and logs each
// change once: a queued runner is expected, not a warning. Caller holds
// mu.
func (b *Backend) noteCapacity(c *child, waiting bool) {
	if waiting == c.capacity {
		return
	}
	c.capacity = waiting
	if waiting {
		b.log.Info("runner queued for capacity", "runner_name", c.runner, "dispatched_job_id", c.id, "reason", c.reason)
	} else {
		b.log.Info("runner left the capacity queue", "runner_name", c.runner, "dispatched_job_id", c.id, "state", string(c.state))
	}
}

// purgeDue purges dead children after the grace period, and at once those
// superseded by a newer dispatch for the same runner name.
func (b *Backend) purgeDue(ctx context.Context) {
	b.mu.Lock()
	now := b.now()
	newest := map[string]uint64{}
	for _, c := range b.children {
		newest[c.runner] = max(newest[c.runner], c.createIndex)
	}
	var due []*child
	for _, c := range b.children {
		if c.deadSince.IsZero() {
			continue
		}
		if now.Sub(c.deadSince) >= b.cfg.PurgeGrace || c.createIndex < newest[c.runner] {
			due = append(due, c)
		}
	}
	b.mu.Unlock()
	for _, c := range due {
		if err := b.purge(ctx, c.id); err != nil {
			b.log.Warn("failed to purge dead runner job", "dispatched_job_id", c.id, "error", err)
			b.mu.Lock()
			c.deadSince = now.Add(30 * time.Second) // retry later, not in a tight loop
			b.mu.Unlock()
			continue
		}
		b.log.Info("purged dead runner job", "runner_name", c.runner, "dispatched_job_id", c.id, "state", string(c.state))
	}
}
