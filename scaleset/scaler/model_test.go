// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package scaler

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
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

// errKilled is what a killed process's calls get: it is gone.
var errKilled = errors.New("process was killed")

type mreg struct {
	id   int
	name string
	busy bool
}

type mres struct {
	id, name string
	runnerID int
	state    backend.State
}

type mjob struct {
	id       string
	runnerID int
	state    string // queued, running, done
}

type mmsg struct {
	kind     string // started, completed, stats
	runnerID int
	name     string
	jobID    string
	assigned int // stats
	running  int // stats
}

// world is GitHub, the backend and the message stream, all under one lock.
type world struct {
	mu   sync.Mutex
	rng  *rand.Rand
	regs map[int]*mreg
	res  map[string]*mres
	jobs []*mjob
	// pending messages not yet delivered; delivered ones may come again
	// (duplicates, or the backlog replayed after a restart).
	pending, delivered []mmsg
	nextID, nextRes    int
	jitErr, removeErr  bool
	startErr, listErr  bool
	resRemoveErr       bool // the backend fails to remove resources
	maxRunners         int
	violations         []string
	// gen is the generation of the live service process; calls of a
	// killed one (an older gen) fail with errKilled.
	gen int
	// stallStart: the next backend start blocks (stalled is told) until
	// release, by when its process has been killed.
	stallStart bool
	stalled    chan struct{}
	release    chan struct{}
	// journal is the durable start journal (it survives the process).
	journal *MemJournal
}

func (w *world) violate(format string, a ...any) {
	w.violations = append(w.violations, fmt.Sprintf(format, a...))
}

func (w *world) regByName(name string) *mreg {
	for _, r := range w.regs {
		if r.name == name {
			return r
		}
	}
	return nil
}

// GitHub.

func (w *world) GenerateJitRunnerConfig(_ context.Context, s *scaleset.RunnerScaleSetJitRunnerSetting, id int) (*scaleset.RunnerScaleSetJitRunnerConfig, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.jitErr {
		return nil, errors.New("502 bad gateway")
	}
	if w.regByName(s.Name) != nil {
		return nil, fmt.Errorf("generate: %w", scaleset.RunnerExistsError)
	}
	w.nextID++
	w.regs[w.nextID] = &mreg{id: w.nextID, name: s.Name}
	ref := scaleset.RunnerReference{ID: w.nextID, Name: s.Name, RunnerScaleSetID: id}
	return &scaleset.RunnerScaleSetJitRunnerConfig{Runner: &ref, EncodedJITConfig: "JIT"}, nil
}

func (w *world) GetRunnerByName(_ context.Context, name string) (*scaleset.RunnerReference, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if r := w.regByName(name); r != nil {
		return &scaleset.RunnerReference{ID: r.id, Name: r.name, RunnerScaleSetID: 7}, nil
	}
	return nil, nil
}

func (w *world) RemoveRunner(_ context.Context, id int64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.removeErr {
		return errors.New("500 internal server error")
	}
	r := w.regs[int(id)]
	switch {
	case r == nil:
		return fmt.Errorf("remove: %w", scaleset.RunnerNotFoundError)
	case r.busy:
		return fmt.Errorf("remove: %w", scaleset.JobStillRunningError)
	}
	delete(w.regs, int(id))
	// a runner whose registration is deleted is told so by GitHub and
	// exits
	for _, r := range w.res {
		if r.runnerID == int(id) && (r.state == backend.StateRunning || r.state == backend.StatePending) {
			r.state = backend.StateExited
		}
	}
	return nil
}

// Backend.

func (w *world) Name() string { return "model" }

func (w *world) live() int {
	n := 0
	for _, r := range w.res {
		if r.state == backend.StatePending || r.state == backend.StateRunning {
			n++
		}
	}
	return n
}

func (w *world) StartIdentified(_ context.Context, id backend.Identity, _ string) (string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.startErr {
		return "", errors.New("engine unavailable")
	}
	w.nextRes++
	r := &mres{id: fmt.Sprintf("res-%d", w.nextRes), name: id.Name, runnerID: id.RunnerID, state: backend.StateRunning}
	if w.rng.IntN(3) == 0 {
		r.state = backend.StatePending // still booting
	}
	w.res[r.id] = r
	if n := w.live(); n > w.maxRunners {
		w.violate("backend holds %d live runners, max_runners is %d", n, w.maxRunners)
	}
	return r.id, nil
}

func (w *world) ListRunners(context.Context) ([]backend.Runner, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.listErr {
		return nil, errors.New("engine unreachable")
	}
	out := make([]backend.Runner, 0, len(w.res))
	for _, r := range w.res {
		out = append(out, backend.Runner{Name: r.name, RunnerID: r.runnerID, ResourceID: r.id, State: r.state})
	}
	return out, nil
}

// proc is one service process's view of the world; once a newer process
// exists (the world's gen moved on), every call fails with errKilled.
type proc struct {
	w   *world
	gen int
}

func (p proc) alive() bool {
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	return p.gen == p.w.gen
}

// ghProc is GitHub as one process sees it.
type ghProc struct{ proc }

func (p ghProc) GenerateJitRunnerConfig(ctx context.Context, s *scaleset.RunnerScaleSetJitRunnerSetting, id int) (*scaleset.RunnerScaleSetJitRunnerConfig, error) {
	if !p.alive() {
		return nil, errKilled
	}
	return p.w.GenerateJitRunnerConfig(ctx, s, id)
}

func (p ghProc) GetRunnerByName(ctx context.Context, name string) (*scaleset.RunnerReference, error) {
	if !p.alive() {
		return nil, errKilled
	}
	return p.w.GetRunnerByName(ctx, name)
}

func (p ghProc) RemoveRunner(ctx context.Context, id int64) error {
	if !p.alive() {
		return errKilled
	}
	return p.w.RemoveRunner(ctx, id)
}

// beProc is the backend as one process sees it; it plays the stall of
// the SIGKILL-mid-start fault.
type beProc struct{ proc }

func (p beProc) Name() string { return "model" }

func (p beProc) StartIdentified(ctx context.Context, id backend.Identity, jit string) (string, error) {
	w := p.w
	w.mu.Lock()
	stall := w.stallStart && p.gen == w.gen
	if stall {
		w.stallStart = false
	}
	w.mu.Unlock()
	if stall {
		w.stalled <- struct{}{}
		<-w.release // the process is dead by then
		return "", errKilled
	}
	if !p.alive() {
		return "", errKilled
	}
	return w.StartIdentified(ctx, id, jit)
}

func (p beProc) RemoveRunner(ctx context.Context, id string) error {
	if !p.alive() {
		return errKilled
	}
	return modelBackend{p.w}.RemoveRunner(ctx, id)
}

func (p beProc) ListRunners(ctx context.Context) ([]backend.Runner, error) {
	if !p.alive() {
		return nil, errKilled
	}
	return p.w.ListRunners(ctx)
}

// journalProc is the durable journal as one process sees it.
type journalProc struct{ proc }

func (p journalProc) j() *MemJournal {
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	return p.w.journal
}

func (p journalProc) Record(ctx context.Context, e JournalEntry) error {
	if !p.alive() {
		return errKilled
	}
	return p.j().Record(ctx, e)
}

func (p journalProc) Resolve(ctx context.Context, name string) error {
	if !p.alive() {
		return errKilled
	}
	return p.j().Resolve(ctx, name)
}

func (p journalProc) Pending(ctx context.Context) ([]JournalEntry, error) {
	if !p.alive() {
		return nil, errKilled
	}
	return p.j().Pending(ctx)
}

// backendRemover adapts world to the scaler's RemoveRunner(resourceID)
// (GitHub's RemoveRunner takes the runner ID: one type cannot have both).
type modelBackend struct{ *world }

func (b modelBackend) RemoveRunner(_ context.Context, id string) error {
	w := b.world
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.res[id]
	if r == nil {
		return nil
	}
	if w.resRemoveErr {
		return errors.New("engine busy")
	}
	if reg := w.regs[r.runnerID]; reg != nil && reg.busy && (r.state == backend.StateRunning || r.state == backend.StatePending) {
		w.violate("removed runner %s (id %d) while it runs a job", r.name, r.runnerID)
	}
	delete(w.res, id)
	return nil
}

func (b modelBackend) Shutdown(context.Context) {}

func (b modelBackend) StartRunner(ctx context.Context, name, jit string) (string, error) {
	return b.StartIdentified(ctx, backend.Identity{Name: name}, jit)
}

// stats is the statistics message GitHub would send now.
func (w *world) stats() mmsg {
	m := mmsg{kind: "stats"}
	for _, j := range w.jobs {
		switch j.state {
		case "queued":
			m.assigned++
		case "running":
			m.assigned++
			m.running++
		}
	}
	return m
}

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
		w.journal = NewMemJournal() // nothing survives the process
	}
	w.mu.Unlock()
	s, err := New(m.cfg, ghProc{p}, beProc{p}, WithClock(m.clock), WithRecorder(m.rec),
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
		_ = m.s.Reconcile(context.Background())
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
		_ = s.Reconcile(context.Background())
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
		_ = m.s.Reconcile(context.Background())
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
			journal: NewMemJournal(), stalled: make(chan struct{}, 1), release: make(chan struct{})}
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
