#!/usr/bin/env bash
# Copyright (c) The nomad-driver-tart Authors
# SPDX-License-Identifier: MPL-2.0
#
# Fails when a shipped binary (./cmd/...) links code that only tests and
# the demo may use: a package under sim/, internal/testutil, driver/harness,
# or the standard testing package. For each offender it names the binary,
# the package and the packages of the binary that import it.
#
# One exception, because it cannot be helped: github.com/hashicorp/go-plugin
# (the plugin protocol of nomad-driver-tart and nomad-device-tart) has a
# non-test file, testing.go, importing the standard testing package. The
# rule stands for every other importer, this module's code above all.
#
# Usage: scripts/check-deps.sh [package pattern ...]   (default ./cmd/...)
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
module=$($GO list -m)
forbidden="^(${module//./\\.}/(sim(/.*)?|internal/testutil(/.*)?|driver/harness(/.*)?)|testing)$"

# importers allowed to link the standard testing package
testing_ok="^github\.com/hashicorp/go-plugin$"

patterns=("$@")
[ ${#patterns[@]} -gt 0 ] || patterns=(./cmd/...)

bad=0
for bin in $($GO list -f '{{if eq .Name "main"}}{{.ImportPath}}{{end}}' "${patterns[@]}"); do
  # every package the binary links, with its imports
  deps=$($GO list -deps -f '{{.ImportPath}}: {{join .Imports " "}}' "$bin")
  offenders=$(printf '%s\n' "$deps" | cut -d: -f1 | grep -E "$forbidden" | grep -vxF "$bin" || true)
  for pkg in $offenders; do
    importers=$(printf '%s\n' "$deps" | awk -v p="$pkg" -F': ' '{ n = split($2, imps, " "); for (i = 1; i <= n; i++) if (imps[i] == p) { print $1; break } }')
    if [ "$pkg" = testing ]; then
      importers=$(printf '%s\n' "$importers" | grep -vE "$testing_ok" || true)
      [ -n "$importers" ] || continue
    fi
    echo "check-deps: $bin links $pkg (imported by $(printf '%s\n' "$importers" | paste -sd, -))"
    bad=1
  done
done
if [ "$bad" -ne 0 ]; then
  echo "check-deps: shipped binaries must not link simulators, fakes or test packages (see sim/README.md)"
  exit 1
fi
