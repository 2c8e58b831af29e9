// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package dockerexec

import (
	"context"
	"errors"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
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
	// ImagesDeleted are the images Cleanup removed: the runner image, only
	// when this executor pulled it and RemovePulledImage is set.
	ImagesDeleted []string
}

// Cleanup stops new starts, removes the ended runner containers of this
// instance and scale set (a Reconcile), removes the shared volume unless
// runners still use it, and, with RemovePulledImage, the runner image if
// this executor pulled it. It never prunes: dangling images and the build
// cache of a shared engine belong to others (and a prune of a busy engine
// can outlast any shutdown timeout).
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
	if ref, ok := e.removablePulledImage(rep.RunnersLeft); ok {
		switch _, err := e.api.ImageRemove(ctx, ref, image.RemoveOptions{}); {
		case err == nil:
			rep.ImagesDeleted = append(rep.ImagesDeleted, ref)
		case cerrdefs.IsNotFound(err):
		case cerrdefs.IsConflict(err):
			e.log.Info("kept pulled runner image still in use", "image", ref)
		default:
			errs = append(errs, e.wrap(err, "remove pulled image %q", ref))
		}
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
		"runners_left", rep.RunnersLeft, "volume_removed", rep.VolumeRemoved, "images_deleted", rep.ImagesDeleted)
}

// removablePulledImage returns the runner image when Cleanup may remove it:
// RemovePulledImage is set, this executor pulled it, and no runner of ours
// still runs on it.
func (e *Executor) removablePulledImage(runnersLeft int) (string, bool) {
	e.imageMu.Lock()
	defer e.imageMu.Unlock()
	return e.cfg.Image, e.cfg.RemovePulledImage && e.ownImage && runnersLeft == 0
}
