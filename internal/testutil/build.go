// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

var (
	buildMu    sync.Mutex
	buildDir   string
	buildCache = map[string]string{}
)

// RepoRoot returns the repository root (the directory holding go.mod).
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("testutil: cannot locate source file")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// BuildBinary builds the main package at pkg (relative to the repository
// root, e.g. "./sim/cmd/faketart") once per test process and returns the path of
// the binary. Set env NOMAD_TART_PREBUILT_BIN=<dir> to use binaries that
// `make build` already put there (the file name is the last path element of
// pkg).
func BuildBinary(t testing.TB, pkg string) string {
	t.Helper()
	name := filepath.Base(pkg)
	if dir := os.Getenv("NOMAD_TART_PREBUILT_BIN"); dir != "" {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := buildCache[pkg]; ok {
		return p
	}
	if buildDir == "" {
		// Not t.TempDir: the binaries outlive the test that first asked for
		// them and are shared by the whole test process.
		d, err := os.MkdirTemp("", "nomad-tart-bin-")
		if err != nil {
			t.Fatalf("testutil: create build dir: %v", err)
		}
		buildDir = d
	}
	out := filepath.Join(buildDir, name)
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = RepoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testutil: go build %s: %v\n%s", pkg, err, strings.TrimSpace(string(b)))
	}
	buildCache[pkg] = out
	return out
}

// CleanupBuilds removes binaries built by BuildBinary. Call it from TestMain
// after m.Run.
func CleanupBuilds() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
		buildDir = ""
		buildCache = map[string]string{}
	}
}
