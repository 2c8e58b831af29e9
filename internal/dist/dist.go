// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package dist builds the release archives: one zip per shipped binary and
// platform, named as Nomad's releases are (<binary>_<version>_<os>_<arch>.zip)
// and holding the binary and LICENSE.txt, plus a SHA256SUMS file.
//
// Which binaries ship, and where, is derived from cmd/ rather than listed:
// every cmd/<binary> except the test doubles ships; Nomad plugins
// (nomad-driver-*, nomad-device-*) run on Apple silicon Macs only, anything
// else (the scale-set service) also on Linux. A new plugin under cmd/ is
// picked up without touching this package.
//
// The archives are reproducible: binaries are built with -trimpath and
// without VCS stamping (the commit comes from -ldflags, like the version
// from package version), zip entries are written in a fixed order with a
// fixed modification time (SOURCE_DATE_EPOCH, else the commit's time).
package dist

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tartnomad/nomad-driver-tart/internal/atomicfile"
)

// VersionPkg is the package whose GitCommit the linker sets.
const VersionPkg = "github.com/tartnomad/nomad-driver-tart/version"

// SumsFile is the checksum file written next to the archives.
const SumsFile = "SHA256SUMS"

// Platform is a GOOS/GOARCH pair.
type Platform struct{ OS, Arch string }

func (p Platform) String() string { return p.OS + "/" + p.Arch }

// Platforms a binary ships for.
var (
	// PluginPlatforms: Tart runs on Apple silicon only.
	PluginPlatforms = []Platform{{"darwin", "arm64"}}
	// ServicePlatforms: the scale-set service runs its Tart backend on a
	// Mac and its Docker and Nomad backends anywhere.
	ServicePlatforms = []Platform{{"darwin", "arm64"}, {"linux", "amd64"}, {"linux", "arm64"}}
)

// notShipped names the simulators and fakes. They live under sim/cmd, not
// cmd/, but should one be put back under cmd/ it still never ships.
var notShipped = map[string]bool{"actionssim": true, "fakerunner": true, "faketart": true}

// pluginPrefixes name Nomad plugins (task drivers and device plugins).
var pluginPrefixes = []string{"nomad-driver-", "nomad-device-"}

// Target is one archive to build.
type Target struct {
	Binary   string
	Platform Platform
}

// ArchiveName is <binary>_<version>_<os>_<arch>.zip.
func (t Target) ArchiveName(version string) string {
	return fmt.Sprintf("%s_%s_%s_%s.zip", t.Binary, version, t.Platform.OS, t.Platform.Arch)
}

// Targets lists every archive for the binaries under cmdDir, sorted by
// binary then platform.
func Targets(cmdDir string) ([]Target, error) {
	entries, err := os.ReadDir(cmdDir)
	if err != nil {
		return nil, fmt.Errorf("failed to list binaries: %w", err)
	}
	var out []Target
	for _, e := range entries {
		if !e.IsDir() || notShipped[e.Name()] {
			continue
		}
		if _, err := os.Stat(filepath.Join(cmdDir, e.Name(), "main.go")); err != nil {
			continue
		}
		for _, p := range PlatformsFor(e.Name()) {
			out = append(out, Target{Binary: e.Name(), Platform: p})
		}
	}
	return out, nil
}

// PlatformsFor returns where binary ships.
func PlatformsFor(binary string) []Platform {
	for _, p := range pluginPrefixes {
		if strings.HasPrefix(binary, p) {
			return PluginPlatforms
		}
	}
	return ServicePlatforms
}

// Options configure Build.
type Options struct {
	// Root is the repository root (go.mod, cmd/, LICENSE).
	Root string
	// OutDir receives the archives and SHA256SUMS.
	OutDir string
	// Version goes into the archive names (version.String()).
	Version string
	// Commit is stamped into version.GitCommit.
	Commit string
	// ModTime is every zip entry's modification time.
	ModTime time.Time
	// Only, when set, keeps the targets whose "binary/os/arch" or binary
	// is listed.
	Only []string
	// Log receives one line per archive; nil discards.
	Log io.Writer
}

// Build builds every target's archive into OutDir and writes SHA256SUMS
// over them. It returns the archive names in SHA256SUMS order.
func Build(ctx context.Context, o Options) ([]string, error) {
	if o.Root == "" || o.OutDir == "" || o.Version == "" {
		return nil, errors.New("dist: Root, OutDir and Version are required")
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	targets, err := Targets(filepath.Join(o.Root, "cmd"))
	if err != nil {
		return nil, err
	}
	if len(o.Only) > 0 {
		targets = slices.DeleteFunc(targets, func(t Target) bool {
			return !slices.Contains(o.Only, t.Binary) && !slices.Contains(o.Only, t.Binary+"/"+t.Platform.String())
		})
		if len(targets) == 0 {
			return nil, fmt.Errorf("dist: no target matches %q", o.Only)
		}
	}
	license, err := os.ReadFile(filepath.Join(o.Root, "LICENSE"))
	if err != nil {
		return nil, fmt.Errorf("failed to read the licence: %w", err)
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("failed to create the output directory: %w", err)
	}
	work, err := os.MkdirTemp("", "nomad-tart-dist-")
	if err != nil {
		return nil, fmt.Errorf("failed to create a build directory: %w", err)
	}
	defer os.RemoveAll(work)

	var names []string
	for _, t := range targets {
		bin := filepath.Join(work, t.Platform.OS+"_"+t.Platform.Arch, t.Binary)
		if err := buildBinary(ctx, o, t, bin); err != nil {
			return nil, err
		}
		name := t.ArchiveName(o.Version)
		if err := writeArchive(filepath.Join(o.OutDir, name), o.ModTime, bin, license); err != nil {
			return nil, fmt.Errorf("failed to write %s: %w", name, err)
		}
		fmt.Fprintf(o.Log, "==> %s\n", filepath.Join(o.OutDir, name))
		names = append(names, name)
	}
	slices.Sort(names)
	if err := writeSums(o.OutDir, names); err != nil {
		return nil, err
	}
	return names, nil
}

func buildBinary(ctx context.Context, o Options, t Target, out string) error {
	ldflags := "-s -w -buildid= -X " + VersionPkg + ".GitCommit=" + o.Commit
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", out, "./cmd/"+t.Binary)
	cmd.Dir = o.Root
	// The environment decides nothing about the bytes but the platform.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+t.Platform.OS, "GOARCH="+t.Platform.Arch, "GOFLAGS=-mod=readonly")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("failed to build %s for %s: %w\n%s", t.Binary, t.Platform, err, strings.TrimSpace(string(b)))
	}
	return nil
}

// writeArchive writes a zip holding the binary (0755) and LICENSE.txt
// (0644), in that order, both dated modTime, through atomicfile.Write so a
// failed run leaves no half archive.
func writeArchive(path string, modTime time.Time, binary string, license []byte) error {
	body, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range []struct {
		name string
		mode os.FileMode
		body []byte
	}{
		{filepath.Base(binary), 0o755, body},
		{"LICENSE.txt", 0o644, license},
	} {
		h := &zip.FileHeader{Name: f.name, Method: zip.Deflate, Modified: modTime.UTC()}
		h.SetMode(f.mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			return err
		}
		if _, err := w.Write(f.body); err != nil {
			return err
		}
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return atomicfile.Write(path, buf.Bytes(), 0o644)
}

// writeSums writes "<sha256>  <name>" lines, the format sha256sum -c reads.
func writeSums(dir string, names []string) error {
	var b strings.Builder
	for _, n := range names {
		body, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return fmt.Errorf("failed to read %s for %s: %w", n, SumsFile, err)
		}
		sum := sha256.Sum256(body)
		fmt.Fprintf(&b, "%s  %s\n", hex.EncodeToString(sum[:]), n)
	}
	if err := os.WriteFile(filepath.Join(dir, SumsFile), []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("failed to write %s: %w", SumsFile, err)
	}
	return nil
}
