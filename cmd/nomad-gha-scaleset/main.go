// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Command nomad-gha-scaleset is the GitHub Actions runner scale-set
// service. All logic lives in scaleset/cli. `supervise <dir>` is the
// detached supervisor of a tart backend runner's guest command, which the
// service starts by re-executing itself (see internal/supervisor).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/tartnomad/nomad-driver-tart/internal/supervisor"
	"github.com/tartnomad/nomad-driver-tart/scaleset/cli"
)

func main() {
	supervisor.MainIfInvoked()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
