// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

// ExecFailure returns an *Error when tart exec's exit code and the last
// stderr line say tart itself failed (see Client.Exec), else nil: the code
// is then the guest command's. A guest command that must outlive its caller
// runs under internal/supervisor, which judges its end with this.
func ExecFailure(vm string, code int, lastStderrLine string) error {
	if code == 0 || !isTartExecFailure(code, vm, lastStderrLine) {
		return nil
	}
	return newError("exec", vm, code, lastStderrLine, nil)
}
