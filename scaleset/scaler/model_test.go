// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package scaler

import (
	"context"
	"flag"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/actions/scaleset"

	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
)

// The model-based test: a world (GitHub's registrations and jobs, a
// backend's resources, the listener's message stream) driven by random
// actions, interleaved with the scaler's reconcile passes, message and
// statistics deliveries (reordered, duplicated, stale, late), failures of
// GitHub and the backend, runners crashing or vanishing, and SIGKILLs of
// the service (a new Scaler over the same world and the same start journal,
// with the backlog redelivered), between steps or in the middle of a runner
// start (after its JIT config, before the backend recorded the runner).
// Invariants are checked after every step; when the random inputs stop,
// the world must converge, with no registration left that no backend
// runner backs.
//
// `make test` runs a fixed seed; `make fuzz` runs many more with a random
// seed (-model.seed=0). A failure prints the seed, the run and the last
// actions; rerun with -model.seed=<seed> -model.runs=<run+1>.

var (
	modelSeed  = flag.Uint64("model.seed", 11, "seed of the model test (0: random)")
	modelRuns  = flag.Int("model.runs", 150, "runs of the model test")
	modelSteps = flag.Int("model.steps", 120, "random steps per run before convergence")
	// -model.journal=false gives each process a fresh journal, as if the
	// service persisted none: registrations of killed starts then leak and
	// the test fails (it shows the journal is what prevents that).
	modelJournal = flag.Bool("model.journal", true, "share the start journal across service restarts")
)

// modelRun is one run: a world, the current Scaler, and the action log.
type modelRun struct {
	t      *testing.T
	w      *world
	s      *Scaler
	clock  *fakeClock
	rec    *countingRecorder
	cfg    Config
	log    []string
	rng    *rand.Rand
	kinds  []string
	demand bool // statistics delivered since the last restart
	// surplusAtRestart: surplus removals counted when the current process
	// started; more before its first statistics is a violation.
	surplusAtRestart int
	restarts, steps  int
}

func (m *modelRun) newScaler() {
	w := m.w
	w.mu.Lock()
	w.gen++
	p := proc{w: w, gen: w.gen}
	if !*modelJournal {
		w.journal = newMemJournal() // nothing survives the process
	}
	w.mu.Unlock()
	s, err := New(m.cfg, ghProc{p}, beProc{p}, withClock(m.clock), WithRecorder(m.rec),
		WithLogger(slog.New(slog.DiscardHandler)), WithJournal(journalProc{p}))
	if err != nil {
		m.t.Fatal(err)
	}
	m.s = s
	m.demand = false
	m.rec.mu.Lock()
	m.surplusAtRestart = m.rec.removed[string(ReasonSurplus)]
	m.rec.mu.Unlock()
}

func (m *modelRun) deliver(msg mmsg) {
	ctx := context.Background()
	switch msg.kind {
	case "started":
		_ = m.s.HandleJobStarted(ctx, &scaleset.JobStarted{RunnerID: msg.runnerID, RunnerName: msg.name, JobMessageBase: scaleset.JobMessageBase{JobID: msg.jobID}})
	case "completed":
		_ = m.s.HandleJobCompleted(ctx, &scaleset.JobCompleted{RunnerID: msg.runnerID, RunnerName: msg.name, Result: "succeeded", JobMessageBase: scaleset.JobMessageBase{JobID: msg.jobID}})
	case "stats":
		m.s.ObserveStatistics(&scaleset.RunnerScaleSetStatistic{TotalAssignedJobs: msg.assigned, TotalRunningJobs: msg.running})
		_, _ = m.s.HandleDesiredRunnerCount(ctx, msg.assigned)
		m.demand = true
	}
}

// step runs one random action.
func (m *modelRun) step() {
	w := m.w
	pick := m.rng.IntN(100)
	var what string
	switch {
	case pick < 22:
		what = "reconcile"
		_ = m.s.reconcile(context.Background())
	case pick < 32:
		what = "queue job"
		w.mu.Lock()
		if len(w.jobs) < 40 {
			w.jobs = append(w.jobs, &mjob{id: fmt.Sprintf("job-%d", len(w.jobs)), state: "queued"})
		}
		w.mu.Unlock()
	case pick < 44:
		what = "github assigns a job"
		m.assign()
	case pick < 52:
		what = "job completes"
		m.complete()
	case pick < 64:
		what = "deliver message"
		w.mu.Lock()
		var msg mmsg
		ok := len(w.pending) > 0
		if ok {
			i := m.rng.IntN(len(w.pending)) // any order: reordered
			msg = w.pending[i]
			w.pending = slices.Delete(w.pending, i, i+1)
			w.delivered = append(w.delivered, msg)
		}
		w.mu.Unlock()
		if ok {
			what += " " + msg.kind
			m.deliver(msg)
		}
	case pick < 68:
		what = "redeliver a delivered message"
		w.mu.Lock()
		var msg mmsg
		ok := len(w.delivered) > 0
		if ok {
			msg = w.delivered[m.rng.IntN(len(w.delivered))]
		}
		w.mu.Unlock()
		if ok {
			what += " " + msg.kind
			m.deliver(msg)
		}
	case pick < 74:
		what = "statistics snapshot"
		w.mu.Lock()
		w.pending = append(w.pending, w.stats())
		w.mu.Unlock()
	case pick < 77:
		what = "clock +"
		d := time.Duration(1+m.rng.IntN(40)) * time.Second
		what += d.String()
		m.clock.Advance(d)
	case pick < 85:
		what = "toggle failure"
		w.mu.Lock()
		switch m.rng.IntN(5) {
		case 0:
			w.jitErr = !w.jitErr
		case 1:
			w.removeErr = !w.removeErr
		case 2:
			w.startErr = !w.startErr
		case 3:
			w.listErr = !w.listErr
		case 4:
			w.resRemoveErr = !w.resRemoveErr
		}
		w.mu.Unlock()
	case pick < 90:
		what = "runner event"
		m.runnerEvent()
	case pick < 91:
		what = "SIGKILL and restart"
		m.restart()
	case pick < 94:
		what = "SIGKILL between JIT generation and backend start"
		if m.killMidStart() {
			what += " (hit)"
		}
		m.restart()
	case pick < 96:
		what = "take the session"
		m.s.SetOwner(true)
	default:
		what = "boot"
		w.mu.Lock()
		for _, r := range w.res {
			if r.state == backend.StatePending {
				r.state = backend.StateRunning
				break
			}
		}
		w.mu.Unlock()
	}
	m.steps++
	m.kinds = append(m.kinds, strings.Fields(what)[0])
	m.log = append(m.log, what)
	m.check()
}

// assign: GitHub gives a queued job to an online idle runner.
func (m *modelRun) assign() {
	w := m.w
	w.mu.Lock()
	defer w.mu.Unlock()
	var job *mjob
	for _, j := range w.jobs {
		if j.state == "queued" {
			job = j
			break
		}
	}
	if job == nil {
		return
	}
	for _, r := range w.res {
		reg := w.regs[r.runnerID]
		if r.state != backend.StateRunning || reg == nil || reg.busy {
			continue
		}
		reg.busy = true
		job.state, job.runnerID = "running", reg.id
		w.pending = append(w.pending, mmsg{kind: "started", runnerID: reg.id, name: reg.name, jobID: job.id})
		return
	}
}

// complete: a running job ends; the ephemeral runner deregisters and
// exits.
func (m *modelRun) complete() {
	w := m.w
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, j := range w.jobs {
		if j.state != "running" {
			continue
		}
		j.state = "done"
		reg := w.regs[j.runnerID]
		name := ""
		if reg != nil {
			name = reg.name
			delete(w.regs, reg.id)
		}
		for _, r := range w.res {
			if r.runnerID == j.runnerID {
				r.state = backend.StateExited
			}
		}
		w.pending = append(w.pending, mmsg{kind: "completed", runnerID: j.runnerID, name: name, jobID: j.id})
		return
	}
}

// runnerEvent: an idle runner crashes, vanishes from the backend, or a
// busy one crashes (its job fails and is requeued by GitHub).
func (m *modelRun) runnerEvent() {
	w := m.w
	w.mu.Lock()
	defer w.mu.Unlock()
	ids := make([]string, 0, len(w.res))
	for id := range w.res {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if len(ids) == 0 {
		return
	}
	r := w.res[ids[m.rng.IntN(len(ids))]]
	reg := w.regs[r.runnerID]
	busy := reg != nil && reg.busy
	switch {
	case r.state != backend.StateRunning && r.state != backend.StatePending:
	case busy:
		// the runner died with its job: GitHub fails the job attempt,
		// drops the registration and requeues the job
		r.state = backend.StateFailed
		delete(w.regs, reg.id)
		for _, j := range w.jobs {
			if j.state == "running" && j.runnerID == reg.id {
				j.state, j.runnerID = "queued", 0
				w.pending = append(w.pending, mmsg{kind: "completed", runnerID: reg.id, name: reg.name, jobID: j.id})
			}
		}
	case m.rng.IntN(2) == 0:
		r.state = backend.StateFailed
	default:
		delete(w.res, r.id) // gone behind the scaler's back
	}
}

// restart plays a SIGKILL of the service and its restart: a new Scaler
// over the same world and journal; the killed one's calls fail from now
// on; the message backlog is delivered again, in any order.
func (m *modelRun) restart() {
	w := m.w
	m.restarts++
	w.mu.Lock()
	for _, msg := range w.delivered {
		if m.rng.IntN(2) == 0 {
			w.pending = append(w.pending, msg)
		}
	}
	w.mu.Unlock()
	m.newScaler()
}

// killMidStart runs a reconcile pass whose first backend start stalls
// (the JIT config exists, the backend has not recorded the runner) and
// returns once it stalled, or once the pass ended without a start. The
// stalled process is then killed by restart; its goroutines stay blocked
// until the test ends and are fenced off from the world after that.
func (m *modelRun) killMidStart() bool {
	w := m.w
	w.mu.Lock()
	w.stallStart = true
	w.mu.Unlock()
	done := make(chan struct{})
	s := m.s
	go func() {
		defer close(done)
		_ = s.reconcile(context.Background())
	}()
	hit := false
	select {
	case <-w.stalled:
		hit = true
	case <-done:
	}
	w.mu.Lock()
	w.stallStart = false
	w.mu.Unlock()
	return hit
}

// check asserts the invariants that hold after every step.
func (m *modelRun) check() {
	w := m.w
	w.mu.Lock()
	violations := slices.Clone(w.violations)
	if n := w.live(); n > w.maxRunners {
		violations = append(violations, fmt.Sprintf("backend holds %d live runners, max_runners %d", n, w.maxRunners))
	}
	byID := map[int]string{}
	for _, r := range w.res {
		if r.runnerID == 0 {
			continue
		}
		if other, dup := byID[r.runnerID]; dup {
			violations = append(violations, fmt.Sprintf("runner id %d held by two resources %s and %s", r.runnerID, other, r.id))
		}
		byID[r.runnerID] = r.id
	}
	held := map[int]bool{}
	for _, r := range w.res {
		held[r.runnerID] = true
	}
	var unheld []*mreg
	for _, reg := range w.regs {
		if !held[reg.id] {
			unheld = append(unheld, reg)
		}
	}
	journal := w.journal
	w.mu.Unlock()
	journaled := map[string]bool{}
	if entries, err := journal.Pending(context.Background()); err == nil {
		for _, e := range entries {
			journaled[e.Name] = true
		}
	}

	m.s.mu.Lock()
	// Known to nobody: a registration no backend resource records, the
	// live process does not track and the journal does not hold. No later
	// process could ever remove it.
	for _, reg := range unheld {
		if m.s.byID[reg.id] == nil && m.s.runners[reg.name] == nil && !journaled[reg.name] {
			violations = append(violations, fmt.Sprintf("registration %d %s is known to nobody (no backend runner, not tracked, not journaled)", reg.id, reg.name))
		}
	}
	res := map[string]string{}
	for name, r := range m.s.runners {
		if r.name != name {
			violations = append(violations, fmt.Sprintf("runner %s tracked under name %s", r.name, name))
		}
		if r.resourceID != "" {
			if other, dup := res[r.resourceID]; dup {
				violations = append(violations, fmt.Sprintf("resource %s tracked twice (%s, %s)", r.resourceID, other, name))
			}
			res[r.resourceID] = name
		}
		if r.runnerID != 0 && m.s.byID[r.runnerID] != r {
			violations = append(violations, fmt.Sprintf("runner %s (id %d) missing from the id index", name, r.runnerID))
		}
	}
	for id, r := range m.s.byID {
		if m.s.runners[r.name] != r {
			violations = append(violations, fmt.Sprintf("id %d indexes an untracked runner %s", id, r.name))
		}
	}
	m.s.mu.Unlock()

	if !m.demand {
		m.rec.mu.Lock()
		if n := m.rec.removed[string(ReasonSurplus)]; n > m.surplusAtRestart {
			violations = append(violations, fmt.Sprintf("%d runners removed as surplus before the demand was known", n-m.surplusAtRestart))
		}
		m.rec.mu.Unlock()
	}
	if len(violations) > 0 {
		m.fail("invariant violated: %s", strings.Join(violations, "; "))
	}
}

func (m *modelRun) fail(format string, a ...any) {
	m.t.Helper()
	var actions []string
	for _, a := range m.log {
		if !strings.HasPrefix(a, "converge") {
			actions = append(actions, a)
		}
	}
	actions = actions[max(0, len(actions)-40):]
	m.t.Fatalf("%s\nseed %d, %d steps, %d restarts; last random actions:\n  %s\nstate:\n%s\nrerun: go test -race -run TestModel ./scaleset/scaler -model.seed=%d",
		fmt.Sprintf(format, a...), *modelSeed, m.steps, m.restarts, strings.Join(actions, "\n  "), m.dump(), *modelSeed)
}

// dump describes the world and the scaler for a failure message.
func (m *modelRun) dump() string {
	var b strings.Builder
	m.w.mu.Lock()
	for _, r := range m.w.regs {
		fmt.Fprintf(&b, "  github: %d %s busy=%t\n", r.id, r.name, r.busy)
	}
	for _, r := range m.w.res {
		fmt.Fprintf(&b, "  backend: %s %s id=%d %s\n", r.id, r.name, r.runnerID, r.state)
	}
	m.w.mu.Unlock()
	m.s.mu.Lock()
	for _, r := range m.s.runners {
		fmt.Fprintf(&b, "  scaler: %s id=%d res=%s %s reason=%s completed=%t\n", r.name, r.runnerID, r.resourceID, r.phase, r.removeReason, r.jobCompleted)
	}
	m.s.mu.Unlock()
	return b.String()
}

// converge stops the random inputs (no failures, no new jobs) and plays
// an orderly world until it settles: every job done, GitHub, the backend
// and the scaler agreeing, and min_runners idle runners.
func (m *modelRun) converge() {
	w := m.w
	w.mu.Lock()
	w.jitErr, w.removeErr, w.startErr, w.listErr, w.resRemoveErr = false, false, false, false, false
	w.mu.Unlock()
	m.s.SetOwner(true)
	for round := range 60 {
		w.mu.Lock()
		backlog := w.pending
		w.pending = nil
		w.mu.Unlock()
		for _, msg := range backlog {
			m.deliver(msg)
		}
		w.mu.Lock()
		for _, r := range w.res {
			if r.state == backend.StatePending {
				r.state = backend.StateRunning
			}
		}
		st := w.stats()
		w.mu.Unlock()
		m.deliver(st)
		_ = m.s.reconcile(context.Background())
		for range 5 {
			m.assign()
		}
		for range 5 {
			m.complete()
		}
		m.clock.Advance(11 * time.Second)
		m.log = append(m.log, fmt.Sprintf("converge round %d", round))
		m.check()
		if m.settled() == "" {
			return
		}
	}
	m.fail("did not converge: %s", m.settled())
}

// settled returns what is still unsettled, or "".
func (m *modelRun) settled() string {
	w := m.w
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, j := range w.jobs {
		if j.state != "done" {
			return fmt.Sprintf("job %s is %s", j.id, j.state)
		}
	}
	if len(w.pending) > 0 {
		return "messages pending"
	}
	live := 0
	for _, r := range w.res {
		if r.state != backend.StateRunning {
			return fmt.Sprintf("resource %s is %s", r.name, r.state)
		}
		if w.regs[r.runnerID] == nil {
			return fmt.Sprintf("resource %s has no registration", r.name)
		}
		live++
	}
	held := map[int]bool{}
	for _, r := range w.res {
		held[r.runnerID] = true
	}
	for _, reg := range w.regs {
		if !held[reg.id] {
			return fmt.Sprintf("registration %d %s has no backend runner (orphaned)", reg.id, reg.name)
		}
	}
	if len(w.regs) != live {
		return fmt.Sprintf("%d registrations for %d runners (lost or orphaned)", len(w.regs), live)
	}
	if live != m.cfg.MinRunners {
		return fmt.Sprintf("%d runners, target %d", live, m.cfg.MinRunners)
	}
	c := m.s.Counts()
	if c.Active() != live || c.Finishing != 0 {
		return fmt.Sprintf("scaler counts %+v, backend holds %d", c, live)
	}
	return ""
}

func TestModel_scalerInvariants(t *testing.T) {
	seed := *modelSeed
	if seed == 0 {
		seed = rand.Uint64()
		*modelSeed = seed
	}
	t.Logf("seed %d, %d runs of %d steps", seed, *modelRuns, *modelSteps)
	rng := rand.New(rand.NewPCG(seed, seed^0x5ca1e))
	sequences := map[uint64]bool{}
	total, restarts, midStart := 0, 0, 0
	for run := range *modelRuns {
		minR := rng.IntN(3)
		cfg := Config{ScaleSetID: 7, NamePrefix: "m", MinRunners: minR, MaxRunners: minR + 1 + rng.IntN(4),
			OnlineTimeout: time.Minute, FinishGrace: 10 * time.Second, MaxParallelOps: 1 + rng.IntN(4),
			StartBackoffMin: time.Second, StartBackoffMax: 20 * time.Second}
		w := &world{rng: rand.New(rand.NewPCG(rng.Uint64(), 1)), regs: map[int]*mreg{}, res: map[string]*mres{}, maxRunners: cfg.MaxRunners,
			journal: newMemJournal(), stalled: make(chan struct{}, 1), release: make(chan struct{})}
		t.Cleanup(func() { close(w.release) })
		m := &modelRun{t: t, w: w, clock: newFakeClock(), rec: newCountingRecorder(), cfg: cfg, rng: rand.New(rand.NewPCG(rng.Uint64(), 2))}
		m.newScaler()
		m.s.SetOwner(true)
		for range *modelSteps {
			m.step()
		}
		m.converge()
		h := fnv.New64a()
		for _, k := range m.kinds {
			_, _ = h.Write([]byte(k))
		}
		sequences[h.Sum64()] = true
		total += m.steps
		restarts += m.restarts
		for _, a := range m.log {
			if strings.HasSuffix(a, "(hit)") {
				midStart++
			}
		}
		if t.Failed() {
			t.Fatalf("run %d failed (seed %d)", run, seed)
		}
	}
	t.Logf("explored %d runs, %d random steps, %d distinct action sequences, %d service restarts (%d of them between a JIT config and its backend start); invariants held after every step and every run converged with no registration left that no backend runner backs",
		*modelRuns, total, len(sequences), restarts, midStart)
}
