// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/tartnomad/nomad-driver-tart/tart"
)

// A host with two slots and one warm macOS VM: provision a VM for a task,
// run a command in it with a secret on stdin, then release it.
func Example() {
	ctx := context.Background()
	client := tart.NewClient(tart.WithLogger(slog.Default()), tart.WithEnv("TART_NO_AUTO_PRUNE=1"))
	host, _ := os.Hostname()
	slots, err := tart.NewSlots(tart.DefaultMaxVMs, host)
	if err != nil {
		fmt.Println(err)
		return
	}
	pool, err := tart.NewPool(client, slots, []tart.PoolConfig{{
		Name: "macos", Size: 1,
		VMSpec: tart.VMSpec{Image: "ghcr.io/cirruslabs/macos-sequoia-base:latest", CPU: 4, MemoryMiB: 8192},
	}}, tart.PoolOptions{OnEvent: func(e tart.Event) { fmt.Println(e.Message) }})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := pool.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = pool.Shutdown(ctx) }()

	spec := tart.VMSpec{Pool: "macos"}
	vm, err := pool.Provision(ctx, tart.TaskVMName("job-42"), "job-42", spec, nil)
	if errors.Is(err, tart.ErrVMLimit) {
		fmt.Println("host is full")
		return
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = pool.Release(ctx, vm) }()

	code, err := client.Exec(ctx, vm.Name, []string{"/bin/bash", "-lc", `read -r token; echo "got ${#token} bytes"`},
		tart.ExecOptions{Stdin: strings.NewReader("s3cr3t\n"), Stdout: os.Stdout, Stderr: os.Stderr})
	switch {
	case errors.Is(err, tart.ErrAgentNotReady):
		fmt.Println("guest agent unreachable")
	case err != nil:
		fmt.Println("tart failed:", err)
	default:
		fmt.Println("guest command exited", code)
	}
}
