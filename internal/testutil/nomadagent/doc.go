// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package nomadagent starts a real, unmodified Nomad agent for a test: the
// "real-agent" tier, which checks the plugins and the scale-set service
// against Nomad's own scheduler, client, plugin loader and HTTP API instead
// of the repository's doubles (driver/harness, sim/nomadsim).
//
// Start runs `nomad agent` (server and client in one process, or a client
// joining another Agent's server) with a private data dir, free loopback
// ports, a plugin_dir of freshly built plugin binaries, `tart` resolved to
// faketart with a private TART_HOME, and, on request, Nomad's docker driver
// pointed at the private test engine (DOCKER_HOST) and ACLs with a bootstrap
// token. It returns once the node is ready and its drivers are healthy. The
// agent's log reaches the test output only when the test failed.
//
// Everything an agent spawned is gone after the test: t.Cleanup stops the
// agent, kills every process that carries the agent's marker variable in
// its environment or runs under its directory (plugins, supervisors,
// faketart, tasks, Nomad's logmon/executor), removes the containers it
// created, unmounts what a root client mounted under its data dir (deepest
// first, also after a SIGKILL) and removes its directories.
//
// The agent binary comes from NOMAD_BIN, else `nomad` on PATH (Binary).
// Without one, tests skip with a message saying how to install it
// (../shared/nomad/install.sh); under CI=true they fail instead.
//
// Name tests that use this package TestNomad…: `make test-nomad` runs
// exactly those (`go test -run '^TestNomad' ./...`).
package nomadagent
