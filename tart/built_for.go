// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tartnomad/nomad-driver-tart/internal/atomicfile"
)

// specMarker is the file a warm VM gets in its VM directory before it
// boots: JSON naming its pool and the spec it was built from (image, cpu,
// memory, disk size, run options). At Start a Pool adopts a warm VM only
// when this record equals its pool's current config, so that a restart
// after a config change does not hand out VMs of the old shape.
const specMarker = "ntart-spec.json"

// builtForVersion is the specMarker format. A record of another version is
// treated as missing: the VM is replaced.
const builtForVersion = 1

// builtFor is the content of specMarker.
type builtFor struct {
	Version    int    `json:"version"`
	Pool       string `json:"pool"`
	Image      string `json:"image"`
	CPU        int    `json:"cpu"`
	MemoryMiB  int    `json:"memory_mib"`
	DiskSizeGB int    `json:"disk_size_gb"`
	// RunArgs are the boot-time flags of tart run (shares, network, ...)
	// as RunOptions.Args gives them, without "run <name> --no-graphics":
	// one canonical form that is compared verbatim, as PoolConfig.Fits
	// does.
	RunArgs []string `json:"run_args"`
	// TartVersion is set for templates: a snapshot is tied to the
	// Virtualization.framework and tart that took it.
	TartVersion string `json:"tart_version,omitempty"`
}

// runArgsPrefix is what RunOptions.Args always starts with.
var runArgsPrefix = []string{"run", "x", "--no-graphics"}

// builtForPool is the record of a warm VM booted for pool config c.
func builtForPool(c PoolConfig) builtFor {
	b := builtFor{Version: builtForVersion, Pool: c.Name, Image: c.Image, CPU: c.CPU,
		MemoryMiB: c.MemoryMiB, DiskSizeGB: c.DiskSizeGB, RunArgs: []string{}}
	// NewPool validated the run options, so Args does not fail here.
	if args, err := c.Run.Args("x"); err == nil {
		b.RunArgs = append(b.RunArgs, args[len(runArgsPrefix):]...)
	}
	return b
}

// mismatch returns nil when a VM built as b serves a pool that wants
// want, else an error saying both, limited to the fields that differ. The
// comparison is exact: unlike PoolConfig.Fits, which reads a task's zero
// resource as "any", a zero here means the image's own value was kept,
// which is not the shape of a pool that now asks for a number.
func (b builtFor) mismatch(want builtFor) error {
	var had, wants []string
	add := func(differ bool, old, now string) {
		if differ {
			had, wants = append(had, old), append(wants, now)
		}
	}
	add(b.Pool != want.Pool, "pool "+b.Pool, "pool "+want.Pool)
	add(b.Image != want.Image, "image "+b.Image, "image "+want.Image)
	add(b.CPU != want.CPU, resource("cpu", b.CPU, ""), resource("cpu", want.CPU, ""))
	add(b.MemoryMiB != want.MemoryMiB, resource("memory", b.MemoryMiB, " MiB"), resource("memory", want.MemoryMiB, " MiB"))
	add(b.DiskSizeGB != want.DiskSizeGB, resource("disk size", b.DiskSizeGB, " GB"), resource("disk size", want.DiskSizeGB, " GB"))
	add(!slices.Equal(b.RunArgs, want.RunArgs), runArgs(b.RunArgs), runArgs(want.RunArgs))
	add(b.TartVersion != want.TartVersion, "tart "+b.TartVersion, "tart "+want.TartVersion)
	if len(had) == 0 {
		return nil
	}
	return &staleWarmVMError{msg: "built for " + strings.Join(had, ", ") + " but pool now wants " + strings.Join(wants, ", ")}
}

func resource(name string, v int, unit string) string {
	if v == 0 {
		return name + " of the image"
	}
	return fmt.Sprintf("%s %d%s", name, v, unit)
}

func runArgs(args []string) string {
	if len(args) == 0 {
		return "run options (none)"
	}
	return "run options " + strings.Join(args, " ")
}

// staleWarmVMError says why an unclaimed warm VM found at Start does not
// serve its pool any more; its text goes into the deleted event.
type staleWarmVMError struct{ msg string }

func (e *staleWarmVMError) Error() string { return e.msg }

// writeBuiltFor records b in the VM directory dir (atomically, so that a
// pool starting meanwhile never reads half a record).
func writeBuiltFor(dir string, b builtFor) error {
	data, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("encode %s: %w", specMarker, err)
	}
	if err := atomicfile.Write(filepath.Join(dir, specMarker), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", specMarker, err)
	}
	return nil
}

// readBuiltFor reads the record in the VM directory dir. A missing,
// unreadable or unknown record is a *staleWarmVMError: such a VM was not
// booted by this version of the pool, and its shape is unknown.
func readBuiltFor(dir string) (builtFor, error) {
	var b builtFor
	data, err := os.ReadFile(filepath.Join(dir, specMarker))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return b, &staleWarmVMError{msg: "it has no " + specMarker + " record of what it was built for"}
	case err != nil:
		return b, &staleWarmVMError{msg: fmt.Sprintf("its %s record cannot be read: %v", specMarker, err)}
	}
	if err := json.Unmarshal(data, &b); err != nil {
		return b, &staleWarmVMError{msg: fmt.Sprintf("its %s record is not valid JSON: %v", specMarker, err)}
	}
	if b.Version != builtForVersion {
		return b, &staleWarmVMError{msg: fmt.Sprintf("its %s record has version %d, not %d", specMarker, b.Version, builtForVersion)}
	}
	return b, nil
}
