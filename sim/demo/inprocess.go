// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package demo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/config"
	"github.com/tartnomad/nomad-driver-tart/scaleset/service"
)

// inProcess is the service run in this process, with its backend wrapped
// to count the runners alive at once.
type inProcess struct {
	svc      *service.Service
	cb       atomic.Pointer[countingBackend] // nil until the service built its backend
	cancel   context.CancelFunc
	finished chan struct{}
	err      error // set before finished is closed
	address  string

	stopOnce sync.Once
	stopErr  error
}

func startInProcess(ctx context.Context, o Options, cfg *config.Config) (*inProcess, error) {
	p := &inProcess{finished: make(chan struct{})}
	svc, err := service.New(service.Options{
		Config: cfg, Logger: o.Logger, Owner: "demo",
		NewBackend: func(ctx context.Context, ss *config.ScaleSet, l *slog.Logger) (backend.Backend, error) {
			be, err := service.DefaultBackends(ctx, ss, l)
			if err != nil {
				return nil, err
			}
			cb := &countingBackend{Backend: be}
			p.cb.Store(cb)
			if wp, ok := be.(backend.WarmPool); ok {
				// keep the warm pool's metrics visible through the wrapper
				return struct {
					*countingBackend
					backend.WarmPool
				}{cb, wp}, nil
			}
			return cb, nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("failed to create the service: %w", err)
	}
	p.svc = svc
	svcCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel = cancel
	go func() {
		defer close(p.finished)
		p.err = svc.Run(svcCtx)
	}()
	actx, acancel := context.WithTimeout(ctx, serviceStopTimeout)
	defer acancel()
	addr, err := svc.Addr(actx)
	if err != nil {
		return nil, fmt.Errorf("the service did not listen: %w (service: %w)", err, p.stop())
	}
	p.address = addr
	return p, nil
}

func (p *inProcess) describe() string      { return "" }
func (p *inProcess) addr() string          { return p.address }
func (p *inProcess) done() <-chan struct{} { return p.finished }

func (p *inProcess) counts(context.Context) (runnerCounts, error) {
	var c runnerCounts
	for _, st := range p.svc.Status() {
		c.starting += st.Runners.Starting + st.Runners.Pending
		c.idle += st.Runners.Idle
		c.busy += st.Runners.Busy
		c.finishing += st.Runners.Finishing
	}
	return c, nil
}

func (p *inProcess) peak() int {
	cb := p.cb.Load()
	if cb == nil {
		return 0
	}
	cb.mu.Lock()
	defer cb.mu.Unlock()
	return cb.peak
}

func (p *inProcess) held(ctx context.Context) (int, error) {
	cb := p.cb.Load()
	if cb == nil {
		return 0, nil
	}
	rs, err := cb.ListRunners(ctx)
	return len(rs), err
}

func (p *inProcess) stop() error {
	p.stopOnce.Do(func() {
		p.cancel()
		select {
		case <-p.finished:
			p.stopErr = p.err
		case <-time.After(serviceStopTimeout):
			p.stopErr = fmt.Errorf("service did not stop within %s", serviceStopTimeout)
		}
	})
	return p.stopErr
}

func (p *inProcess) purge(ctx context.Context, out io.Writer) int {
	cb := p.cb.Load()
	if cb == nil {
		return 0
	}
	return purge(ctx, out, cb.Backend)
}

// countingBackend remembers the backend the service built and its peak.
type countingBackend struct {
	backend.Backend
	mu   sync.Mutex
	peak int
}

func (c *countingBackend) ListRunners(ctx context.Context) ([]backend.Runner, error) {
	rs, err := c.Backend.ListRunners(ctx)
	if err == nil {
		alive := 0
		for _, r := range rs {
			if r.State == backend.StatePending || r.State == backend.StateRunning {
				alive++
			}
		}
		c.mu.Lock()
		c.peak = max(c.peak, alive)
		c.mu.Unlock()
	}
	return rs, err
}

// purge removes every runner the backend still holds, within 30 s, and
// returns how many it removed.
func purge(ctx context.Context, out io.Writer, be backend.Backend) int {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rs, err := be.ListRunners(ctx)
	if err != nil {
		fmt.Fprintf(out, "failed to list runners to clean up: %v\n", err)
		return 0
	}
	n := 0
	for _, r := range rs {
		if err := be.RemoveRunner(ctx, r.ResourceID); err != nil {
			fmt.Fprintf(out, "failed to remove runner %s (%s): %v\n", r.Name, r.ResourceID, err)
			continue
		}
		n++
	}
	return n
}
