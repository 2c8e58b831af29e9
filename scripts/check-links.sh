#!/usr/bin/env bash
# Copyright (c) The nomad-driver-tart Authors
# SPDX-License-Identifier: MPL-2.0
#
# Fails when a relative link in a Markdown file does not resolve: inline
# links [text](path) and reference definitions [name]: path, outside
# fenced code blocks, resolved against the linking file's directory (a
# leading / against the repository root). Anchors (#...) and external
# links (scheme:, //) are not checked.
#
# Usage: scripts/check-links.sh [file.md ...]
#   (default: every tracked *.md but those under testdata/, which hold
#   dead links on purpose)
set -euo pipefail
cd "$(dirname "$0")/.."

files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  mapfile -t files < <({ git ls-files '*.md' 2>/dev/null || find . -name '*.md' -not -path './.git/*'; } | grep -v '\(^\|/\)testdata/')
fi

bad=0
for f in "${files[@]}"; do
  [ -f "$f" ] || continue
  dir=$(dirname "$f")
  # one "line<TAB>target" per link, fenced code skipped
  while IFS=$'\t' read -r line target; do
    target=${target%%#*}
    target=${target%% *} # [x](path "title")
    case "$target" in
      '' | *:* | //*) continue ;;
      /*) path=".$target" ;;
      *) path="$dir/$target" ;;
    esac
    if [ ! -e "$path" ]; then
      echo "check-links: $f:$line: $target does not exist"
      bad=1
    fi
  done < <(awk '
    /^[ \t]*(```|~~~)/ { fence = !fence; next }
    fence { next }
    {
      s = $0
      gsub(/`[^`]*`/, "", s) # inline code
      while (match(s, /\]\([^)]+\)/)) {
        printf "%d\t%s\n", NR, substr(s, RSTART + 2, RLENGTH - 3)
        s = substr(s, RSTART + RLENGTH)
      }
      if (match($0, /^[ \t]*\[[^]]+\]:[ \t]+[^ \t]+/)) {
        t = $0; sub(/^[ \t]*\[[^]]+\]:[ \t]+/, "", t); sub(/[ \t].*$/, "", t)
        printf "%d\t%s\n", NR, t
      }
    }' "$f")
done
if [ "$bad" -ne 0 ]; then
  echo "check-links: fix the links above (paths are relative to the file that links)"
  exit 1
fi
