// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package faketart

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Names of the files of a VM directory.
const (
	fileConfig   = "config.json"
	fileDisk     = "disk.img"
	fileNVRAM    = "nvram.bin"
	fileSnapshot = "state.vzvmsave"
	fileControl  = "control.sock"
	fileManifest = "manifest.json"
	// dirFake holds faketart's runtime state inside a VM directory; real
	// tart has no such directory. It is never copied by clone.
	dirFake = ".faketart"
	// dirGuest is the simulated guest's filesystem root and exec's cwd.
	dirGuest = "guest"
)

// home is a TART_HOME directory.
type home struct {
	root string
}

func openHome() (*home, error) {
	root := os.Getenv("TART_HOME")
	if root == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return nil, bareErr(exitFailure, "TART_HOME is invalid: ~/.tart does not exist, yet we can't create it: %v", err)
		}
		root = filepath.Join(h, ".tart")
	}
	for _, d := range []string{root, filepath.Join(root, "vms"), filepath.Join(root, "cache", "OCIs"), filepath.Join(root, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, bareErr(exitFailure, "TART_HOME is invalid: %s does not exist, yet we can't create it: %v", root, err)
		}
	}
	return &home{root: root}, nil
}

func (h *home) vmsDir() string        { return filepath.Join(h.root, "vms") }
func (h *home) ociDir() string        { return filepath.Join(h.root, "cache", "OCIs") }
func (h *home) tmpDir() string        { return filepath.Join(h.root, "tmp") }
func (h *home) fakeDir() string       { return filepath.Join(h.root, ".faketart") }
func (h *home) vmDir(n string) string { return filepath.Join(h.vmsDir(), n) }

// vmDirComplete reports whether dir holds the three files that make a VM.
func vmDirComplete(dir string) (exists, complete bool) {
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return false, false
	}
	for _, f := range []string{fileConfig, fileDisk, fileNVRAM} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return true, false
		}
	}
	return true, true
}

// localVMNames lists complete local VMs, sorted by name.
func (h *home) localVMNames() ([]string, error) {
	ents, err := os.ReadDir(h.vmsDir())
	if err != nil {
		return nil, fmt.Errorf("list VMs in %s: %w", h.vmsDir(), err)
	}
	var names []string
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if _, ok := vmDirComplete(h.vmDir(e.Name())); ok {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// openLocal opens a local VM for a command body: a remote or missing name
// is "does not exist" (exit 2), a partial directory is exit 1. The access
// time is touched as tart does.
func (h *home) openLocal(name string) (string, error) {
	dir := h.vmDir(name)
	if strings.Contains(name, "/") || name == "" || name == "." || name == ".." {
		return "", bareErr(exitVMState, "%s", vmNotFound(name))
	}
	exists, complete := vmDirComplete(dir)
	if !exists {
		return "", bareErr(exitVMState, "%s", vmNotFound(name))
	}
	if !complete {
		return "", bareErr(exitFailure, "VM is missing some of its files (%s, %s or %s)", fileConfig, fileDisk, fileNVRAM)
	}
	touchAccess(dir)
	return dir, nil
}

func touchAccess(path string) {
	st, err := os.Stat(path)
	if err != nil {
		return
	}
	_ = os.Chtimes(path, time.Now(), st.ModTime())
}

func accessTime(path string) time.Time {
	st, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	if t, ok := statAccessTime(st); ok {
		return t
	}
	return st.ModTime()
}

// vmState is one of tart's three states.
type vmState string

const (
	stateRunning   vmState = "running"
	stateSuspended vmState = "suspended"
	stateStopped   vmState = "stopped"
)

// state derives a VM's state the way tart does.
func (a *app) state(dir string) (vmState, int) {
	if pid := a.lockHolder(filepath.Join(dir, fileConfig)); pid != 0 {
		return stateRunning, pid
	}
	if _, err := os.Stat(filepath.Join(dir, fileSnapshot)); err == nil {
		return stateSuspended, 0
	}
	return stateStopped, 0
}

// lockHolder returns the PID of the process holding a POSIX write lock on
// path, or 0. POSIX record locks are per process and dropped when the
// process closes ANY descriptor of the file, so the process that holds a VM
// lock must never open that config.json again: it answers from memory.
func (a *app) lockHolder(path string) int {
	if a.heldLock != nil && a.heldLockPath == path {
		return os.Getpid()
	}
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: io.SeekStart}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_GETLK, &lk); err != nil {
		return 0
	}
	if lk.Type == syscall.F_UNLCK {
		return 0
	}
	if lk.Pid == 0 {
		return -1 // held by a process in another PID namespace
	}
	return int(lk.Pid)
}

// takeVMLock takes the POSIX write lock on a VM's config.json and keeps the
// descriptor open for the life of the process. It reports false when
// another process holds it.
func (a *app) takeVMLock(dir string) (bool, error) {
	path := filepath.Join(dir, fileConfig)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false, fmt.Errorf("open %s to lock it: %w", path, err)
	}
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: io.SeekStart}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) {
			return false, nil
		}
		return false, fmt.Errorf("lock %s: %w", path, err)
	}
	a.heldLock, a.heldLockPath = f, path
	return true, nil
}

// stillOwnsDir reports whether dir's config.json is still the file this
// process locked.
func (a *app) stillOwnsDir(dir string) bool {
	if a.heldLock == nil {
		return false
	}
	held, err := a.heldLock.Stat()
	if err != nil {
		return false
	}
	cur, err := os.Stat(filepath.Join(dir, fileConfig))
	return err == nil && os.SameFile(held, cur)
}

// releaseVMLock drops the VM lock taken by takeVMLock.
func (a *app) releaseVMLock() {
	if a.heldLock != nil {
		_ = a.heldLock.Close()
		a.heldLock, a.heldLockPath = nil, ""
	}
}

// flockFile is an flock(2) on a file or directory.
type flockFile struct{ f *os.File }

// flockPath takes an exclusive flock on path. With wait=false it returns
// (nil, nil) when another process holds it.
func flockPath(path string, wait bool) (*flockFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s to lock it: %w", path, err)
	}
	how := syscall.LOCK_EX
	if !wait {
		how |= syscall.LOCK_NB
	}
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return &flockFile{f: f}, nil
}

func (l *flockFile) unlock() {
	if l != nil && l.f != nil {
		_ = l.f.Close()
		l.f = nil
	}
}

// globalLock is the flock on TART_HOME held briefly by clone and run.
func (h *home) globalLock() (*flockFile, error) { return flockPath(h.root, true) }

// tmpEntry is a staging directory under $TART_HOME/tmp, flocked while in use
// so other tart processes' garbage collection leaves it alone.
type tmpEntry struct {
	dir  string
	lock *flockFile
}

func (h *home) newTmp() (*tmpEntry, error) {
	// Another process's gcTmp may delete the directory between MkdirTemp
	// and flock; check that the locked directory is still in place.
	for attempt := 0; ; attempt++ {
		dir, err := os.MkdirTemp(h.tmpDir(), "")
		if err != nil {
			return nil, fmt.Errorf("create staging directory: %w", err)
		}
		l, err := flockPath(dir, true)
		if err == nil {
			held, err1 := l.f.Stat()
			cur, err2 := os.Stat(dir)
			if err1 == nil && err2 == nil && os.SameFile(held, cur) {
				return &tmpEntry{dir: dir, lock: l}, nil
			}
			l.unlock()
		}
		if attempt >= 5 {
			return nil, fmt.Errorf("create staging directory in %s: removed by a concurrent cleanup", h.tmpDir())
		}
	}
}

func (t *tmpEntry) remove() {
	_ = os.RemoveAll(t.dir)
	t.lock.unlock()
}

// gcTmp deletes entries in $TART_HOME/tmp that no process holds a lock on.
func (h *home) gcTmp() {
	ents, err := os.ReadDir(h.tmpDir())
	if err != nil {
		return
	}
	for _, e := range ents {
		p := filepath.Join(h.tmpDir(), e.Name())
		l, err := flockPath(p, false)
		if err != nil || l == nil {
			continue
		}
		_ = os.RemoveAll(p)
		l.unlock()
	}
}

// apparentSize and allocatedSize sum the sizes of a VM's three files.
func vmSizes(dir string) (apparent, allocated int64) {
	for _, f := range []string{fileConfig, fileDisk, fileNVRAM} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			continue
		}
		apparent += st.Size()
		if s, ok := st.Sys().(*syscall.Stat_t); ok {
			allocated += s.Blocks * 512
		}
	}
	return apparent, allocated
}

// createSparse makes (or resizes) a sparse file of the given size.
func createSparse(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := f.Truncate(size); err != nil {
		_ = f.Close()
		return fmt.Errorf("size %s to %d bytes: %w", path, size, err)
	}
	return f.Close()
}
