// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package scaler

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/actions/scaleset"

	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
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
	journal *memJournal
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

func (p journalProc) j() *memJournal {
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
