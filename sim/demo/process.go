// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tartnomad/nomad-driver-tart/scaleset/config"
	"github.com/tartnomad/nomad-driver-tart/sim/actionssim"
)

// servicePIDFile, in the scratch directory, names the service process, so
// a later demo can stop it if this one is killed (see stopStaleService).
const servicePIDFile = "service.pid"

// process is the real nomad-gha-scaleset binary run as a child process
// with `run --config <scratch>/config.hcl`, as an operator runs it. The
// demo sees it from outside only: /metrics for its runner counts, the
// simulator, and the backend's resources (containers, VMs).
type process struct {
	cmd      *exec.Cmd
	env      *backendEnv
	sim      *actionssim.Server
	address  string
	http     *http.Client
	logTail  *tailBuffer
	finished chan struct{}
	waitErr  error // set before finished is closed

	stopSampling context.CancelFunc
	sampled      chan struct{}
	mu           sync.Mutex
	peakActive   int

	stopOnce sync.Once
	stopErr  error
}

func startProcess(ctx context.Context, o Options, cfg *config.Config, env *backendEnv, sim *actionssim.Server, scratch string) (*process, error) {
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	cfg.ListenAddress = addr
	path := filepath.Join(scratch, "config.hcl")
	src, err := renderConfig(cfg)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, src, 0o600); err != nil {
		return nil, fmt.Errorf("failed to write the service's config: %w", err)
	}
	p := &process{env: env, sim: sim, address: addr, http: &http.Client{Timeout: 5 * time.Second},
		logTail: &tailBuffer{max: 4096}, finished: make(chan struct{}), sampled: make(chan struct{})}
	args := []string{"run", "--config", path, "--log-level", o.LogLevel, "--log-format", o.LogFormat}
	p.cmd = exec.Command(o.ServiceBinary, args...)
	p.cmd.Env = append(serviceEnviron(os.Environ()), config.EnvPrefix+"GITHUB_TOKEN="+demoToken)
	p.cmd.Stdout = io.MultiWriter(o.ServiceLog, p.logTail)
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("failed to start %s: %w", o.ServiceBinary, err)
	}
	go func() {
		defer close(p.finished)
		p.waitErr = p.cmd.Wait()
	}()
	if err := os.WriteFile(filepath.Join(scratch, servicePIDFile), []byte(strconv.Itoa(p.cmd.Process.Pid)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("failed to record the service's pid: %w (service: %w)", err, p.stop())
	}
	fmt.Fprintf(o.Out, "==> started %s %s (pid %d)\n", o.ServiceBinary, strings.Join(args, " "), p.cmd.Process.Pid)

	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.stopSampling = cancel
	go p.sample(sctx)
	return p, nil
}

// serviceEnviron drops the service's own variables from env: they would
// override the generated file (an operator's NOMAD_GHA_SCALESET_LISTEN_ADDRESS,
// say), and the demo sets the token itself.
func serviceEnviron(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, config.EnvPrefix) {
			out = append(out, kv)
		}
	}
	return out
}

// freeLoopbackAddr returns a loopback address with a port free a moment
// ago, for the service's listen_address.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("failed to find a free port for the service: %w", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		return "", fmt.Errorf("failed to release the service's port: %w", err)
	}
	return addr, nil
}

func (p *process) describe() string      { return fmt.Sprintf("(pid %d) ", p.cmd.Process.Pid) }
func (p *process) addr() string          { return p.address }
func (p *process) done() <-chan struct{} { return p.finished }

// sample scrapes the runner counts until ctx ends, for the peak.
func (p *process) sample(ctx context.Context) {
	defer close(p.sampled)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		if c, err := p.counts(ctx); err == nil {
			p.mu.Lock()
			p.peakActive = max(p.peakActive, c.active())
			p.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-p.finished:
			return
		case <-t.C:
		}
	}
}

// counts scrapes the nomad_gha_scaleset_runners gauge from /metrics.
func (p *process) counts(ctx context.Context) (runnerCounts, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.address+"/metrics", nil)
	if err != nil {
		return runnerCounts{}, fmt.Errorf("failed to scrape the service: %w", err)
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return runnerCounts{}, fmt.Errorf("failed to scrape the service: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return runnerCounts{}, fmt.Errorf("failed to scrape the service: %s", resp.Status)
	}
	return parseRunnerCounts(resp.Body)
}

// parseRunnerCounts sums the nomad_gha_scaleset_runners series of a
// Prometheus text exposition by phase.
func parseRunnerCounts(r io.Reader) (runnerCounts, error) {
	var c runnerCounts
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return c, fmt.Errorf("failed to parse the scrape: %w", err)
	}
	for _, m := range fams["nomad_gha_scaleset_runners"].GetMetric() {
		n := int(m.GetGauge().GetValue() + m.GetUntyped().GetValue())
		for _, l := range m.GetLabel() {
			if l.GetName() != "phase" {
				continue
			}
			switch l.GetValue() {
			case "starting", "pending":
				c.starting += n
			case "idle":
				c.idle += n
			case "busy":
				c.busy += n
			case "finishing":
				c.finishing += n
			}
		}
	}
	return c, nil
}

// peak is the most runners alive at once: the larger of the service's
// sampled count and the simulator's exact count of online runners.
func (p *process) peak() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return max(p.peakActive, p.sim.Snapshot().PeakOnline())
}

func (p *process) held(ctx context.Context) (int, error) { return p.env.held(ctx) }

// stop sends SIGTERM and waits for the service's graceful shutdown, then
// SIGKILL if it outlasts serviceStopTimeout.
func (p *process) stop() error {
	p.stopOnce.Do(func() {
		p.stopSampling()
		<-p.sampled
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.finished:
		case <-time.After(serviceStopTimeout):
			_ = p.cmd.Process.Kill()
			<-p.finished
			p.stopErr = fmt.Errorf("service did not stop within %s of SIGTERM; killed", serviceStopTimeout)
			return
		}
		var exit *exec.ExitError
		if errors.As(p.waitErr, &exit) && !exit.Success() {
			p.stopErr = fmt.Errorf("service exited with %w; its last output:\n%s", p.waitErr, p.logTail.String())
		}
	})
	return p.stopErr
}

func (p *process) purge(ctx context.Context, out io.Writer) int {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	n, err := p.env.purge(ctx)
	if err != nil {
		fmt.Fprintf(out, "failed to remove the runners left: %v\n", err)
	}
	return n
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
