// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package service runs the nomad-gha-scaleset service: for each configured
// scale set it builds an official actions/scaleset client (GitHub App or
// PAT), gets or creates the scale set by name, opens a message session
// (retrying a 409 conflict for a bounded time), runs the scaleset
// listener with this project's scaler, and restarts the listener with
// backoff when GitHub or the network fails. It serves /metrics, /healthz
// and /readyz, and on shutdown deletes every session and, if configured,
// removes idle runners.
//
// Backends are built through a factory (backends.go) so that tests and the
// demo can substitute their own. backends.go is the one place that knows
// the backend packages: it decodes and validates each scale set's backend
// block, which the config package keeps undecoded (ValidateBackends,
// DecodeBackend). The package never logs JIT configs, tokens or keys.
package service
