// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// Naming convention. Every VM this package creates is named
//
//	ntart-pool-<pool>-<slot>-<rand>   a warm-pool VM (also after a claim)
//	ntart-task-<id>                   a VM cold-started (or resumed) for a task
//	ntart-tmpl-<pool>-<slot>-<rand>   a suspended template of a resume pool
//
// Pool adoption and cleanup only ever touch names that parse with
// ParseVMName; every other VM on the host is left alone.
const (
	namePrefix     = "ntart-"
	poolNamePrefix = namePrefix + "pool-"
	taskNamePrefix = namePrefix + "task-"
	tmplNamePrefix = namePrefix + "tmpl-"
)

// VMKind is what a VM of ours is for.
type VMKind string

// VM kinds of our naming convention.
const (
	// KindPool is a warm-pool VM (ntart-pool-<pool>-<slot>-<hex>), claimed
	// or not.
	KindPool VMKind = "pool"
	// KindTask is a VM started for a task (ntart-task-<id>).
	KindTask VMKind = "task"
	// KindTemplate is a suspended template VM of a resume-mode pool: it is
	// never run for a task, only cloned.
	KindTemplate VMKind = "template"
)

// VMName is a parsed VM name of our convention.
type VMName struct {
	Kind VMKind
	// Pool and Slot are set for KindPool and KindTemplate.
	Pool string
	Slot int
	// ID is the task id for KindTask, the random suffix otherwise.
	ID string
}

// poolVMName returns a fresh name for a warm VM of pool in slot.
func poolVMName(pool string, slot int) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s%s-%d-%s", poolNamePrefix, pool, slot, hex.EncodeToString(b[:]))
}

// templateVMName returns a fresh name for the template of pool in slot.
func templateVMName(pool string, slot int) string {
	return tmplNamePrefix + strings.TrimPrefix(poolVMName(pool, slot), poolNamePrefix)
}

// TaskVMName returns the VM name for a task id, with characters tart or a
// file system would reject replaced by '-'.
func TaskVMName(id string) string {
	return taskNamePrefix + sanitizeName(id)
}

func sanitizeName(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
		if b.Len() >= 100 {
			break
		}
	}
	return b.String()
}

// ValidPoolName checks that a pool name can be embedded in VM names.
func ValidPoolName(name string) error {
	if name == "" {
		return fmt.Errorf("pool name is empty")
	}
	if sanitizeName(name) != name || len(name) > 40 {
		return fmt.Errorf("pool name %q: use at most 40 letters, digits, '-', '_' or '.'", name)
	}
	return nil
}

// ParseVMName parses a name of our convention; ok is false for any other
// VM, which callers must then never touch.
func ParseVMName(name string) (n VMName, ok bool) {
	switch {
	case strings.HasPrefix(name, taskNamePrefix):
		id := strings.TrimPrefix(name, taskNamePrefix)
		if id == "" {
			return VMName{}, false
		}
		return VMName{Kind: KindTask, ID: id}, true
	case strings.HasPrefix(name, tmplNamePrefix):
		n, ok := ParseVMName(poolNamePrefix + strings.TrimPrefix(name, tmplNamePrefix))
		if !ok {
			return VMName{}, false
		}
		n.Kind = KindTemplate
		return n, true
	case strings.HasPrefix(name, poolNamePrefix):
		rest := strings.TrimPrefix(name, poolNamePrefix)
		i := strings.LastIndexByte(rest, '-')
		if i <= 0 {
			return VMName{}, false
		}
		rnd := rest[i+1:]
		rest = rest[:i]
		j := strings.LastIndexByte(rest, '-')
		if j <= 0 || rnd == "" {
			return VMName{}, false
		}
		slot, err := strconv.Atoi(rest[j+1:])
		if err != nil || slot < 0 {
			return VMName{}, false
		}
		return VMName{Kind: KindPool, Pool: rest[:j], Slot: slot, ID: rnd}, true
	}
	return VMName{}, false
}

// IsOurVM reports whether name follows our naming convention.
func IsOurVM(name string) bool {
	_, ok := ParseVMName(name)
	return ok
}
