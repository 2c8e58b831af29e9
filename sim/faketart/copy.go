// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package faketart

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

const (
	seekData = 3 // SEEK_DATA on Linux
	seekHole = 4 // SEEK_HOLE on Linux
)

// copyTree copies a VM or image directory: regular files (keeping holes, so
// multi-GB sparse disks copy in milliseconds, as APFS clones do), dirs and
// symlinks. Runtime state (.faketart, control.sock, sockets) is skipped.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if rel == dirFake || rel == fileControl {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case info.Mode()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, target)
		case info.Mode().IsRegular():
			return copySparseFile(p, target, info.Mode().Perm())
		default:
			return nil // sockets, fifos, devices: not part of a VM
		}
	})
}

// copySparseFile copies src to dst, recreating holes with SEEK_DATA/SEEK_HOLE.
func copySparseFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", src, err)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	size := st.Size()
	if err := out.Truncate(size); err != nil {
		_ = out.Close()
		return fmt.Errorf("size %s: %w", dst, err)
	}
	var off int64
	for off < size {
		data, err := in.Seek(off, seekData)
		if err != nil {
			if errors.Is(err, syscall.ENXIO) {
				break // only a hole remains
			}
			if errors.Is(err, syscall.EINVAL) {
				data = off // filesystem without SEEK_DATA: copy everything
			} else {
				_ = out.Close()
				return fmt.Errorf("seek %s: %w", src, err)
			}
		}
		hole, err := in.Seek(data, seekHole)
		if err != nil {
			hole = size
		}
		if _, err := in.Seek(data, io.SeekStart); err != nil {
			_ = out.Close()
			return fmt.Errorf("seek %s: %w", src, err)
		}
		if _, err := out.Seek(data, io.SeekStart); err != nil {
			_ = out.Close()
			return fmt.Errorf("seek %s: %w", dst, err)
		}
		if _, err := io.CopyN(out, in, hole-data); err != nil {
			_ = out.Close()
			return fmt.Errorf("copy %s to %s: %w", src, dst, err)
		}
		off = hole
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("close %s: %w", dst, err)
	}
	return nil
}
