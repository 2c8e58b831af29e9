// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Command nomad-gha-scaleset-demo is the credential-free demo behind `make
// demo`: the Actions simulator, the real nomad-gha-scaleset binary as a
// child process and a burst of simulated jobs. All logic lives in package
// sim/demo; `--help` lists the flags.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/tartnomad/nomad-driver-tart/sim/demo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := demo.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
