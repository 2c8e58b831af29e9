// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package cli is the nomad-gha-scaleset command line: `run` (the service,
// from an HCL file plus environment and flags) and `check` (the config and
// everything it needs, probed before a start). cmd/nomad-gha-scaleset only
// calls Main. The credential-free demo is a program of its own
// (sim/cmd/nomad-gha-scaleset-demo) that runs this binary as an operator
// would.
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

	"github.com/tartnomad/nomad-driver-tart/internal/cliflags"
	"github.com/tartnomad/nomad-driver-tart/scaleset/check"
	"github.com/tartnomad/nomad-driver-tart/scaleset/config"
	"github.com/tartnomad/nomad-driver-tart/scaleset/service"
	"github.com/tartnomad/nomad-driver-tart/version"
)

// binary is the program name.
const binary = "nomad-gha-scaleset"

const usage = `Usage: nomad-gha-scaleset [--version] [--help] <command> [flags]

The GitHub Actions runner scale-set service: it registers scale sets with
GitHub and keeps one ephemeral runner per job in Docker containers, Tart
VMs or Nomad dispatched jobs.

Commands:
  run     run the scale-set service from a config file (--config)
  check   validate a config file and probe GitHub and the backend (--config)
  version print the version
  help    print this help

Run "nomad-gha-scaleset <command> --help" for the command's flags. The
configuration is documented in scaleset/README.md; the credential-free demo
is the separate program nomad-gha-scaleset-demo (make demo).
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
		fmt.Fprintln(stdout, version.Full(binary))
		return 0
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	case "run":
		return runCmd(ctx, args[1:], stdout, stderr, os.Getenv)
	case "check":
		return checkCmd(ctx, args[1:], stdout, stderr, os.Getenv, check.Probes{})
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

// parseFlags parses a subcommand's flags (see cliflags.Parse) and refuses
// arguments after them. ok is true when the command should go on.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	if code, ok := cliflags.Parse(fs, args, stdout, stderr); !ok {
		return code, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return cliflags.ExitUsage, false
	}
	return 0, true
}

// newLogger builds the slog logger for --log-level and --log-format.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
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
	fs.Usage = commandUsage(fs, "run --config FILE [flags]", "Runs the scale-set service until SIGINT or SIGTERM, then shuts down gracefully.")
	cfgPath := fs.String("config", getenv(config.EnvPrefix+"CONFIG"), "HCL config file (env "+config.EnvPrefix+"CONFIG)")
	var ov config.Overlay
	fs.StringVar(&ov.ListenAddress, "listen-address", "", "address of /metrics, /healthz, /readyz (env "+config.EnvPrefix+"LISTEN_ADDRESS; default "+config.DefaultListenAddress+")")
	fs.StringVar(&ov.LogLevel, "log-level", "", "debug, info, warn or error (env "+config.EnvPrefix+"LOG_LEVEL; default info)")
	fs.StringVar(&ov.LogFormat, "log-format", "", "text or json (env "+config.EnvPrefix+"LOG_FORMAT; default text)")
	fs.StringVar(&ov.GitHubConfigURL, "github-config-url", "", "default github_config_url (env "+config.EnvPrefix+"GITHUB_CONFIG_URL)")
	fs.StringVar(&ov.StateDir, "state-dir", "", "directory of the start journals (env "+config.EnvPrefix+"STATE_DIR; default $STATE_DIRECTORY, else $XDG_STATE_HOME/"+config.StateDirName+", else ~/.local/state/"+config.StateDirName+")")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
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
	logger, err := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
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

// commandUsage prints a subcommand's usage line, what it does and its
// flags to the flag set's output.
func commandUsage(fs *flag.FlagSet, synopsis, what string) func() {
	return func() {
		fmt.Fprintf(fs.Output(), "Usage: %s %s\n\n%s\n\nFlags:\n", binary, synopsis, what)
		fs.PrintDefaults()
	}
}
