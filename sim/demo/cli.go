// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package demo

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/tartnomad/nomad-driver-tart/internal/cliflags"
	"github.com/tartnomad/nomad-driver-tart/version"
)

// binary is the demo program's name; serviceBinaryName the service's.
const (
	binary            = "nomad-gha-scaleset-demo"
	serviceBinaryName = "nomad-gha-scaleset"
)

const usageHead = `Usage: nomad-gha-scaleset-demo [flags]

Runs the credential-free demo of nomad-gha-scaleset: the GitHub Actions
simulator, the real nomad-gha-scaleset binary as a child process
("nomad-gha-scaleset run --config <generated file>") and a burst of
simulated workflow jobs run by fake runners, on Docker when an engine
answers (DOCKER_HOST), else on Tart with faketart. It prints progress and a
summary, then removes every process, container, VM and temporary file it
made. Exit code: 0 when every job finished and nothing was left behind, 1
otherwise, 2 on bad usage, 130 when interrupted.

Flags:
`

// Main runs the demo program with args (without the program name) and
// returns its exit code. ctx ends on SIGINT/SIGTERM: the demo then stops
// the service, cleans up and prints an INTERRUPTED summary.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(binary, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHead)
		fs.PrintDefaults()
	}
	o := Options{Out: stdout, ServiceLog: stderr}
	fs.StringVar(&o.ServiceBinary, "service-binary", "", "the nomad-gha-scaleset binary to run (default: in --bin-dir, next to this program, else on PATH)")
	fs.StringVar(&o.Backend, "backend", BackendAuto, "auto (Docker if an engine answers, else Tart on faketart), docker or tart")
	fs.IntVar(&o.Jobs, "jobs", 50, "number of simulated workflow jobs in the burst")
	fs.IntVar(&o.MaxRunners, "max-runners", 10, "max_runners of the demo scale set")
	fs.IntVar(&o.MinRunners, "min-runners", 0, "min_runners of the demo scale set")
	fs.DurationVar(&o.JobDuration, "job-duration", 200*time.Millisecond, "mean duration of a simulated job (each runs 0.5x to 1.5x of it)")
	fs.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "give up if the burst is not done by then")
	fs.DurationVar(&o.Progress, "progress", time.Second, "period of the progress lines (0 or negative: none)")
	fs.StringVar(&o.BinDir, "bin-dir", "", "directory holding fakerunner and faketart (default: next to this program, else PATH)")
	fs.StringVar(&o.LogLevel, "log-level", "error", "the service's --log-level: debug, info, warn or error (its logs go to stderr)")
	fs.StringVar(&o.LogFormat, "log-format", "text", "the service's --log-format: text or json")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if code, ok := cliflags.Parse(fs, args, stdout, stderr); !ok {
		return code
	}
	if *showVersion {
		fmt.Fprintln(stdout, version.Full(binary))
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", binary, fs.Arg(0))
		return 2
	}
	if err := checkFlags(&o); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", binary, err)
		return 2
	}
	if o.ServiceBinary == "" {
		p, err := findBinary(serviceBinaryName, o.BinDir)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", binary, err)
			return 1
		}
		o.ServiceBinary = p
	}
	if o.Progress == 0 {
		o.Progress = -1 // Options takes 0 as its default, 1s
	}
	fmt.Fprintf(stdout, "==> %s: simulated GitHub, the %s service and %d jobs, no credentials\n", version.Full(binary), serviceBinaryName, o.Jobs)
	sum, err := Run(ctx, o)
	switch {
	case errors.Is(err, ErrInterrupted):
		fmt.Fprintf(stderr, "%s: %v\n", binary, err)
		return 130 // as a shell reports an interrupted command
	case err != nil:
		fmt.Fprintf(stderr, "%s: %v\n", binary, err)
		return 1
	case !sum.OK():
		return 1
	}
	return 0
}

// checkFlags rejects what the service or the demo would refuse later,
// naming the flag.
func checkFlags(o *Options) error {
	var l slog.Level
	if err := l.UnmarshalText([]byte(o.LogLevel)); err != nil {
		return fmt.Errorf("--log-level: must be debug, info, warn or error, got %q", o.LogLevel)
	}
	if o.LogFormat != "text" && o.LogFormat != "json" {
		return fmt.Errorf("--log-format: must be text or json, got %q", o.LogFormat)
	}
	switch o.Backend {
	case BackendAuto, BackendDocker, BackendTart:
	default:
		return fmt.Errorf("--backend: must be auto, docker or tart, got %q", o.Backend)
	}
	if o.Jobs < 1 {
		return fmt.Errorf("--jobs: must be >= 1, got %d", o.Jobs)
	}
	if o.MaxRunners < 1 {
		return fmt.Errorf("--max-runners: must be >= 1, got %d", o.MaxRunners)
	}
	if o.MinRunners < 0 || o.MinRunners > o.MaxRunners {
		return fmt.Errorf("--min-runners: must be between 0 and --max-runners (%d), got %d", o.MaxRunners, o.MinRunners)
	}
	if o.JobDuration <= 0 {
		return fmt.Errorf("--job-duration: must be positive, got %s", o.JobDuration)
	}
	if o.Timeout <= 0 {
		return fmt.Errorf("--timeout: must be positive, got %s", o.Timeout)
	}
	return nil
}
