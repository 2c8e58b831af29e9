// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package e2e holds end-to-end tests of nomad-gha-scaleset with real
// processes: the service binary (`run --config`), the Actions simulator,
// and fake runners in Docker containers (a real engine, an offline-built
// image) or in faketart VMs. Docker tests skip without an engine (and fail
// under CI=true); tart tests need nothing but Go.
//
//	export DOCKER_HOST=unix:///tmp/nomad-tart-dockerd/docker.sock
//	go test -race -count=1 ./scaleset/e2e/
package e2e
