// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package dist

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/tartnomad/nomad-driver-tart/version"
)

// Main is `make dist`: it builds the archives of the repository in the
// working directory. Flags: --out (default dist), --only (comma list of
// binary or binary/os/arch), --commit (default git's short HEAD).
// `image-context --binary <path>` writes the service image's docker build
// context to stdout instead (make image).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "image-context" {
		return imageContextCmd(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("dist", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "dist", "output directory")
	only := fs.String("only", "", "comma-separated binaries or binary/os/arch to build (default all)")
	commit := fs.String("commit", "", "commit stamped into the binaries (default: git rev-parse --short HEAD)")
	root := fs.String("root", ".", "repository root")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *commit == "" {
		*commit = git(ctx, *root, "rev-parse", "--short", "HEAD")
	}
	modTime, err := sourceDate(ctx, *root, os.Getenv)
	if err != nil {
		fmt.Fprintf(stderr, "dist: %v\n", err)
		return 2
	}
	o := Options{Root: *root, OutDir: *out, Version: version.String(), Commit: *commit, ModTime: modTime, Log: stdout}
	if *only != "" {
		o.Only = strings.Split(*only, ",")
	}
	names, err := Build(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "dist: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "==> %d archives and %s in %s (version %s, commit %s)\n", len(names), SumsFile, *out, o.Version, *commit)
	return 0
}

// sourceDate is SOURCE_DATE_EPOCH (the reproducible-builds convention),
// else the HEAD commit's time, else the zip format's epoch (1980).
func sourceDate(ctx context.Context, root string, getenv func(string) string) (time.Time, error) {
	s := getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		s = git(ctx, root, "log", "-1", "--format=%ct")
	}
	if s == "" {
		return time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC), nil
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH: must be seconds since 1970, got %q", s)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// git returns a git command's trimmed output, or "" outside a repository.
func git(ctx context.Context, dir string, args ...string) string {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	b, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func imageContextCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("image-context", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o ImageOptions
	fs.StringVar(&o.Binary, "binary", "", "static linux nomad-gha-scaleset binary")
	fs.StringVar(&o.CACerts, "ca-certs", DefaultCACerts, "CA bundle to copy into the image")
	fs.StringVar(&o.Root, "root", ".", "repository root")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.Binary == "" {
		fmt.Fprintln(stderr, "image-context: --binary is required")
		return 2
	}
	if err := ImageContext(stdout, o); err != nil {
		fmt.Fprintf(stderr, "image-context: %v\n", err)
		return 1
	}
	return 0
}
