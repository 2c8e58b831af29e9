// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package dockerexec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"

	"github.com/tartnomad/nomad-driver-tart/internal/bytesize"
)

// pullLogEvery is how often a running pull logs its progress at info level.
const pullLogEvery = 5 * time.Second

// EnsureImage makes sure the runner image is present: with pull_policy
// "always" it pulls once per Executor; with "missing" it pulls when the
// engine lacks the image; with "never" a missing image is an error.
// Concurrent callers wait for one pull.
func (e *Executor) EnsureImage(ctx context.Context) error {
	e.imageMu.Lock()
	defer e.imageMu.Unlock()
	ref := e.cfg.Image
	if e.cfg.PullPolicy == PullAlways {
		if e.pulled {
			return nil
		}
		_, ierr := e.api.ImageInspect(ctx, ref)
		if err := e.pull(ctx); err != nil {
			return err
		}
		e.pulled = true
		e.ownImage = e.ownImage || cerrdefs.IsNotFound(ierr)
		return nil
	}
	_, err := e.api.ImageInspect(ctx, ref)
	switch {
	case err == nil:
		return nil
	case !cerrdefs.IsNotFound(err):
		return e.wrap(err, "inspect runner image %q", ref)
	case e.cfg.PullPolicy == PullNever:
		return fmt.Errorf("dockerexec: runner image %q: %w: not present on the engine and pull_policy is %q (load or pull it first)",
			ref, ErrImageUnavailable, PullNever)
	}
	if err := e.pull(ctx); err != nil {
		return err
	}
	e.ownImage = true
	return nil
}

// pullMessage is one line of the engine's JSON progress stream.
type pullMessage struct {
	ID             string `json:"id"`
	Status         string `json:"status"`
	ProgressDetail struct {
		Current int64 `json:"current"`
		Total   int64 `json:"total"`
	} `json:"progressDetail"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
	Error string `json:"error"`
}

// pull pulls the image, logging progress: every layer status change at
// debug, a summary every pullLogEvery at info.
func (e *Executor) pull(ctx context.Context) error {
	ref := e.cfg.Image
	start := time.Now()
	e.log.Info("pulling runner image", "image", ref)
	rc, err := e.api.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		return e.pullFailed(err)
	}
	defer rc.Close()
	prog := newPullProgress()
	dec := json.NewDecoder(rc)
	lastLog := time.Now()
	for {
		var m pullMessage
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return e.pullFailed(fmt.Errorf("read progress stream: %w", err))
		}
		if m.Error != "" || m.ErrorDetail != nil {
			msg := m.Error
			if msg == "" {
				msg = m.ErrorDetail.Message
			}
			return e.pullFailed(errors.New(msg))
		}
		if prog.update(m) {
			e.log.Debug("pull progress", "image", ref, "layer", m.ID, "status", m.Status)
		}
		if time.Since(lastLog) >= pullLogEvery {
			lastLog = time.Now()
			done, total, cur, size := prog.summary()
			e.log.Info("pulling runner image", "image", ref, "layers_done", done, "layers", total,
				"downloaded", bytesize.FormatBytes(cur), "download_size", bytesize.FormatBytes(size))
		}
	}
	if _, err := e.api.ImageInspect(ctx, ref); err != nil {
		return e.pullFailed(fmt.Errorf("image not present after pull: %w", err))
	}
	done, total, cur, _ := prog.summary()
	e.log.Info("pulled runner image", "image", ref, "layers_done", done, "layers", total,
		"downloaded", bytesize.FormatBytes(cur), "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

func (e *Executor) pullFailed(err error) error {
	if ue := e.wrap(err, "pull runner image %q", e.cfg.Image); errors.Is(ue, ErrEngineUnreachable) {
		return ue
	}
	return fmt.Errorf("dockerexec: runner image %q: %w: not present on the engine and the pull failed (is the registry reachable, and the name right?): %w",
		e.cfg.Image, ErrImageUnavailable, err)
}

// pullProgress tracks per-layer state of a pull for the summary log line.
type pullProgress struct {
	status  map[string]string
	current map[string]int64
	total   map[string]int64
}

func newPullProgress() *pullProgress {
	return &pullProgress{status: map[string]string{}, current: map[string]int64{}, total: map[string]int64{}}
}

// update records m and reports whether a layer's status changed.
func (p *pullProgress) update(m pullMessage) bool {
	// "Pulling from <repo>" carries the tag as its ID: not a layer.
	if m.ID == "" || strings.HasPrefix(m.Status, "Pulling from") {
		return false
	}
	if m.Status == "Downloading" && m.ProgressDetail.Total > 0 {
		p.current[m.ID] = m.ProgressDetail.Current
		p.total[m.ID] = m.ProgressDetail.Total
	}
	if m.Status == "Download complete" {
		p.current[m.ID] = p.total[m.ID]
	}
	changed := p.status[m.ID] != m.Status
	p.status[m.ID] = m.Status
	return changed
}

// summary returns finished layers, known layers, downloaded and total bytes.
func (p *pullProgress) summary() (done, layers int, cur, size uint64) {
	for id, s := range p.status {
		if s == "Pull complete" || s == "Already exists" {
			done++
		}
		c, t := p.current[id], p.total[id]
		if c > 0 {
			cur += uint64(c)
		}
		if t > 0 {
			size += uint64(t)
		}
	}
	return done, len(p.status), cur, size
}
