// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package demo

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/dockerbackend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/tartbackend"
)

// findBinary locates one of this repository's binaries: in binDir, next to
// the running executable (build/), on PATH, or built with `go build` from
// the module in the working directory as a last resort.
func findBinary(ctx context.Context, name, binDir, scratch string) (string, error) {
	var dirs []string
	if binDir != "" {
		dirs = append(dirs, binDir)
	}
	if exe, err := os.Executable(); err == nil {
		dirs = append(dirs, filepath.Dir(exe))
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return filepath.Abs(p)
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	if _, err := os.Stat("go.mod"); err != nil {
		return "", fmt.Errorf("binary %q not found next to this program or on PATH (run make build)", name)
	}
	out := filepath.Join(scratch, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/"+name)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("failed to build %s: %w: %s", name, err, strings.TrimSpace(string(b)))
	}
	return out, nil
}

// dockerReachable reports whether a Docker engine answers a ping, with the
// client to use.
func dockerReachable(ctx context.Context) (*client.Client, error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("failed to create docker client: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := cli.Ping(pctx); err != nil {
		_ = cli.Close()
		return nil, fmt.Errorf("docker engine not reachable: %w", err)
	}
	return cli, nil
}

// ImportRunnerImage builds the fake runner image offline: `docker import`
// of a root file system holding only the static fakerunner binary at
// /bin/fakerunner (no entrypoint: the docker {} block's command names it).
func ImportRunnerImage(ctx context.Context, cli *client.Client, binary, ref string) error {
	body, err := os.ReadFile(binary)
	if err != nil {
		return fmt.Errorf("failed to read %s: %w", binary, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	for _, d := range []string{"bin/", "tmp/", "etc/"} {
		if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: now}); err != nil {
			return fmt.Errorf("failed to pack image: %w", err)
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: "bin/fakerunner", Mode: 0o755, Size: int64(len(body)), ModTime: now}); err != nil {
		return fmt.Errorf("failed to pack image: %w", err)
	}
	if _, err := tw.Write(body); err != nil {
		return fmt.Errorf("failed to pack image: %w", err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("failed to pack image: %w", err)
	}
	rc, err := cli.ImageImport(ctx, image.ImportSource{Source: &buf, SourceName: "-"}, ref, image.ImportOptions{})
	if err != nil {
		return fmt.Errorf("failed to import image %s: %w", ref, err)
	}
	defer rc.Close()
	out, err := io.ReadAll(rc)
	if err != nil || bytes.Contains(out, []byte(`"error"`)) {
		return fmt.Errorf("failed to import image %s: %v %s", ref, err, out)
	}
	return nil
}

// DockerBlock is the docker {} block that runs the fake runner image on
// the host network (the simulator listens on loopback).
func DockerBlock(imageRef string) *dockerbackend.Config {
	return &dockerbackend.Config{
		Image:             imageRef,
		PullPolicy:        "never",
		Command:           []string{"/bin/fakerunner", "--connect-timeout", "30s"},
		NetworkMode:       "host",
		JITConfigDelivery: "env",
	}
}

// prepareTart creates a TART_HOME with a local Linux base VM for faketart
// (Linux guests are not subject to the two-macOS-VM limit) and returns the
// tart {} block that runs fakerunner as the guest command.
func prepareTart(ctx context.Context, faketart, fakerunner, home string, maxRunners int) (*tartbackend.Config, error) {
	if err := os.MkdirAll(home, 0o755); err != nil {
		return nil, fmt.Errorf("failed to create TART_HOME: %w", err)
	}
	cmd := exec.CommandContext(ctx, faketart, "create", "--linux", "demo-base")
	cmd.Env = append(os.Environ(), "TART_HOME="+home)
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("failed to create the faketart base VM: %w: %s", err, strings.TrimSpace(string(b)))
	}
	return &tartbackend.Config{
		TartPath:      faketart,
		TartHome:      home,
		Image:         "demo-base",
		MaxVMs:        maxRunners + 2,
		RunnerCommand: []string{fakerunner, "--jitconfig", "-", "--connect-timeout", "30s"},
		StartTimeout:  "2m",
		StopTimeout:   "5s",
		MACSeed:       "nomad-gha-scaleset-demo",
	}, nil
}

// countTartVMs counts runner VMs left in TART_HOME (everything but the base).
func countTartVMs(home string) (int, error) {
	entries, err := os.ReadDir(filepath.Join(home, "vms"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("failed to read TART_HOME: %w", err)
	}
	n := 0
	for _, e := range entries {
		if e.IsDir() && e.Name() != "demo-base" {
			n++
		}
	}
	return n, nil
}

// prepareBackend picks the backend (Docker when an engine answers, else
// Tart on faketart) and sets it up.
func prepareBackend(ctx context.Context, o Options, fakerunner, scratch string) (*backendEnv, error) {
	kind, why := o.Backend, "requested with --backend"
	var cli *client.Client
	if kind == BackendAuto || kind == BackendDocker {
		c, err := dockerReachable(ctx)
		switch {
		case err == nil:
			cli, kind = c, BackendDocker
			if o.Backend == BackendAuto {
				why = "a Docker engine answered at " + c.DaemonHost()
			}
		case kind == BackendDocker:
			return nil, err
		default:
			kind, why = BackendTart, "no Docker engine reachable, using faketart"
		}
	}
	switch kind {
	case BackendDocker:
		ref := fmt.Sprintf("nomad-gha-scaleset-demo-runner:%d", os.Getpid())
		if err := ImportRunnerImage(ctx, cli, fakerunner, ref); err != nil {
			_ = cli.Close()
			return nil, err
		}
		return &backendEnv{
			kind: kind, why: why, docker: DockerBlock(ref),
			cleanup: func() {
				rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				_, _ = cli.ImageRemove(rctx, ref, image.RemoveOptions{Force: true, PruneChildren: true})
				_ = cli.Close()
			},
		}, nil
	case BackendTart:
		faketart, err := findBinary(ctx, "faketart", o.BinDir, scratch)
		if err != nil {
			return nil, err
		}
		home := filepath.Join(scratch, "tart-home")
		tc, err := prepareTart(ctx, faketart, fakerunner, home, o.MaxRunners)
		if err != nil {
			return nil, err
		}
		return &backendEnv{
			kind: kind, why: why, tart: tc, cleanup: func() {},
			leftovers: func(context.Context) (int, error) { return countTartVMs(home) },
		}, nil
	default:
		return nil, fmt.Errorf("backend: must be auto, docker or tart, got %q", o.Backend)
	}
}
