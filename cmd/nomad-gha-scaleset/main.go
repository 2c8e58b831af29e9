// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Command nomad-gha-scaleset is the GitHub Actions runner scale-set
// service. All logic lives in scaleset/cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/tartnomad/nomad-driver-tart/scaleset/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
