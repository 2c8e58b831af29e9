// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package faketart

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// SeedVM creates a stopped local VM named name under tartHome, as
// `tart create` would: config.json from cfg, a sparse disk.img of diskGB
// decimal gigabytes and an nvram.bin. Tests of other packages use it to
// prepare state without running faketart.
func SeedVM(tartHome, name string, cfg VMConfig, diskGB int) error {
	if name == "" || strings.Contains(name, "/") {
		return fmt.Errorf("seed VM: invalid local VM name %q", name)
	}
	dir := filepath.Join(tartHome, "vms", name)
	if err := os.MkdirAll(filepath.Join(dir, dirGuest), 0o755); err != nil {
		return fmt.Errorf("seed VM %s: %w", name, err)
	}
	if err := writeConfigInPlace(filepath.Join(dir, fileConfig), cfg); err != nil {
		return fmt.Errorf("seed VM %s: %w", name, err)
	}
	if err := createSparse(filepath.Join(dir, fileDisk), int64(diskGB)*gb); err != nil {
		return fmt.Errorf("seed VM %s: %w", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, fileNVRAM), make([]byte, 4096), 0o644); err != nil {
		return fmt.Errorf("seed VM %s: write NVRAM: %w", name, err)
	}
	return nil
}

// ImageOptions are the optional properties of a seeded registry image.
type ImageOptions struct {
	// DiskSizeGB is the uncompressed disk size (default 50).
	DiskSizeGB int64
	// CompressedSize is the download size in bytes shown by pull (default
	// FAKETART_PULL_SIZE).
	CompressedSize int64
	// Revision changes the image digest without changing its config, to
	// simulate a tag that moved in the registry.
	Revision string
}

// SeedImage makes ref (host/namespace:tag) available in the fake registry
// directory registryDir (the FAKETART_REGISTRY of the faketart processes).
func SeedImage(registryDir, ref string, cfg VMConfig, opts ImageOptions) error {
	r, err := parseRemote(ref)
	if err != nil {
		return fmt.Errorf("seed image: %w", err)
	}
	if r.tag == "" {
		return fmt.Errorf("seed image %q: needs a tag, not a digest", ref)
	}
	dir := filepath.Join(registryDir, r.host, filepath.FromSlash(r.namespace), r.tag)
	if err := os.MkdirAll(filepath.Join(dir, dirGuest), 0o755); err != nil {
		return fmt.Errorf("seed image %s: %w", ref, err)
	}
	if err := writeConfigInPlace(filepath.Join(dir, fileConfig), cfg); err != nil {
		return fmt.Errorf("seed image %s: %w", ref, err)
	}
	meta, err := json.Marshal(imageMeta{DiskSizeGB: opts.DiskSizeGB, CompressedSize: opts.CompressedSize})
	if err != nil {
		return fmt.Errorf("seed image %s: %w", ref, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "image.json"), meta, 0o644); err != nil {
		return fmt.Errorf("seed image %s: %w", ref, err)
	}
	if opts.Revision != "" {
		if err := os.WriteFile(filepath.Join(dir, "revision"), []byte(opts.Revision), 0o644); err != nil {
			return fmt.Errorf("seed image %s: %w", ref, err)
		}
	}
	return nil
}
