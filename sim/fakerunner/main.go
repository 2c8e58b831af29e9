// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package fakerunner

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

	"github.com/tartnomad/nomad-driver-tart/internal/cliflags"
	"github.com/tartnomad/nomad-driver-tart/version"
)

// EnvJITConfig is the variable the real runner reads its JIT config from
// (any ACTIONS_RUNNER_INPUT_<NAME> maps to --<name>).
const EnvJITConfig = "ACTIONS_RUNNER_INPUT_JITCONFIG"

// maxJITConfigSize bounds what is read from stdin or a file.
const maxJITConfigSize = 1 << 20

// Main is the fakerunner command. It reads the JIT config from --jitconfig
// (a blob, or "-" for stdin), --jitconfig-file, or ACTIONS_RUNNER_INPUT_JITCONFIG
// (removed from the environment after reading), runs one ephemeral runner
// life and returns the exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fakerunner", flag.ContinueOnError)
	fs.SetOutput(stderr)
	jitFlag := fs.String("jitconfig", "", `the encoded JIT config, or "-" to read it from stdin`)
	jitFile := fs.String("jitconfig-file", "", "read the encoded JIT config from this file")
	connect := fs.Duration("connect-timeout", 15*time.Second, "how long to retry an unreachable simulator")
	idle := fs.Duration("idle-timeout", 0, "go offline and exit 7 if no job arrives in this time (0: wait forever)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if code, ok := cliflags.Parse(fs, args, stdout, stderr); !ok {
		return code
	}
	if *showVersion {
		fmt.Fprintln(stdout, version.Full("fakerunner"))
		return ExitSuccess
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "fakerunner: invalid --log-level %q\n", *logLevel)
		return ExitUsage
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	blob, err := readJITConfig(*jitFlag, *jitFile, stdin)
	if err != nil {
		logger.Error("failed to read JIT config", "error", err)
		return ExitUsage
	}
	res, err := Run(ctx, Config{
		JITConfig: blob, Logger: logger, ConnectTimeout: *connect, IdleTimeout: *idle,
	})
	if err != nil {
		logger.Error("runner failed", "runner_name", res.RunnerName, "error", err, "exit_code", Code(err))
		return Code(err)
	}
	logger.Info("runner finished", "runner_name", res.RunnerName, "job_id", res.JobID, "result", res.JobResult)
	return ExitSuccess
}

// readJITConfig picks the JIT config source. The environment variable is
// always removed, as the real runner does, so child processes never see it.
func readJITConfig(flagValue, file string, stdin io.Reader) (string, error) {
	env, envSet := os.LookupEnv(EnvJITConfig)
	if envSet {
		_ = os.Unsetenv(EnvJITConfig) // cannot fail for a valid name
	}
	switch {
	case flagValue != "" && file != "":
		return "", errors.New("give only one of --jitconfig and --jitconfig-file")
	case flagValue == "-":
		return readLimited(stdin, "stdin")
	case flagValue != "":
		return flagValue, nil
	case file != "":
		f, err := os.Open(file)
		if err != nil {
			return "", fmt.Errorf("opening --jitconfig-file: %w", err)
		}
		defer f.Close()
		return readLimited(f, "--jitconfig-file")
	case envSet && env != "":
		return env, nil
	default:
		return "", fmt.Errorf("no JIT config: use --jitconfig, --jitconfig-file or %s", EnvJITConfig)
	}
}

func readLimited(r io.Reader, what string) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxJITConfigSize+1))
	if err != nil {
		return "", fmt.Errorf("reading JIT config from %s: %w", what, err)
	}
	if len(b) > maxJITConfigSize {
		return "", fmt.Errorf("JIT config from %s is larger than %d bytes", what, maxJITConfigSize)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("JIT config from %s is empty", what)
	}
	return s, nil
}
