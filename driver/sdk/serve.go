// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package sdk

import (
	"fmt"
	"io"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/tartnomad/nomad-driver-tart/version"
)

// Serve runs the plugin process for the binary named binary: with a
// --version argument it prints version.Full(binary) and returns; otherwise
// it serves the driver to Nomad until the client kills the process.
//
// The JSON logger on stderr is created before plugin.Serve, which replaces
// os.Stderr (Nomad discards what is written there afterwards) and reserves
// stdout for the handshake line.
func Serve(binary string, newDriver func(hclog.Logger) Driver) {
	if printVersion(os.Args[1:], os.Stdout, binary) {
		return
	}
	logger := newLogger(os.Stderr)
	plugin.Serve(serveConfig(newDriver(logger), logger))
}

// newLogger returns the JSON hclog logger Nomad's plugin client re-emits at
// each record's level.
func newLogger(w io.Writer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Level:      hclog.Trace,
		Output:     w,
		JSONFormat: true,
	})
}

// serveConfig is the go-plugin serve configuration for d: Nomad's
// handshake, gRPC only, both services on one server.
func serveConfig(d Driver, logger hclog.Logger) *plugin.ServeConfig {
	return &plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         PluginSet(d, logger),
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          logger,
	}
}

// printVersion handles a leading --version flag (also -version). Later
// arguments are left alone: they come from the agent's plugin block.
func printVersion(args []string, w io.Writer, binary string) bool {
	if len(args) == 0 || (args[0] != "--version" && args[0] != "-version") {
		return false
	}
	_, _ = fmt.Fprintln(w, version.Full(binary))
	return true
}
