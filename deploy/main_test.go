// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package deploy_test

import (
	"os"
	"testing"

	"github.com/tartnomad/nomad-driver-tart/internal/supervisor"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
)

func TestMain(m *testing.M) {
	// TestObservability_seriesExist runs the demo in this process; its tart
	// backend re-executes this test binary as each runner command's
	// supervisor (without this hook the child would run the tests again).
	supervisor.MainIfInvoked()
	code := m.Run()
	testutil.CleanupBuilds()
	os.Exit(code)
}
