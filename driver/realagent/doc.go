// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package realagent holds the tart driver's tests under a real Nomad client
// (internal/testutil/nomadagent): the built plugin loaded from plugin_dir by
// an unmodified agent, driven only through Nomad's HTTP API, with faketart
// as tart. The driver's own tests use driver/harness instead; these check
// that Nomad's plugin loader, task runner, log collection, exec, signal,
// stop and recovery paths agree with what the harness models. The tests are
// named TestNomad… so that `make test-nomad` selects them.
package realagent
