// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Command usestesting breaks the dependency rule on purpose: a main package
// of this module importing the standard testing package, for
// scripts/checks_test.go.
package main

import "testing"

func main() { _ = testing.Short }
