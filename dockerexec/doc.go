// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package dockerexec runs ephemeral GitHub Actions runners as containers on a
// Docker engine: one container per runner, started from the runner image
// with the runner's JIT config, labelled so that every container this
// service instance starts is found again and removed, even after a crash.
//
// It owns the container lifecycle (create, hand over the JIT config, start,
// list, remove), keeping the runner image present, the optional shared
// volume, and reclaiming disk space (dangling images, build cache).
//
// It talks to Docker only through the small DockerAPI interface, which the
// github.com/docker/docker client satisfies. It knows nothing about GitHub
// beyond the opaque JIT config string, and must not import the scale-set
// service or any Nomad package.
package dockerexec
