// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Command faketart simulates the tart CLI on Linux for tests and demos.
// All logic lives in package sim/faketart.
package main

import (
	"os"

	"github.com/tartnomad/nomad-driver-tart/sim/faketart"
)

func main() {
	os.Exit(faketart.Main(os.Args[1:]))
}
