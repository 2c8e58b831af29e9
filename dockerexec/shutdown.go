// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package dockerexec

import (
	"context"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"

	"github.com/tartnomad/nomad-driver-tart/internal/bytesize"
)

// CleanupReport says what Cleanup removed.
type CleanupReport struct {
	ContainersRemoved int
	VolumeRemoved     bool
	// ImagesDeleted are the IDs of dangling images the prune deleted.
	ImagesDeleted []string
	// SpaceReclaimed is the bytes freed by the image and build-cache
	// prunes, as the engine reports them.
	SpaceReclaimed uint64
}

// Cleanup stops new starts, removes every runner container of this
// instance and scale set (running ones too: their JIT configs die with the
// service's scale set session), removes the shared volume, and prunes
// dangling images and the build cache. It goes on past failures and
// returns them joined with what it managed.
func (e *Executor) Cleanup(ctx context.Context) (CleanupReport, error) {
	e.mu.Lock()
	e.shuttingDown = true
	e.mu.Unlock()

	var rep CleanupReport
	var errs []error
	runners, err := e.Runners(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	for _, r := range runners {
		if err := e.remove(ctx, r.ContainerID); err != nil {
			errs = append(errs, err)
			continue
		}
		rep.ContainersRemoved++
	}
	if e.cfg.SharedVolume != "" {
		switch err := e.api.VolumeRemove(ctx, e.cfg.SharedVolume, true); {
		case err == nil:
			rep.VolumeRemoved = true
		case cerrdefs.IsNotFound(err):
		default:
			errs = append(errs, e.wrap(err, "remove shared volume %q", e.cfg.SharedVolume))
		}
	}
	dangling := filters.NewArgs(filters.Arg("dangling", "true"))
	var ir image.PruneReport
	err = retryConflict(ctx, func() (err error) { ir, err = e.api.ImagesPrune(ctx, dangling); return err })
	if err != nil {
		errs = append(errs, e.wrap(err, "prune dangling images"))
	} else {
		rep.SpaceReclaimed += ir.SpaceReclaimed
		for _, d := range ir.ImagesDeleted {
			if d.Deleted != "" {
				rep.ImagesDeleted = append(rep.ImagesDeleted, d.Deleted)
			}
		}
	}
	var br *build.CachePruneReport
	err = retryConflict(ctx, func() (err error) { br, err = e.api.BuildCachePrune(ctx, build.CachePruneOptions{}); return err })
	if err != nil {
		errs = append(errs, e.wrap(err, "prune build cache"))
	} else if br != nil {
		rep.SpaceReclaimed += br.SpaceReclaimed
	}
	if err := joinNonNil(errs); err != nil {
		return rep, fmt.Errorf("dockerexec: cleanup: %w", err)
	}
	return rep, nil
}

// Shutdown runs Cleanup and logs what it reclaimed. It has the seed's shape
// (no error): failures are logged.
func (e *Executor) Shutdown(ctx context.Context) {
	rep, err := e.Cleanup(ctx)
	if err != nil {
		e.log.Error("failed to clean up completely", "error", err)
	}
	e.log.Info("shut down docker runner executor", "containers_removed", rep.ContainersRemoved,
		"volume_removed", rep.VolumeRemoved, "images_deleted", len(rep.ImagesDeleted),
		"space_reclaimed", formatBytes(rep.SpaceReclaimed))
}

// pruneRetries bounds retries of a prune refused because another prune runs
// on the engine (the engine allows one at a time, and other services on the
// host may prune too).
const pruneRetries = 10

func retryConflict(ctx context.Context, op func() error) error {
	delay := 200 * time.Millisecond
	for i := 0; ; i++ {
		err := op()
		if err == nil || !cerrdefs.IsConflict(err) || i == pruneRetries {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

func formatBytes(n uint64) string { return bytesize.FormatBytes(n) }
