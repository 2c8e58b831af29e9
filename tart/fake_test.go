// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"context"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
)

// fakeResult is what the fake tart answers to one command.
type fakeResult struct {
	code           int
	stdout, stderr string
	err            error
}

// fakeRunner is a recording commandRunner: it keeps every argv and answers
// with the handler's canned result.
type fakeRunner struct {
	mu      sync.Mutex
	calls   [][]string
	envs    [][]string
	stdins  []string
	handler func(args []string) fakeResult
	started []*fakeProcess
	startOp []startOptions
}

var _ commandRunner = (*fakeRunner)(nil)

func (f *fakeRunner) record(c command) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, append([]string{}, c.Args...))
	f.envs = append(f.envs, append([]string{}, c.Env...))
}

func (f *fakeRunner) Run(ctx context.Context, c command) (int, error) {
	f.record(c)
	if c.Stdin != nil {
		b, _ := io.ReadAll(c.Stdin)
		f.mu.Lock()
		f.stdins = append(f.stdins, string(b))
		f.mu.Unlock()
	}
	r := fakeResult{}
	if f.handler != nil {
		r = f.handler(c.Args)
	}
	if r.err != nil {
		return -1, r.err
	}
	if c.Stdout != nil {
		_, _ = io.WriteString(c.Stdout, r.stdout)
	}
	if c.Stderr != nil {
		_, _ = io.WriteString(c.Stderr, r.stderr)
	}
	return r.code, nil
}

func (f *fakeRunner) Start(c command, o startOptions) (process, error) {
	f.record(c)
	p := &fakeProcess{done: make(chan struct{})}
	f.mu.Lock()
	f.started = append(f.started, p)
	f.startOp = append(f.startOp, o)
	f.mu.Unlock()
	return p, nil
}

// Calls returns the recorded argv lists.
func (f *fakeRunner) Calls() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]string{}, f.calls...)
}

// lastCall returns the last argv joined by spaces.
func (f *fakeRunner) lastCall() string {
	c := f.Calls()
	if len(c) == 0 {
		return ""
	}
	return strings.Join(c[len(c)-1], " ")
}

type fakeProcess struct {
	once sync.Once
	done chan struct{}
	code int
	sigs []os.Signal
	mu   sync.Mutex
}

func (p *fakeProcess) Pid() int              { return 4242 }
func (p *fakeProcess) Done() <-chan struct{} { return p.done }
func (p *fakeProcess) Wait() (int, error) {
	<-p.done
	return p.code, nil
}

func (p *fakeProcess) exit(code int) {
	p.once.Do(func() {
		p.code = code
		close(p.done)
	})
}

func (p *fakeProcess) Signal(s os.Signal) error {
	p.mu.Lock()
	p.sigs = append(p.sigs, s)
	p.mu.Unlock()
	if s == syscall.SIGINT || s == syscall.SIGKILL {
		p.exit(0)
	}
	return nil
}
