// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package dockerexec

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
)

// Runner is one runner container as the engine reports it.
type Runner struct {
	ContainerID string
	// Name is the runner name (from the runner label).
	Name string
	// State is the engine's container state: created, running, paused,
	// restarting, removing, exited or dead.
	State container.ContainerState
	// ExitCode, OOMKilled and Error are set for containers that have
	// stopped (or failed to start).
	ExitCode  int
	OOMKilled bool
	Error     string
	CreatedAt time.Time
	// Labels are the container's labels.
	Labels map[string]string
	// Starting is true while this Executor's StartRunner for it is still
	// in flight. A created container that is not Starting was left behind
	// (a crash or a failed start) and will never start.
	Starting bool
}

// Leftover reports whether the container's runner will never run (again):
// it stopped, or it was created and nobody is starting it.
func (r Runner) Leftover() bool {
	return r.Stopped() || (r.State == container.StateCreated && !r.Starting)
}

// Stopped reports whether the runner's process has ended for good.
func (r Runner) Stopped() bool {
	return r.State == container.StateExited || r.State == container.StateDead
}

// Runners lists every container of this instance and scale set, in any
// state, oldest first. Stopped ones carry their exit code.
func (e *Executor) Runners(ctx context.Context) ([]Runner, error) {
	args := filters.NewArgs()
	for k, v := range e.cfg.ownLabels() {
		args.Add("label", k+"="+v)
	}
	list, err := e.api.ContainerList(ctx, container.ListOptions{All: true, Filters: args})
	if err != nil {
		return nil, e.wrap(err, "list runner containers")
	}
	out := make([]Runner, 0, len(list))
	for _, c := range list {
		r := Runner{
			ContainerID: c.ID,
			Name:        c.Labels[LabelRunner],
			State:       c.State,
			CreatedAt:   time.Unix(c.Created, 0),
			Labels:      c.Labels,
		}
		if r.Stopped() || r.State == container.StateCreated {
			// The list gives only a status sentence; the exit code needs
			// an inspect. Stopped containers are few: reconcile removes
			// them.
			info, err := e.api.ContainerInspect(ctx, c.ID)
			switch {
			case cerrdefs.IsNotFound(err):
				continue // removed meanwhile
			case err != nil:
				return nil, e.wrap(err, "inspect runner container %s", shortID(c.ID))
			}
			if info.State != nil {
				r.State = info.State.Status
				r.ExitCode = info.State.ExitCode
				r.OOMKilled = info.State.OOMKilled
				r.Error = info.State.Error
			}
		}
		out = append(out, r)
	}
	e.mu.Lock()
	for i := range out {
		_, out[i].Starting = e.starting[out[i].Name]
	}
	e.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// ReconcileReport says what one Reconcile pass did.
type ReconcileReport struct {
	// Removed are the containers removed: stopped runners, and created ones
	// that this executor is not starting (left by a crash or a failed
	// start).
	Removed []Runner
	// Remaining are the runners left in place (running, or being started).
	Remaining []Runner
}

// Reconcile lists this instance's runner containers and removes the ones
// whose runner has ended, plus created-but-never-started leftovers. Running
// runners are left alone. It keeps going past individual failures and
// returns them joined.
func (e *Executor) Reconcile(ctx context.Context) (ReconcileReport, error) {
	var rep ReconcileReport
	runners, err := e.Runners(ctx)
	if err != nil {
		return rep, err
	}
	var errs []error
	for _, r := range runners {
		if !r.Leftover() {
			rep.Remaining = append(rep.Remaining, r)
			continue
		}
		if err := e.remove(ctx, r.ContainerID); err != nil {
			errs = append(errs, err)
			rep.Remaining = append(rep.Remaining, r)
			continue
		}
		rep.Removed = append(rep.Removed, r)
		e.log.Info("removed ended runner container", "runner_name", r.Name, "container_id", shortID(r.ContainerID),
			"state", r.State, "exit_code", r.ExitCode, "oom_killed", r.OOMKilled)
	}
	if err := errors.Join(errs...); err != nil {
		return rep, fmt.Errorf("dockerexec: reconcile: %w", err)
	}
	return rep, nil
}

// RunReconciler runs Reconcile now and then every reconcile_interval until
// ctx ends. The caller owns the goroutine it runs in. Failures are logged,
// not returned: the next pass retries.
func (e *Executor) RunReconciler(ctx context.Context) {
	t := time.NewTicker(e.cfg.ReconcileInterval)
	defer t.Stop()
	for {
		if _, err := e.Reconcile(ctx); err != nil && ctx.Err() == nil {
			e.log.Warn("failed to reconcile runner containers", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
