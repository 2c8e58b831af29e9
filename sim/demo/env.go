// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package demo

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/tartnomad/nomad-driver-tart/dockerexec"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/dockerbackend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/tartbackend"
)

// findBinary locates one of this repository's binaries: in binDir, next to
// the running executable (build/), then on PATH. It never builds one: `make
// build` (or `make demo`) puts them all in build/.
func findBinary(name, binDir string) (string, error) {
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
	where := "next to this program or on PATH"
	if binDir != "" {
		where = "in " + binDir + ", " + where
	}
	return "", fmt.Errorf("binary %q not found %s (run make build)", name, where)
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
	if err != nil {
		return fmt.Errorf("failed to import image %s: %w", ref, err)
	}
	if bytes.Contains(out, []byte(`"error"`)) {
		return fmt.Errorf("failed to import image %s: %s", ref, out)
	}
	return nil
}

// checkStatic fails when the ELF binary at path needs a dynamic loader: the
// runner image holds nothing but the binary, so such a runner exits at once
// (and the service starts another, forever).
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return nil // not ELF (a Mac): Docker runs Linux binaries only anyway
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked and cannot run in the runner image: build it with CGO_ENABLED=0 (make build does)", path)
		}
	}
	return nil
}

// DockerBlock is the docker {} block that runs the fake runner image on
// the host network (the simulator listens on loopback).
func DockerBlock(imageRef string) *dockerbackend.Config {
	return dockerBlock(imageRef, "")
}

// dockerBlock is DockerBlock with the instance_id that labels the demo's
// containers (empty: the backend's default, the host name).
func dockerBlock(imageRef, instance string) *dockerbackend.Config {
	return &dockerbackend.Config{
		InstanceID:        instance,
		Image:             imageRef,
		PullPolicy:        "never",
		Command:           []string{"/bin/fakerunner", "--connect-timeout", "30s"},
		NetworkMode:       "host",
		JITConfigDelivery: "env",
	}
}

// tartBase is the faketart base VM every runner VM is cloned from.
const tartBase = "demo-base"

// prepareTart creates a TART_HOME with a local Linux base VM for faketart
// (Linux guests are not subject to the two-macOS-VM limit) and returns the
// tart {} block that runs fakerunner as the guest command.
func prepareTart(ctx context.Context, faketart, fakerunner, home string, maxRunners int) (*tartbackend.Config, error) {
	if err := os.MkdirAll(home, 0o755); err != nil {
		return nil, fmt.Errorf("failed to create TART_HOME: %w", err)
	}
	cmd := exec.CommandContext(ctx, faketart, "create", "--linux", tartBase)
	cmd.Env = append(os.Environ(), "TART_HOME="+home)
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("failed to create the faketart base VM: %w: %s", err, strings.TrimSpace(string(b)))
	}
	return &tartbackend.Config{
		TartPath:      faketart,
		TartHome:      home,
		Image:         tartBase,
		MaxVMs:        maxRunners + 2,
		RunnerCommand: []string{fakerunner, "--jitconfig", "-", "--connect-timeout", "30s"},
		StartTimeout:  "2m",
		StopTimeout:   "5s",
		MACSeed:       "nomad-gha-scaleset-demo",
	}, nil
}

// countTartVMs counts runner VMs left in TART_HOME (everything but the base).
func countTartVMs(home string) (int, error) {
	names, err := tartVMs(home)
	return len(names), err
}

// tartVMs lists the runner VMs in TART_HOME (everything but the base).
func tartVMs(home string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(home, "vms"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read TART_HOME: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && e.Name() != tartBase {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// instanceContainers lists the containers labelled with the demo's
// instance_id, whatever their state.
func instanceContainers(ctx context.Context, cli *client.Client, instance string) ([]container.Summary, error) {
	list, err := cli.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", dockerexec.LabelInstance+"="+instance))})
	if err != nil {
		return nil, fmt.Errorf("failed to list the demo's containers: %w", err)
	}
	return list, nil
}

// removeInstanceContainers force-removes the containers labelled with the
// demo's instance_id and returns how many it removed.
func removeInstanceContainers(ctx context.Context, cli *client.Client, instance string) (int, error) {
	list, err := instanceContainers(ctx, cli, instance)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, c := range list {
		if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
			errs = append(errs, fmt.Errorf("failed to remove container %s: %w", c.ID[:12], err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
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
		if err := checkStatic(fakerunner); err != nil {
			_ = cli.Close()
			return nil, err
		}
		ref := fmt.Sprintf("nomad-gha-scaleset-demo-runner:%d", os.Getpid())
		if err := ImportRunnerImage(ctx, cli, fakerunner, ref); err != nil {
			_ = cli.Close()
			return nil, err
		}
		// The scratch directory's name is unique: it labels this demo's
		// containers, so a later demo can find them if this one is killed.
		instance := filepath.Base(scratch)
		return &backendEnv{
			kind: kind, why: why, docker: dockerBlock(ref, instance),
			held: func(ctx context.Context) (int, error) {
				list, err := instanceContainers(ctx, cli, instance)
				return len(list), err
			},
			purge: func(ctx context.Context) (int, error) { return removeInstanceContainers(ctx, cli, instance) },
			cleanup: func() {
				rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				_, _ = cli.ImageRemove(rctx, ref, image.RemoveOptions{Force: true, PruneChildren: true})
				_ = cli.Close()
			},
		}, nil
	case BackendTart:
		faketart, err := findBinary("faketart", o.BinDir)
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
			held:  func(context.Context) (int, error) { return countTartVMs(home) },
			purge: func(ctx context.Context) (int, error) { return removeTartVMs(ctx, faketart, home) },
		}, nil
	default:
		return nil, fmt.Errorf("backend: must be auto, docker or tart, got %q", o.Backend)
	}
}
