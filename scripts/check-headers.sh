#!/usr/bin/env bash
# Copyright (c) The nomad-driver-tart Authors
# SPDX-License-Identifier: MPL-2.0
#
# Fails when a source file lacks the SPDX licence header.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=0
files=$(git ls-files '*.go' '*.sh' '*.hcl' '*.proto' '.ci/run' 2>/dev/null || true)
for f in $files; do
  [ -f "$f" ] || continue
  case "$f" in *.pb.go) continue ;; esac
  if ! head -n 5 "$f" | grep -q 'SPDX-License-Identifier: MPL-2.0'; then
    echo "missing SPDX header: $f"
    missing=1
  fi
done
exit $missing
