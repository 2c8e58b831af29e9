// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Command testdriver is the plugin binary of driver/harness's test driver;
// "testdriver wrap ..." runs a task wrapper instead.
package main

import (
	"os"

	"github.com/hashicorp/go-hclog"

	"github.com/tartnomad/nomad-driver-tart/driver/harness/internal/testdriver"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == testdriver.WrapCommand {
		os.Exit(testdriver.Wrap(os.Args[2:]))
	}
	sdk.Serve(testdriver.Name, func(l hclog.Logger) sdk.Driver { return testdriver.New(l, testdriver.Options{}) })
}
