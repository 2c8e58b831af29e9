// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/dockerbackend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/nomadbackend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/tartbackend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/config"
)

// DefaultBackends builds the backend a scale set's `backend` names from
// its block (docker {}, tart {}, nomad {}). This is the one place that
// knows the backend packages; runner names, and so backend resources, are
// scoped by the scale set's runner_name_prefix.
func DefaultBackends(ctx context.Context, ss *config.ScaleSet, logger *slog.Logger) (backend.Backend, error) {
	switch ss.Backend {
	case config.BackendDocker:
		if ss.Docker == nil {
			return nil, errors.New("docker: block missing (config not validated)")
		}
		return dockerbackend.New(*ss.Docker, ss.RunnerNamePrefix, logger)
	case config.BackendTart:
		if ss.Tart == nil {
			return nil, errors.New("tart: block missing (config not validated)")
		}
		return tartbackend.New(*ss.Tart, ss.RunnerNamePrefix, logger)
	case config.BackendNomad:
		if ss.Nomad == nil {
			return nil, errors.New("nomad: block missing (config not validated)")
		}
		// Dispatched jobs carry runner_scale_set_name in their meta; the
		// runner names (and so adoption) still follow runner_name_prefix.
		return nomadbackend.New(ctx, *ss.Nomad, ss.RunnerScaleSetName, logger)
	default:
		return nil, fmt.Errorf("backend: unknown kind %q", ss.Backend)
	}
}
