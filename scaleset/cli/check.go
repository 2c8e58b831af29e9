// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/tartnomad/nomad-driver-tart/scaleset/check"
	"github.com/tartnomad/nomad-driver-tart/scaleset/config"
)

// checkCmd is `check --config`: the config as run would read it (file,
// environment, then secrets), then the probes of scaleset/check. Exit 0
// when ready (warnings allowed), 1 on a problem, 2 on bad usage.
func checkCmd(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string, probes check.Probes) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.Usage = commandUsage(fs, "check --config FILE [flags]", "Reads the config as run would (file, environment, secrets) and probes GitHub and\nthe backend. Exit code: 0 ready (warnings allowed), 1 a problem, 2 bad usage.")
	cfgPath := fs.String("config", getenv(config.EnvPrefix+"CONFIG"), "HCL config file (env "+config.EnvPrefix+"CONFIG)")
	timeout := fs.Duration("timeout", 20*time.Second, "bound of each probe (GitHub, Docker, Nomad, tart)")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	if *cfgPath == "" {
		fmt.Fprintln(stderr, "check: --config is required")
		return 2
	}
	fmt.Fprintf(stdout, "nomad-gha-scaleset check: %s\n", *cfgPath)
	cfg, err := config.LoadFile(*cfgPath)
	if err != nil {
		r := &check.Report{Results: []check.Result{{Scope: "config", Name: "read", Status: check.Fail, Detail: err.Error()}}}
		r.Write(stdout)
		return 1
	}
	cfg.Apply(config.EnvOverlay(getenv))
	r := check.Run(ctx, cfg, cfg.ResolveSecrets(getenv), check.Options{Probes: probes, Timeout: *timeout})
	r.Write(stdout)
	if !r.OK() {
		return 1
	}
	return 0
}
