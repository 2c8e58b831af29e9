// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package dockerexec

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"path"
	"slices"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"
)

// cleanupTimeout bounds removals done after the caller's context is gone
// (a start that failed half-way must still remove its container).
const cleanupTimeout = 30 * time.Second

// Executor starts, lists and removes ephemeral runner containers for one
// scale set of one service instance. It is safe for concurrent use. Run at
// most one Executor per (instance ID, scale set) pair: Reconcile treats
// containers it is not itself creating as leftovers.
type Executor struct {
	api DockerAPI
	cfg Config
	log *slog.Logger

	// imageMu serialises image checks and pulls, so a burst of starts with a
	// missing image pulls it once.
	imageMu sync.Mutex
	pulled  bool // PullAlways: already pulled by this executor
	// ownImage: this executor pulled the image while the engine lacked
	// it, so it is ours to remove (RemovePulledImage).
	ownImage bool

	// ownerMu guards owner, the resolved container user (file delivery).
	ownerMu sync.Mutex
	owner   *owner

	// mu guards the fields below.
	mu           sync.Mutex
	volumeReady  bool
	starting     map[string]struct{} // container names between create and start
	shuttingDown bool
}

// New validates cfg (applying defaults) and returns an Executor using api.
// A nil logger discards. New does no I/O; call Init to check the engine,
// the image and leftovers before the first runner.
func New(cfg Config, api DockerAPI, logger *slog.Logger) (*Executor, error) {
	if api == nil {
		return nil, fmt.Errorf("dockerexec: %w: nil DockerAPI", ErrInvalidInput)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dockerexec: invalid config: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg.Command = slices.Clone(cfg.Command)
	cfg.Env = maps.Clone(cfg.Env)
	cfg.Labels = maps.Clone(cfg.Labels)
	return &Executor{
		api:      api,
		cfg:      cfg,
		log:      logger.With("scale_set", cfg.ScaleSet, "instance_id", cfg.InstanceID),
		starting: map[string]struct{}{},
	}, nil
}

// Config returns a copy of the validated configuration, defaults applied.
func (e *Executor) Config() Config {
	c := e.cfg
	c.Command = slices.Clone(c.Command)
	c.Env = maps.Clone(c.Env)
	c.Labels = maps.Clone(c.Labels)
	return c
}

// Init prepares for the first runner: it makes sure the image is present
// (pulling per the pull policy), creates the shared volume and removes
// containers a previous run of this instance left behind.
func (e *Executor) Init(ctx context.Context) error {
	if err := e.EnsureImage(ctx); err != nil {
		return err
	}
	if err := e.ensureVolume(ctx); err != nil {
		return err
	}
	_, err := e.Reconcile(ctx)
	return err
}

// StartRunner creates and starts one ephemeral container running the runner
// with the given name and JIT config, and returns the container ID. The JIT
// config is a secret: it never appears in logs, errors, labels or argv.
// A start that fails after the container was created removes it again.
func (e *Executor) StartRunner(ctx context.Context, name, jitConfig string) (string, error) {
	return e.StartRunnerLabeled(ctx, name, jitConfig, nil)
}

// StartRunnerLabeled is StartRunner with extra container labels (the
// scale-set service records the GitHub runner ID in one). Runners lists
// them back. The executor's own labels win over extra ones.
func (e *Executor) StartRunnerLabeled(ctx context.Context, name, jitConfig string, extra map[string]string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("dockerexec: start runner: %w: empty runner name", ErrInvalidInput)
	}
	if !validName.MatchString(name) {
		return "", fmt.Errorf("dockerexec: start runner: %w: runner name %q is not a valid container name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)", ErrInvalidInput, name)
	}
	if jitConfig == "" {
		return "", fmt.Errorf("dockerexec: start runner %q: %w: empty JIT config", name, ErrInvalidInput)
	}
	if err := e.beginStart(name); err != nil {
		return "", err
	}
	defer e.endStart(name)

	start := time.Now()
	id, err := e.startRunner(ctx, name, jitConfig, extra)
	if err != nil {
		err = redact(err, jitConfig)
		e.log.Warn("failed to start runner container", "runner_name", name, "error", err)
		return "", err
	}
	e.log.Info("started runner container", "runner_name", name, "container_id", shortID(id),
		"duration", time.Since(start).Round(time.Millisecond))
	return id, nil
}

func (e *Executor) beginStart(name string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.shuttingDown {
		return fmt.Errorf("dockerexec: start runner %q: %w", name, ErrShutdown)
	}
	if _, dup := e.starting[name]; dup {
		return fmt.Errorf("dockerexec: start runner %q: %w: a runner with this name is already starting", name, ErrInvalidInput)
	}
	e.starting[name] = struct{}{}
	return nil
}

func (e *Executor) endStart(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.starting, name)
}

// startRunner is StartRunner's steps: prerequisites, create, hand over the
// JIT config, start; undoing the create when a later step fails.
func (e *Executor) startRunner(ctx context.Context, name, jitConfig string, extra map[string]string) (string, error) {
	if err := e.ensureVolume(ctx); err != nil {
		return "", err
	}
	if e.cfg.PullPolicy == PullAlways {
		if err := e.EnsureImage(ctx); err != nil {
			return "", err
		}
	}
	id, err := e.create(ctx, name, jitConfig, extra)
	if err != nil {
		if ctx.Err() != nil {
			// The engine may have created it after we stopped waiting.
			e.undoCreate(ctx, name, name)
		}
		return "", err
	}
	if err := e.deliverAndStart(ctx, id, name, jitConfig); err != nil {
		e.undoCreate(ctx, name, id)
		return "", err
	}
	return id, nil
}

// undoCreate removes the container (by ID or name) of a start that failed,
// on a context that outlives the caller's, but only when it carries this
// executor's labels for the runner: a name alone may belong to someone
// else's container.
func (e *Executor) undoCreate(ctx context.Context, name, ref string) {
	rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	info, err := e.api.ContainerInspect(rmCtx, ref)
	if cerrdefs.IsNotFound(err) {
		return
	}
	if err == nil {
		if info.Config == nil || !e.owns(info.Config.Labels, name) {
			return
		}
		err = e.remove(rmCtx, info.ID)
	}
	if err != nil {
		e.log.Error("failed to remove runner container after failed start", "runner_name", name,
			"container", shortID(ref), "error", err)
	}
}

// owns reports whether labels mark a container of this executor's runner.
func (e *Executor) owns(labels map[string]string, name string) bool {
	for k, v := range e.cfg.ownLabels() {
		if labels[k] != v {
			return false
		}
	}
	return labels[LabelRunner] == name
}

// create creates the container. When the engine lacks the image it makes
// sure of the image (pulling per policy) and tries once more, the way
// `docker run` does, so the common case costs no extra round trip.
func (e *Executor) create(ctx context.Context, name, jitConfig string, extra map[string]string) (string, error) {
	cfg, hostCfg := e.containerSpec(name, jitConfig, extra)
	resp, err := e.api.ContainerCreate(ctx, cfg, hostCfg, nil, nil, name)
	if err != nil && cerrdefs.IsNotFound(err) {
		if imgErr := e.EnsureImage(ctx); imgErr != nil {
			return "", imgErr
		}
		resp, err = e.api.ContainerCreate(ctx, cfg, hostCfg, nil, nil, name)
	}
	if err != nil {
		if cerrdefs.IsConflict(err) {
			return "", e.wrap(err, "create container for runner %q (a container with this name exists; remove it or use a fresh runner name)", name)
		}
		return "", e.wrap(err, "create container for runner %q from image %q", name, e.cfg.Image)
	}
	for _, w := range resp.Warnings {
		e.log.Warn("docker warned while creating runner container", "runner_name", name, "warning", w)
	}
	return resp.ID, nil
}

func (e *Executor) deliverAndStart(ctx context.Context, id, name, jitConfig string) error {
	if e.cfg.JITConfigDelivery == DeliveryFile {
		o, err := e.jitOwner(ctx, id)
		if err != nil {
			return err
		}
		content, err := jitConfigTar(path.Base(e.cfg.JITConfigPath), jitConfig, o)
		if err != nil {
			return fmt.Errorf("dockerexec: pack JIT config for runner %q: %w", name, err)
		}
		err = e.api.CopyToContainer(ctx, id, path.Dir(e.cfg.JITConfigPath), bytes.NewReader(content),
			container.CopyToContainerOptions{})
		if err != nil {
			return e.wrap(err, "copy JIT config into container of runner %q (does %s exist in the image?)",
				name, path.Dir(e.cfg.JITConfigPath))
		}
	}
	if err := e.api.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return e.wrap(err, "start container of runner %q", name)
	}
	return nil
}

// containerSpec builds the container and host configuration of one runner.
func (e *Executor) containerSpec(name, jitConfig string, extra map[string]string) (*container.Config, *container.HostConfig) {
	labels := maps.Clone(e.cfg.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, extra)
	maps.Copy(labels, e.cfg.ownLabels())
	labels[LabelRunner] = name

	env := make([]string, 0, len(e.cfg.Env)+1)
	for _, k := range slices.Sorted(maps.Keys(e.cfg.Env)) {
		env = append(env, k+"="+e.cfg.Env[k])
	}
	cfg := &container.Config{
		Image:  e.cfg.Image,
		User:   e.cfg.User,
		Cmd:    slices.Clone(e.cfg.Command),
		Labels: labels,
	}
	switch e.cfg.JITConfigDelivery {
	case DeliveryEnv:
		env = append(env, JITConfigEnv+"="+jitConfig)
	case DeliveryFile:
		// The wrapper becomes the entrypoint and the runner command its
		// arguments ("$@").
		cfg.Entrypoint = []string{e.cfg.Shell, "-c", wrapperScript(e.cfg.JITConfigPath), "nomad-gha-runner"}
	}
	cfg.Env = env

	hostCfg := &container.HostConfig{
		NetworkMode: container.NetworkMode(e.cfg.NetworkMode),
		Resources: container.Resources{
			NanoCPUs: int64(e.cfg.CPUs * 1e9),
			Memory:   e.cfg.MemoryBytes,
		},
	}
	if e.cfg.SharedVolume != "" {
		hostCfg.Mounts = []mount.Mount{{Type: mount.TypeVolume, Source: e.cfg.SharedVolume, Target: e.cfg.SharedVolumePath}}
	}
	return cfg, hostCfg
}

// wrapperScript moves the JIT config from the file into the runner's
// environment, empties the file, and execs the runner. Only shell built-ins
// are used (read, redirection, export, exec), so it works with any POSIX sh
// and needs nothing else from the image. A container that is restarted finds
// the file empty and exits 78 (EX_CONFIG) rather than starting a runner with
// a used, single-use JIT config.
func wrapperScript(file string) string {
	return `f='` + file + `'
IFS= read -r ` + JITConfigEnv + ` < "$f" && [ -n "$` + JITConfigEnv + `" ] || { echo "nomad-gha: no JIT config in $f (already used?)" >&2; exit 78; }
: > "$f"
export ` + JITConfigEnv + `
exec "$@"`
}

// jitConfigTar packs the JIT config as a one-file tar archive for
// CopyToContainer. Mode 0600 and the container user as owner make it
// readable and truncatable by that user only.
func jitConfigTar(name, jitConfig string, o owner) ([]byte, error) {
	body := []byte(jitConfig + "\n")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{Name: name, Mode: 0o600, Size: int64(len(body)), Typeflag: tar.TypeReg,
		Uid: o.uid, Gid: o.gid, ModTime: time.Now()}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(body); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ensureVolume creates the shared volume once (creating an existing volume
// is a no-op for the local driver).
func (e *Executor) ensureVolume(ctx context.Context) error {
	if e.cfg.SharedVolume == "" {
		return nil
	}
	e.mu.Lock()
	ready := e.volumeReady
	e.mu.Unlock()
	if ready {
		return nil
	}
	_, err := e.api.VolumeCreate(ctx, volume.CreateOptions{Name: e.cfg.SharedVolume, Labels: e.cfg.ownLabels()})
	if err != nil {
		return e.wrap(err, "create shared volume %q", e.cfg.SharedVolume)
	}
	e.mu.Lock()
	e.volumeReady = true
	e.mu.Unlock()
	return nil
}

// RemoveRunner force-removes a runner container and its anonymous volumes.
// A container that is already gone (or being removed) is not an error.
func (e *Executor) RemoveRunner(ctx context.Context, containerID string) error {
	if containerID == "" {
		return fmt.Errorf("dockerexec: remove runner: %w: empty container ID", ErrInvalidInput)
	}
	if err := e.remove(ctx, containerID); err != nil {
		return err
	}
	e.log.Info("removed runner container", "container_id", shortID(containerID))
	return nil
}

func (e *Executor) remove(ctx context.Context, id string) error {
	err := e.api.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	switch {
	case err == nil, cerrdefs.IsNotFound(err):
		return nil
	case cerrdefs.IsConflict(err):
		// "removal already in progress": another remover (the engine's
		// own, or a concurrent reconcile) finishes the job.
		return nil
	default:
		return e.wrap(err, "remove container %s", shortID(id))
	}
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
