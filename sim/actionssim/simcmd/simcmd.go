// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package simcmd is the command-line front end of the actionssim simulator,
// for demos that run the simulator as its own process. A binary's main only
// calls Main. It prints the base URL on stdout (and to --url-file), serves
// until its context ends, and takes jobs through the control API
// (POST /_sim/control/jobs, see actionssim's README).
package simcmd

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/tartnomad/nomad-driver-tart/internal/cliflags"
	"github.com/tartnomad/nomad-driver-tart/sim/actionssim"
	"github.com/tartnomad/nomad-driver-tart/version"
)

// Main runs the simulator until ctx ends and returns the exit code: 0 on a
// clean stop, 2 for bad flags, 1 when it cannot start.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("actionssim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o actionssim.Options
	listen := fs.String("listen", "127.0.0.1:0", "address to serve on (loopback only unless --allow-non-loopback)")
	allowRemote := fs.Bool("allow-non-loopback", false, "allow a non-loopback --listen (the control API has no authentication)")
	urlFile := fs.String("url-file", "", "also write the base URL to this file")
	pats := fs.String("pat", "", "comma-separated accepted personal access tokens (empty: accept any)")
	groups := fs.String("runner-groups", "", "comma-separated extra runner groups")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.DurationVar(&o.LongPollTimeout, "long-poll-timeout", 0, "GET message wait before 202 (default 50s)")
	fs.DurationVar(&o.AssignTimeout, "assign-timeout", 0, "time an assigned job waits for a runner before requeue (default 5m)")
	fs.IntVar(&o.MaxAssignAttempts, "max-assign-attempts", 0, "assignments before a job is given up (default 3)")
	fs.DurationVar(&o.RequeueDelay, "requeue-delay", 0, "delay per attempt before a requeued job is assigned again")
	fs.DurationVar(&o.SessionIdleTimeout, "session-idle-timeout", 0, "idle time before a session is forgotten (default 2m)")
	fs.DurationVar(&o.RunnerLostTimeout, "runner-lost-timeout", 0, "silence before a runner counts as gone (default 1m)")
	fs.DurationVar(&o.RunnerPollTimeout, "runner-poll-timeout", 0, "runner job long-poll wait (default 20s)")
	fs.DurationVar(&o.AdminTokenLifetime, "admin-token-lifetime", 0, "admin JWT lifetime (default 1h)")
	fs.DurationVar(&o.MessageQueueTokenLifetime, "message-queue-token-lifetime", 0, "message-queue token lifetime (default 1h)")
	fs.BoolVar(&o.JobAcquisition, "job-acquisition", false, "GHES flow: JobAvailable + acquirejobs")
	if code, ok := cliflags.Parse(fs, args, stdout, stderr); !ok {
		return code
	}
	if *showVersion {
		fmt.Fprintln(stdout, version.Full("actionssim"))
		return 0
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "actionssim: invalid --log-level %q\n", *logLevel)
		return 2
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		fmt.Fprintf(stderr, "actionssim: invalid --listen %q: %v\n", *listen, err)
		return 2
	}
	if ip := net.ParseIP(host); !*allowRemote && host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		fmt.Fprintf(stderr, "actionssim: --listen %q is not a loopback address (use --allow-non-loopback)\n", *listen)
		return 2
	}
	o.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	o.PersonalAccessTokens = splitList(*pats)
	o.RunnerGroups = splitList(*groups)

	srv, err := actionssim.Start(*listen, o)
	if err != nil {
		fmt.Fprintf(stderr, "actionssim: %v\n", err)
		return 1
	}
	defer srv.Close()
	if *urlFile != "" {
		if err := os.WriteFile(*urlFile, []byte(srv.URL+"\n"), 0o600); err != nil {
			fmt.Fprintf(stderr, "actionssim: writing --url-file: %v\n", err)
			return 1
		}
	}
	fmt.Fprintln(stdout, srv.URL)
	o.Logger.Info("simulator listening", "url", srv.URL)
	<-ctx.Done()
	o.Logger.Info("simulator stopping")
	return 0
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
