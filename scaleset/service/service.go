// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/actions/scaleset"
	"github.com/google/uuid"

	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/config"
	"github.com/tartnomad/nomad-driver-tart/scaleset/metrics"
	"github.com/tartnomad/nomad-driver-tart/scaleset/scaler"
)

// BackendFactory builds the backend of one scale set.
type BackendFactory func(ctx context.Context, ss *config.ScaleSet, logger *slog.Logger) (backend.Backend, error)

// Options configure a Service.
type Options struct {
	// Config must have passed ResolveSecrets and Validate.
	Config *config.Config
	// Logger defaults to discard.
	Logger *slog.Logger
	// NewBackend defaults to DefaultBackends.
	NewBackend BackendFactory
	// HTTPOptions are passed to every scaleset client (tests shorten the
	// retry waits).
	HTTPOptions []scaleset.HTTPOption
	// Owner is the session owner name; default the host name.
	Owner string
	// RetryBackoff bounds the waits between listener restarts and startup
	// retries. Default 1s..30s.
	RetryBackoff Backoff

	// unreachableAfter is how long a scale set stays ready (/readyz)
	// without an answer from the Actions service (tests shorten it).
	// Default defaultUnreachableAfter.
	unreachableAfter time.Duration
}

// Service runs every configured scale set and the HTTP endpoints.
type Service struct {
	cfg     *config.Config
	logger  *slog.Logger
	metrics *metrics.Metrics
	sets    []*scaleSetRunner

	stopping atomic.Bool
	addr     atomic.Value // string, set once listening
	listenCh chan struct{}
}

// New builds a Service and its clients; nothing touches the network yet.
func New(opts Options) (*Service, error) {
	if opts.Config == nil {
		return nil, errors.New("service: config is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.NewBackend == nil {
		opts.NewBackend = DefaultBackends
	}
	if opts.RetryBackoff.Min == 0 {
		opts.RetryBackoff = Backoff{Min: time.Second, Max: 30 * time.Second}
	}
	if opts.unreachableAfter <= 0 {
		opts.unreachableAfter = defaultUnreachableAfter
	}
	if opts.Owner == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = uuid.NewString()
		}
		opts.Owner = h
	}
	if err := config.CheckStateDir(opts.Config.StateDir); err != nil {
		return nil, err
	}
	s := &Service{cfg: opts.Config, logger: opts.Logger, metrics: metrics.New(), listenCh: make(chan struct{})}
	for _, ss := range opts.Config.ScaleSets {
		httpOpts := []scaleset.HTTPOption{
			scaleset.WithLogger(slog.New(canceledAsDebug{opts.Logger.Handler()}).With("component", "http", "scale_set", ss.Name)),
		}
		if c := opts.Config; c.GitHubHTTPRetryMax != nil {
			httpOpts = append(httpOpts, scaleset.WithRetryMax(*c.GitHubHTTPRetryMax), scaleset.WithRetryWaitMax(c.GitHubHTTPRetryWaitMaxDuration))
		}
		logger := opts.Logger.With("scale_set", ss.Name, "backend", ss.Backend)
		allOpts := slices.Concat(httpOpts, opts.HTTPOptions)
		gh, err := newGHClient(func() (*scaleset.Client, error) { return newClient(opts.Config, ss, allOpts) }, logger)
		if err != nil {
			return nil, fmt.Errorf("scale set %q: %w", ss.Name, err)
		}
		s.sets = append(s.sets, &scaleSetRunner{
			cfg:      ss,
			gh:       gh,
			logger:   logger,
			metrics:  s.metrics,
			rec:      s.metrics.ScaleSet(ss.RunnerScaleSetName, ss.GitHubConfigURL, ss.Backend, ss.MinRunners, ss.Max()),
			newBE:    opts.NewBackend,
			owner:    opts.Owner,
			retry:    opts.RetryBackoff,
			shutdown: opts.Config.ShutdownTimeoutDuration,
			stateDir: opts.Config.StateDir,

			unreachableAfter: opts.unreachableAfter,
		})
	}
	return s, nil
}

// newClient builds the official client with App credentials when given,
// else the PAT.
func newClient(c *config.Config, ss *config.ScaleSet, opts []scaleset.HTTPOption) (*scaleset.Client, error) {
	info := systemInfo(0)
	if c.GitHubApp != nil {
		cl, err := scaleset.NewClientWithGitHubApp(scaleset.ClientWithGitHubAppConfig{
			GitHubConfigURL: ss.GitHubConfigURL,
			GitHubAppAuth: scaleset.GitHubAppAuth{
				ClientID:       c.GitHubApp.ClientID,
				InstallationID: c.GitHubApp.InstallationID,
				PrivateKey:     c.GitHubApp.PrivateKey.Reveal(),
			},
			SystemInfo: info,
		}, opts...)
		if err != nil {
			return nil, fmt.Errorf("failed to create GitHub App client for github_config_url %q: %w", ss.GitHubConfigURL, err)
		}
		return cl, nil
	}
	cl, err := scaleset.NewClientWithPersonalAccessToken(scaleset.NewClientWithPersonalAccessTokenConfig{
		GitHubConfigURL:     ss.GitHubConfigURL,
		PersonalAccessToken: c.GitHubToken.Reveal(),
		SystemInfo:          info,
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("failed to create PAT client for github_config_url %q: %w", ss.GitHubConfigURL, err)
	}
	return cl, nil
}

// Run serves HTTP and runs every scale set until ctx ends (graceful
// shutdown) or a scale set fails for good (then the others are stopped
// too and the error is returned).
func (s *Service) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.ListenAddress)
	if err != nil {
		return fmt.Errorf("failed to listen on listen_address %q: %w", s.cfg.ListenAddress, err)
	}
	s.addr.Store(ln.Addr().String())
	close(s.listenCh)
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	srvDone := make(chan struct{})
	go func() {
		defer close(srvDone)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("http server stopped", "error", err)
		}
	}()
	s.logger.Info("serving metrics and health", "address", ln.Addr().String())

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(s.sets))
	var wg sync.WaitGroup
	for i, set := range s.sets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := set.run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
				set.logger.Error("scale set failed", "error", err)
				errs[i] = err
				cancel()
			}
		}()
	}
	<-runCtx.Done()
	s.stopping.Store(true)
	s.logger.Info("shutting down")
	wg.Wait()

	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	<-srvDone
	s.logger.Info("stopped")
	return errors.Join(errs...)
}

// Addr waits until Run listens and returns the address (useful with port 0).
func (s *Service) Addr(ctx context.Context) (string, error) {
	select {
	case <-s.listenCh:
		return s.addr.Load().(string), nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Handler serves /metrics, /healthz and /readyz.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	promHandler := s.metrics.Handler()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		for _, set := range s.sets {
			if sc := set.scaler.Load(); sc != nil {
				set.rec.SetRunnerCounts(sc.Counts())
			}
		}
		promHandler.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if s.stopping.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		var notReady []string
		for _, set := range s.sets {
			switch {
			case set.backendErr.Load() != nil:
				notReady = append(notReady, set.cfg.Name+" (backend failing: "+(*set.backendErr.Load()).Error()+")")
			case set.standby.Load():
				notReady = append(notReady, set.cfg.Name+" (standby: another listener holds the session; read-only)")
			case !set.ready.Load():
				notReady = append(notReady, set.cfg.Name)
			default:
				if why := set.unreachableReason(time.Now()); why != "" {
					notReady = append(notReady, set.cfg.Name+" ("+why+")")
				}
			}
		}
		if s.stopping.Load() || len(notReady) > 0 {
			http.Error(w, "not listening: "+strings.Join(notReady, ", "), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// ScaleSetStatus is a snapshot of one scale set, for the demo's progress
// display and tests.
type ScaleSetStatus struct {
	Name       string
	ScaleSetID int
	Listening  bool
	// Standby: another listener holds the session; this one is read-only.
	Standby bool
	Runners scaler.Counts
}

// Status returns a snapshot of every scale set.
func (s *Service) Status() []ScaleSetStatus {
	out := make([]ScaleSetStatus, 0, len(s.sets))
	for _, set := range s.sets {
		st := ScaleSetStatus{Name: set.cfg.Name, ScaleSetID: int(set.scaleSetID.Load()), Listening: set.ready.Load(), Standby: set.standby.Load()}
		if sc := set.scaler.Load(); sc != nil {
			st.Runners = sc.Counts()
		}
		out = append(out, st)
	}
	return out
}
