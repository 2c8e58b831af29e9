// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package dockerbackend

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/tartnomad/nomad-driver-tart/dockerexec"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
)

// kindName is the backend kind reported by Backend.Name.
const kindName = "docker"

// Backend runs a scale set's runners as Docker containers.
type Backend struct {
	ex     *dockerexec.Executor
	closer func() error // closes a client New created; nil otherwise
}

var (
	_ backend.RunnerBackend = (*Backend)(nil)
	_ backend.Backend       = (*Backend)(nil)
)

// New validates cfg and returns a Backend for the scale set named
// scaleSetName, with a Docker client from the environment (DOCKER_HOST and
// friends, or docker_host) using API version negotiation. It does no I/O:
// the first runner start checks the engine and the image.
func New(cfg Config, scaleSetName string, logger *slog.Logger) (*Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dockerbackend: invalid docker config: %w", err)
	}
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if cfg.DockerHost != "" {
		opts = append(opts, client.WithHost(cfg.DockerHost))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("dockerbackend: create docker client: %w", err)
	}
	b, err := newWithClient(cfg, scaleSetName, cli, logger)
	if err != nil {
		_ = cli.Close()
		return nil, err
	}
	b.closer = cli.Close
	return b, nil
}

// newWithClient is New with a caller-owned Docker API (a client or a test
// double); Shutdown does not close it.
func newWithClient(cfg Config, scaleSetName string, api dockerexec.DockerAPI, logger *slog.Logger) (*Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dockerbackend: invalid docker config: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ex, err := dockerexec.New(cfg.executorConfig(scaleSetName), api, logger) // the service's logger already carries backend and scale_set
	if err != nil {
		return nil, fmt.Errorf("dockerbackend: %w", err)
	}
	return &Backend{ex: ex}, nil
}

// Name returns "docker".
func (b *Backend) Name() string { return kindName }

// ensureImage checks that the engine answers and the runner image is present,
// pulling it per pull_policy. Optional: the first StartRunner does the same.
func (b *Backend) ensureImage(ctx context.Context) error { return b.ex.EnsureImage(ctx) }

// labelRunnerID is the container label holding the GitHub runner ID, by
// which a restarted service adopts the container.
const labelRunnerID = "io.github.tartnomad.scaleset.runner-id"

// StartRunner starts one runner container; the resource ID is the
// container ID. It records no runner ID: the service uses StartIdentified.
func (b *Backend) StartRunner(ctx context.Context, name, jitConfig string) (string, error) {
	return b.ex.StartRunner(ctx, name, jitConfig)
}

// StartIdentified starts one runner container labelled with its GitHub
// runner ID.
func (b *Backend) StartIdentified(ctx context.Context, id backend.Identity, jitConfig string) (string, error) {
	return b.ex.StartRunnerLabeled(ctx, id.Name, jitConfig, map[string]string{labelRunnerID: strconv.Itoa(id.RunnerID)})
}

// RemoveRunner force-removes a runner container; one already gone is fine.
func (b *Backend) RemoveRunner(ctx context.Context, resourceID string) error {
	return b.ex.RemoveRunner(ctx, resourceID)
}

// ListRunners returns every container of this instance and scale set with
// its state. Ended containers stay listed until RemoveRunner: the scale-set
// service decides what to do with them.
func (b *Backend) ListRunners(ctx context.Context) ([]backend.Runner, error) {
	rs, err := b.ex.Runners(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]backend.Runner, 0, len(rs))
	for _, r := range rs {
		out = append(out, toBackendRunner(r))
	}
	return out, nil
}

// Shutdown removes ended runner containers and, when no runner uses it, the
// shared volume (and, if configured, the runner image it pulled), and logs
// what it removed. It reclaims nothing it did not create. Running runners
// are left to finish their job.
func (b *Backend) Shutdown(ctx context.Context) {
	b.ex.Shutdown(ctx)
	if b.closer != nil {
		_ = b.closer()
	}
}

// toBackendRunner maps a container's engine state onto backend states.
func toBackendRunner(r dockerexec.Runner) backend.Runner {
	br := backend.Runner{Name: r.Name, ResourceID: r.ContainerID, CreatedAt: r.CreatedAt}
	if id, err := strconv.Atoi(r.Labels[labelRunnerID]); err == nil && id > 0 {
		br.RunnerID = id
	}
	switch r.State {
	case container.StateCreated:
		if r.Starting {
			br.State = backend.StatePending
		} else {
			br.State, br.Reason = backend.StateFailed, "container created but never started (its start was interrupted)"
		}
	case container.StateRunning, container.StatePaused:
		br.State = backend.StateRunning
	case container.StateRestarting:
		br.State, br.Reason = backend.StateRunning, "container is restarting"
	case container.StateRemoving:
		br.State = backend.StateExited
	case container.StateExited:
		if r.ExitCode == 0 && !r.OOMKilled {
			br.State = backend.StateExited
		} else {
			br.State, br.Reason = backend.StateFailed, exitReason(r)
		}
	default: // dead, or a state this engine version added
		br.State, br.Reason = backend.StateFailed, "container "+r.State
		if r.Error != "" {
			br.Reason += ": " + r.Error
		}
	}
	return br
}

func exitReason(r dockerexec.Runner) string {
	parts := []string{fmt.Sprintf("exit code %d", r.ExitCode)}
	if r.OOMKilled {
		parts = append(parts, "killed: out of memory")
	}
	if r.Error != "" {
		parts = append(parts, r.Error)
	}
	return strings.Join(parts, ", ")
}
