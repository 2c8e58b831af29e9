// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

//go:build !linux && !darwin

package driver

import (
	"errors"
	"os"
)

func openPTY() (master, slave *os.File, err error) {
	return nil, nil, errors.New("pseudo-terminals are not supported on this platform")
}

func setPTYSize(*os.File, int, int) error { return nil }
