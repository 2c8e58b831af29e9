// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Command actionssim runs the GitHub Actions scale-set service simulator as
// its own process, for demos and manual checks. See sim/actionssim.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/tartnomad/nomad-driver-tart/sim/actionssim/simcmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := simcmd.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
