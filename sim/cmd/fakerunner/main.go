// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Command fakerunner is a fake ephemeral GitHub Actions runner for the
// actionssim simulator. See sim/fakerunner.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/tartnomad/nomad-driver-tart/sim/fakerunner"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := fakerunner.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
