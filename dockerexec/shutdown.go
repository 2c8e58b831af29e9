// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package dockerexec

import (
	"context"
	"errors"
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
	// ContainersRemoved counts ended runner containers removed.
	ContainersRemoved int
	// RunnersLeft counts runners left running to finish their job.
	RunnersLeft int
	// VolumeRemoved says whether the shared volume was removed; it is kept
	// while runners still use it.
	VolumeRemoved bool
	// ImagesDeleted are the IDs of dangling images the prune deleted.
	ImagesDeleted []string
	// SpaceReclaimed is the bytes freed by the image and build-cache
	// prunes, as the engine reports them.
	SpaceReclaimed uint64
}

// Cleanup stops new starts, removes the ended runner containers of this
// instance and scale set (a Reconcile), removes the shared volume unless
// runners still use it, and prunes dangling images and the build cache.
// Running runners are left to finish their job: an ephemeral runner exits
// after it, and the next Reconcile of this instance removes it. Cleanup
// goes on past failures and returns them joined with what it managed.
func (e *Executor) Cleanup(ctx context.Context) (CleanupReport, error) {
	e.mu.Lock()
	e.shuttingDown = true
	e.mu.Unlock()

	var rep CleanupReport
	var errs []error
	rec, err := e.Reconcile(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	rep.ContainersRemoved = len(rec.Removed)
	rep.RunnersLeft = len(rec.Remaining)
	if e.cfg.SharedVolume != "" && rep.RunnersLeft == 0 {
		switch err := e.api.VolumeRemove(ctx, e.cfg.SharedVolume, true); {
		case err == nil:
			rep.VolumeRemoved = true
		case cerrdefs.IsNotFound(err):
		case cerrdefs.IsConflict(err):
			// Mounted by containers of another instance or scale set.
			e.log.Info("kept shared volume still in use", "volume", e.cfg.SharedVolume)
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
	if err := errors.Join(errs...); err != nil {
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
		"runners_left", rep.RunnersLeft, "volume_removed", rep.VolumeRemoved, "images_deleted", len(rep.ImagesDeleted),
		"space_reclaimed", bytesize.FormatBytes(rep.SpaceReclaimed))
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
