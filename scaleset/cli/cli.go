// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package cli is the nomad-gha-scaleset command line: `run` (the service,
// from an HCL file plus environment and flags), `check` (the config and
// everything it needs, probed before a start) and `demo` (the
// credential-free end-to-end demonstration). cmd/nomad-gha-scaleset only
// calls Main.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/tartnomad/nomad-driver-tart/scaleset/check"
	"github.com/tartnomad/nomad-driver-tart/scaleset/config"
	"github.com/tartnomad/nomad-driver-tart/sim/demo"
	"github.com/tartnomad/nomad-driver-tart/scaleset/service"
	"github.com/tartnomad/nomad-driver-tart/version"
)

// Binary is the program name.
const Binary = "nomad-gha-scaleset"

const usage = `Usage: nomad-gha-scaleset [--version] <command> [flags]

Commands:
  run     run the scale-set service from a config file (--config)
  check   validate a config file and probe GitHub and the backend (--config)
  demo    run the simulator, the service and a burst of simulated jobs
  version print the version

Run "nomad-gha-scaleset <command> --help" for the command's flags.
`

// Main runs the command line and returns the exit code. ctx ends on
// SIGINT/SIGTERM (graceful shutdown).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "--version", "-version", "-v", "version":
		fmt.Fprintln(stdout, version.Full(Binary))
		return 0
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	case "run":
		return runCmd(ctx, args[1:], stdout, stderr, os.Getenv)
	case "check":
		return checkCmd(ctx, args[1:], stdout, stderr, os.Getenv, check.Probes{})
	case "demo":
		return demoCmd(ctx, args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

// NewLogger builds the slog logger for --log-level and --log-format.
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: must be debug, info, warn or error, got %q", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format: must be text or json, got %q", format)
	}
}

func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", getenv(config.EnvPrefix+"CONFIG"), "HCL config file (env "+config.EnvPrefix+"CONFIG)")
	var ov config.Overlay
	fs.StringVar(&ov.ListenAddress, "listen-address", "", "address of /metrics, /healthz, /readyz (env "+config.EnvPrefix+"LISTEN_ADDRESS; default "+config.DefaultListenAddress+")")
	fs.StringVar(&ov.LogLevel, "log-level", "", "debug, info, warn or error (env "+config.EnvPrefix+"LOG_LEVEL; default info)")
	fs.StringVar(&ov.LogFormat, "log-format", "", "text or json (env "+config.EnvPrefix+"LOG_FORMAT; default text)")
	fs.StringVar(&ov.GitHubConfigURL, "github-config-url", "", "default github_config_url (env "+config.EnvPrefix+"GITHUB_CONFIG_URL)")
	fs.StringVar(&ov.StateDir, "state-dir", "", "directory of the start journals (env "+config.EnvPrefix+"STATE_DIR; default $STATE_DIRECTORY, else $XDG_STATE_HOME/"+config.StateDirName+", else ~/.local/state/"+config.StateDirName+")")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cfgPath == "" {
		fmt.Fprintln(stderr, "run: --config is required")
		return 2
	}
	cfg, err := config.LoadFile(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "run: %v\n", err)
		return 1
	}
	cfg.Apply(config.EnvOverlay(getenv))
	cfg.Apply(ov)
	if cfg.StateDir == "" {
		cfg.StateDir = config.DefaultStateDir(getenv)
	}
	if err := errors.Join(cfg.ResolveSecrets(getenv), cfg.Validate(), service.ValidateBackends(cfg)); err != nil {
		fmt.Fprintf(stderr, "run: invalid configuration %s:\n  %s\n", *cfgPath, strings.ReplaceAll(err.Error(), "\n", "\n  "))
		return 1
	}
	logger, err := NewLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		fmt.Fprintf(stderr, "run: %v\n", err)
		return 2
	}
	logger.Info("starting", "version", version.String(), "scale_sets", len(cfg.ScaleSets))
	svc, err := service.New(service.Options{Config: cfg, Logger: logger})
	if err != nil {
		logger.Error("failed to create the service", "error", err)
		return 1
	}
	if err := svc.Run(ctx); err != nil {
		logger.Error("service failed", "error", err)
		return 1
	}
	return 0
}

func demoCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o demo.Options
	fs.StringVar(&o.Backend, "backend", demo.BackendAuto, "auto (Docker if an engine answers, else Tart on faketart), docker or tart")
	fs.IntVar(&o.Jobs, "jobs", 50, "number of simulated workflow jobs in the burst")
	fs.IntVar(&o.MaxRunners, "max-runners", 10, "max_runners of the demo scale set")
	fs.IntVar(&o.MinRunners, "min-runners", 0, "min_runners of the demo scale set")
	fs.DurationVar(&o.JobDuration, "job-duration", 200*time.Millisecond, "mean duration of a simulated job")
	fs.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "give up if the burst is not done by then")
	fs.StringVar(&o.BinDir, "bin-dir", "", "directory holding fakerunner and faketart (default: next to this program)")
	logLevel := fs.String("log-level", "error", "service log level (logs go to stderr)")
	logFormat := fs.String("log-format", "text", "text or json")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	logger, err := NewLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return 2
	}
	o.Out, o.Logger = stdout, logger
	fmt.Fprintf(stdout, "==> %s demo: simulated GitHub, the scale-set service and %d jobs, no credentials\n", version.Full(Binary), o.Jobs)
	sum, err := demo.Run(ctx, o)
	if errors.Is(err, demo.ErrInterrupted) {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return 130 // as a shell reports an interrupted command
	}
	if err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return 1
	}
	if !sum.OK() {
		return 1
	}
	return 0
}
