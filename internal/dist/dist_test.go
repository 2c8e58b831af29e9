// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package dist_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/dist"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/version"
)

func TestTargets_derivedFromCmd(t *testing.T) {
	cmd := t.TempDir()
	for _, b := range []string{"nomad-driver-tart", "nomad-device-tart", "nomad-gha-scaleset", "faketart", "fakerunner", "actionssim"} {
		must.NoError(t, os.MkdirAll(filepath.Join(cmd, b), 0o755))
		must.NoError(t, os.WriteFile(filepath.Join(cmd, b, "main.go"), []byte("package main\n"), 0o644))
	}
	must.NoError(t, os.MkdirAll(filepath.Join(cmd, "not-a-binary"), 0o755)) // no main.go

	got, err := dist.Targets(cmd)
	must.NoError(t, err)
	var names []string
	for _, tg := range got {
		names = append(names, tg.ArchiveName("1.2.3"))
	}
	must.Eq(t, []string{
		"nomad-device-tart_1.2.3_darwin_arm64.zip",
		"nomad-driver-tart_1.2.3_darwin_arm64.zip",
		"nomad-gha-scaleset_1.2.3_darwin_arm64.zip",
		"nomad-gha-scaleset_1.2.3_linux_amd64.zip",
		"nomad-gha-scaleset_1.2.3_linux_arm64.zip",
	}, names)
}

func TestTargets_repository(t *testing.T) {
	got, err := dist.Targets(filepath.Join(testutil.RepoRoot(t), "cmd"))
	must.NoError(t, err)
	var bins []string
	for _, tg := range got {
		if !slices.Contains(bins, tg.Binary) {
			bins = append(bins, tg.Binary)
		}
	}
	must.SliceContains(t, bins, "nomad-driver-tart")
	must.SliceContains(t, bins, "nomad-device-tart")
	must.SliceContains(t, bins, "nomad-gha-scaleset")
	for _, fake := range []string{"faketart", "fakerunner", "actionssim"} {
		must.SliceNotContains(t, bins, fake)
	}
}

// TestBuild_reproducible builds the service for the host's platform twice
// (one target keeps it fast; cross-compiling is the same code path) and
// compares the bytes, then checks the archive's content and the stamping.
func TestBuild_reproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a release binary twice")
	}
	plat := dist.Platform{OS: runtime.GOOS, Arch: runtime.GOARCH}
	if !slices.Contains(dist.ServicePlatforms, plat) {
		t.Skipf("nomad-gha-scaleset does not ship for %s", plat)
	}
	root := testutil.RepoRoot(t)
	modTime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	build := func() string {
		out := t.TempDir()
		names, err := dist.Build(context.Background(), dist.Options{
			Root: root, OutDir: out, Version: version.String(), Commit: "abc1234", ModTime: modTime,
			Only: []string{"nomad-gha-scaleset/" + plat.String()},
		})
		must.NoError(t, err)
		must.Eq(t, []string{"nomad-gha-scaleset_" + version.String() + "_" + plat.OS + "_" + plat.Arch + ".zip"}, names)
		return out
	}
	a, b := build(), build()
	name := "nomad-gha-scaleset_" + version.String() + "_" + plat.OS + "_" + plat.Arch + ".zip"
	za, err := os.ReadFile(filepath.Join(a, name))
	must.NoError(t, err)
	zb, err := os.ReadFile(filepath.Join(b, name))
	must.NoError(t, err)
	must.True(t, bytes.Equal(za, zb), must.Sprint("two builds of the same commit differ"))

	sums, err := os.ReadFile(filepath.Join(a, dist.SumsFile))
	must.NoError(t, err)
	sum := sha256.Sum256(za)
	must.Eq(t, hex.EncodeToString(sum[:])+"  "+name+"\n", string(sums))

	zr, err := zip.NewReader(bytes.NewReader(za), int64(len(za)))
	must.NoError(t, err)
	must.Len(t, 2, zr.File)
	must.Eq(t, "nomad-gha-scaleset", zr.File[0].Name)
	must.Eq(t, os.FileMode(0o755), zr.File[0].Mode().Perm())
	must.Eq(t, "LICENSE.txt", zr.File[1].Name)
	for _, f := range zr.File {
		must.True(t, f.Modified.Equal(modTime), must.Sprintf("%s dated %s", f.Name, f.Modified))
	}
	license, err := os.ReadFile(filepath.Join(root, "LICENSE"))
	must.NoError(t, err)
	must.Eq(t, string(license), readZipped(t, zr.File[1]))

	// The binary runs, says the version and commit, and carries no
	// build-host path (-trimpath).
	bin := filepath.Join(t.TempDir(), "nomad-gha-scaleset")
	must.NoError(t, os.WriteFile(bin, []byte(readZipped(t, zr.File[0])), 0o755))
	out, err := exec.Command(bin, "--version").CombinedOutput()
	must.NoError(t, err, must.Sprint(string(out)))
	must.Eq(t, "nomad-gha-scaleset v"+version.String()+" (abc1234)\n", string(out))
	must.False(t, bytes.Contains([]byte(readZipped(t, zr.File[0])), []byte(root)), must.Sprint("binary holds the build path "+root))
}

func TestBuild_unknownTarget(t *testing.T) {
	_, err := dist.Build(context.Background(), dist.Options{
		Root: testutil.RepoRoot(t), OutDir: t.TempDir(), Version: "1.0.0", Only: []string{"nope"},
	})
	must.ErrorContains(t, err, "no target matches")
}

func readZipped(t *testing.T, f *zip.File) string {
	t.Helper()
	rc, err := f.Open()
	must.NoError(t, err)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	must.NoError(t, err)
	return string(b)
}

func TestMain_sourceDateEpochMustBeNumeric(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	var stderr strings.Builder
	code := dist.Main(context.Background(), []string{"--out", t.TempDir(), "--root", testutil.RepoRoot(t)}, io.Discard, &stderr)
	must.Eq(t, 2, code)
	must.StrContains(t, stderr.String(), "SOURCE_DATE_EPOCH")
}
