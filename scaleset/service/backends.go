// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"

	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/dockerbackend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/nomadbackend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/tartbackend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/config"
)

// This file is the one place that knows the backend packages: the config
// package keeps each backend block undecoded (config.BackendBlock), and
// these functions decode it with the package that owns its schema.

// BackendConfig is a scale set's backend block decoded and validated by
// its backend package. The field of the scale set's backend is set; the
// others are nil.
type BackendConfig struct {
	Docker *dockerbackend.Config
	Tart   *tartbackend.Config
	Nomad  *nomadbackend.Config
}

// DecodeBackend decodes the block of the backend ss names (docker {},
// tart {} or nomad {}) and validates it, which applies its defaults. A
// block a program built (config.BackendBlock.Value) is validated as
// given. Errors start with the block's name and name the field, as
// "docker: memory: ...". config.Validate must have run (it gives a
// missing block an empty one).
func DecodeBackend(ss *config.ScaleSet) (BackendConfig, error) {
	var bc BackendConfig
	var err error
	switch ss.Backend {
	case config.BackendDocker:
		bc.Docker, err = decodeBlock[dockerbackend.Config](config.BackendDocker, ss.Docker)
	case config.BackendTart:
		bc.Tart, err = decodeBlock[tartbackend.Config](config.BackendTart, ss.Tart)
	case config.BackendNomad:
		bc.Nomad, err = decodeBlock[nomadbackend.Config](config.BackendNomad, ss.Nomad)
	default:
		return bc, fmt.Errorf("backend: unknown kind %q", ss.Backend)
	}
	return bc, err
}

// ValidateBackends runs DecodeBackend on every scale set whose backend is
// known and returns a joined error naming the scale set, the block and
// the field (`scale_set "linux": docker: memory: ...`). Call it after
// config.Validate, which reports an unknown backend.
func ValidateBackends(c *config.Config) error {
	var errs []error
	for _, ss := range c.ScaleSets {
		switch ss.Backend {
		case config.BackendDocker, config.BackendTart, config.BackendNomad:
		default:
			continue
		}
		if _, err := DecodeBackend(ss); err != nil {
			errs = append(errs, fmt.Errorf("scale_set %q: %w", ss.Name, err))
		}
	}
	return errors.Join(errs...)
}

// validator is the Validate every backend block's Config has.
type validator interface{ Validate() error }

// decodeBlock decodes b into a T (or takes the *T a program set) and
// validates it; errors are prefixed with kind.
func decodeBlock[T any, PT interface {
	*T
	validator
}](kind string, b *config.BackendBlock) (*T, error) {
	if b == nil {
		return nil, fmt.Errorf("%s: block missing (config not validated)", kind)
	}
	var c PT
	switch v := b.Value.(type) {
	case nil:
		c = new(T)
		body := b.Body
		if body == nil {
			body = hcl.EmptyBody()
		}
		if diags := gohcl.DecodeBody(body, nil, c); diags.HasErrors() {
			return nil, fmt.Errorf("%s: %w", kind, diags)
		}
	case PT:
		c = v
	default:
		return nil, fmt.Errorf("%s: the block holds a %T, not a %T", kind, b.Value, c)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	return c, nil
}

// DefaultBackends builds the backend a scale set's `backend` names from
// its block (docker {}, tart {}, nomad {}); runner names, and so backend
// resources, are scoped by the scale set's runner_name_prefix.
func DefaultBackends(ctx context.Context, ss *config.ScaleSet, logger *slog.Logger) (backend.Backend, error) {
	bc, err := DecodeBackend(ss)
	if err != nil {
		return nil, err
	}
	switch {
	case bc.Docker != nil:
		return dockerbackend.New(*bc.Docker, ss.RunnerNamePrefix, logger)
	case bc.Tart != nil:
		return tartbackend.New(*bc.Tart, ss.RunnerNamePrefix, logger)
	default:
		// Dispatched jobs carry runner_scale_set_name in their meta; the
		// runner names (and so adoption) still follow runner_name_prefix.
		return nomadbackend.New(ctx, *bc.Nomad, ss.RunnerScaleSetName, logger)
	}
}
