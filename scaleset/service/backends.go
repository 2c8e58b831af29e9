// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package service

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/config"
)

// DefaultBackends builds the backend a scale set's `backend` names from
// its block (docker {}, tart {}, nomad {}). This is the one place that
// knows the backend packages.
func DefaultBackends(_ context.Context, ss *config.ScaleSet, logger *slog.Logger) (backend.Backend, error) {
	switch ss.Backend {
	case config.BackendDocker, config.BackendTart, config.BackendNomad:
		// Wired in as the backend packages land.
		return nil, fmt.Errorf("backend %q is not available in this build", ss.Backend)
	default:
		return nil, fmt.Errorf("backend: unknown kind %q", ss.Backend)
	}
}
