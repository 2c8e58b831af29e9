// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package version is the single source of this project's version. PluginInfo,
// fingerprint attributes, the scale-set service's SystemInfo and every
// binary's --version read it; nothing else may hard-code a version.
package version

import "fmt"

var (
	// Version is the semantic version of this build, without prerelease.
	Version = "0.1.0"

	// VersionPrerelease is "dev" between releases and empty in a release.
	VersionPrerelease = "dev"

	// GitCommit is set by the linker (-ldflags "-X ...version.GitCommit=...").
	GitCommit = ""
)

// String returns the full semantic version, e.g. "0.1.0-dev".
func String() string {
	if VersionPrerelease == "" {
		return Version
	}
	return Version + "-" + VersionPrerelease
}

// Full returns the version with the commit, for --version output.
func Full(binary string) string {
	if GitCommit == "" {
		return fmt.Sprintf("%s v%s", binary, String())
	}
	return fmt.Sprintf("%s v%s (%s)", binary, String(), GitCommit)
}
