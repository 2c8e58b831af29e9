#!/usr/bin/env bash
# Copyright (c) The nomad-driver-tart Authors
# SPDX-License-Identifier: MPL-2.0
#
# Starts or stops a private Docker engine for the tests: its own data root,
# exec root, pid file and socket under $TEST_DOCKERD_DIR (default
# /tmp/nomad-tart-dockerd), with no bridge network and no iptables rules, so
# it never touches the host's networking. `start` prints the export line for
# DOCKER_HOST; use it as: eval "$(scripts/test-dockerd.sh start)". `running`
# succeeds when that engine is up; `stop` stops it (only if its pid file
# still names a dockerd).
set -euo pipefail
dir=${TEST_DOCKERD_DIR:-/tmp/nomad-tart-dockerd}
sock="$dir/docker.sock"
pidfile="$dir/dockerd.pid"

# running succeeds when the engine of $dir is up: its socket exists and
# its pid file names a live dockerd.
running() {
  [ -S "$sock" ] && [ -f "$pidfile" ] && is_dockerd "$(cat "$pidfile")"
}

# is_dockerd checks that pid is a dockerd, not a process that reused the
# pid of one that died.
is_dockerd() {
  kill -0 "$1" 2>/dev/null && [ "$(ps -o comm= -p "$1" 2>/dev/null)" = dockerd ]
}

start() {
  command -v dockerd >/dev/null || { echo "dockerd not found: apt-get install docker.io" >&2; exit 1; }
  mkdir -p "$dir/data" "$dir/exec"
  if running; then
    echo "export DOCKER_HOST=unix://$sock"
    return
  fi
  # Storage driver: overlay2 where the kernel allows it, else vfs (always works,
  # slower and larger, fine for the tiny offline-built test images).
  local driver=${TEST_DOCKERD_STORAGE:-}
  if [ -z "$driver" ]; then
    driver=overlay2
    if ! try_start overlay2; then driver=vfs; try_start vfs || { tail -n 30 "$dir/dockerd.log" >&2; exit 1; }; fi
  else
    try_start "$driver" || { tail -n 30 "$dir/dockerd.log" >&2; exit 1; }
  fi
  echo "export DOCKER_HOST=unix://$sock"
}

try_start() {
  rm -f "$sock" "$pidfile"
  setsid dockerd --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$pidfile" \
    --host "unix://$sock" --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
    --storage-driver "$1" >"$dir/dockerd.log" 2>&1 </dev/null &
  local pid=$!
  for _ in $(seq 1 100); do
    if DOCKER_HOST="unix://$sock" docker version >/dev/null 2>&1; then
      echo "$1" >"$dir/storage-driver"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.2
  done
  kill "$pid" 2>/dev/null || true
  return 1
}

stop() {
  if [ -f "$pidfile" ]; then
    local pid; pid=$(cat "$pidfile")
    is_dockerd "$pid" || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  running) running ;;
  *) echo "usage: $0 start|stop|running" >&2; exit 2 ;;
esac
