// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package deploy holds no code: it is the home of the files operators
// install (launchd jobs, the systemd unit, example service configs, the
// container image's Dockerfile, the Grafana dashboard and the Prometheus
// rules). Its tests parse each file in its own format and check it against
// the binaries' real flags and metrics.
package deploy
