// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadsim

import (
	"os"
	"testing"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
)

// TestMain removes the binaries the real-agent tier built (faketart for
// the agent's PATH).
func TestMain(m *testing.M) {
	code := m.Run()
	testutil.CleanupBuilds()
	os.Exit(code)
}
