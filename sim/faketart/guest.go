// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package faketart

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Marker files through which exec asks the running VM for a guest power
// action (the run process polls for them).
const (
	markerPowerOff = "poweroff"
	markerReboot   = "reboot"
	fileShares     = "shares.json"
	fileMounts     = "mounts"
)

// stripSudo drops a leading sudo and its options.
func stripSudo(argv []string) []string {
	if len(argv) == 0 || filepath.Base(argv[0]) != "sudo" {
		return argv
	}
	argv = argv[1:]
	for len(argv) > 0 && strings.HasPrefix(argv[0], "-") {
		opt := argv[0]
		argv = argv[1:]
		if (opt == "-u" || opt == "-g") && len(argv) > 0 {
			argv = argv[1:]
		}
	}
	return argv
}

// guestBuiltin handles guest commands that faketart must not run on the
// host: power actions and virtiofs mounts. handled is false for ordinary
// commands, which exec runs for real.
func (a *app) guestBuiltin(dir string, argv []string) (handled bool, err error) {
	argv = stripSudo(argv)
	if len(argv) == 0 {
		return false, nil
	}
	fake := filepath.Join(dir, dirFake)
	switch filepath.Base(argv[0]) {
	case "halt", "poweroff":
		return true, os.WriteFile(filepath.Join(fake, markerPowerOff), nil, 0o644)
	case "reboot":
		return true, os.WriteFile(filepath.Join(fake, markerReboot), nil, 0o644)
	case "shutdown":
		marker := markerPowerOff
		for _, a := range argv[1:] {
			if a == "-r" || a == "--reboot" {
				marker = markerReboot
			}
		}
		return true, os.WriteFile(filepath.Join(fake, marker), nil, 0o644)
	case "mount":
		return a.guestMount(dir, argv[1:])
	}
	return false, nil
}

// guestMount emulates `mount -t virtiofs <tag> <dir>` in a guest: the
// shares with that tag appear at guest/<dir> (a symlink for one unnamed
// share, else a directory of symlinks named after the shares).
func (a *app) guestMount(dir string, args []string) (bool, error) {
	var fsType string
	var pos []string
	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == "-t" && i+1 < len(args):
			fsType = args[i+1]
			i++
		case args[i] == "-o" && i+1 < len(args):
			i++
		case strings.HasPrefix(args[i], "-"):
		default:
			pos = append(pos, args[i])
		}
	}
	if fsType != "virtiofs" {
		return false, nil // not ours: run the real command
	}
	if len(pos) != 2 {
		return true, &exitCodeErr{code: 1}
	}
	tag, target := pos[0], filepath.Join(dir, dirGuest, filepath.Clean("/"+pos[1]))
	var shares []dirShare
	for _, s := range a.readShares(dir) {
		if s.Tag == tag {
			shares = append(shares, dirShare{name: s.Name, path: s.Path, tag: s.Tag})
		}
	}
	if len(shares) == 0 {
		fmt.Fprintf(a.stderr, "mount: %s: wrong fs type, bad option, bad superblock on %s, missing codepage or helper program, or other error.\n", pos[1], tag)
		return true, &exitCodeErr{code: 32}
	}
	if err := linkShares(target, shares); err != nil {
		return true, prefixedErr("%v", err)
	}
	// Remember the mount so the VM's stop or reboot unmounts it.
	f, err := os.OpenFile(filepath.Join(dir, dirFake, fileMounts), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err == nil {
		_, _ = fmt.Fprintln(f, target)
		_ = f.Close()
	}
	return true, nil
}

// unmountGuest removes the shares mounted by guestMount.
func unmountGuest(dir string) {
	b, err := os.ReadFile(filepath.Join(dir, dirFake, fileMounts))
	if err != nil {
		return
	}
	for _, target := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if target != "" {
			unlinkShares(target)
		}
	}
	_ = os.Remove(filepath.Join(dir, dirFake, fileMounts))
}

// linkShares makes shares visible at target.
func linkShares(target string, shares []dirShare) error {
	_ = os.Remove(target) // an empty mount point or an old link
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return fmt.Errorf("create mount point: %w", err)
	}
	if len(shares) == 1 && shares[0].name == "" {
		return os.Symlink(absPath(shares[0].path), target)
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("create mount point: %w", err)
	}
	for _, s := range shares {
		if err := os.Symlink(absPath(s.path), filepath.Join(target, s.name)); err != nil {
			return fmt.Errorf("mount share %s: %w", s.name, err)
		}
	}
	return nil
}

func absPath(p string) string {
	if ap, err := filepath.Abs(p); err == nil {
		return ap
	}
	return p
}

// shareRecord is a --dir share as `run` records it for exec's mount.
type shareRecord struct {
	Name string `json:"name"`
	Path string `json:"path"`
	Tag  string `json:"tag"`
}

func (a *app) writeShares(dir string, shares []dirShare) {
	recs := make([]shareRecord, 0, len(shares))
	for _, s := range shares {
		recs = append(recs, shareRecord{Name: s.name, Path: absPath(s.path), Tag: s.tag})
	}
	b, err := json.Marshal(recs)
	if err != nil {
		return
	}
	_ = os.WriteFile(filepath.Join(dir, dirFake, fileShares), b, 0o644)
}

func (a *app) readShares(dir string) []shareRecord {
	var recs []shareRecord
	b, err := os.ReadFile(filepath.Join(dir, dirFake, fileShares))
	if err != nil {
		return nil
	}
	_ = json.Unmarshal(b, &recs)
	return recs
}
