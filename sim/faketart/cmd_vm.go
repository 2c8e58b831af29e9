// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package faketart

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

func (a *app) cmdClone(spec *commandSpec, p *parsedArgs) error {
	if _, err := spec.intValue(p, "concurrency", 4, 1, 1<<31); err != nil {
		return err
	}
	if _, err := spec.intValue(p, "prune-limit", 100, 0, 1<<31); err != nil {
		return err
	}
	src, dst := p.pos[0], p.pos[1]
	if isRemoteName(dst) {
		return usageErr(spec.name, "<new-name> should be a local name")
	}
	var srcDir string
	if isRemoteName(src) {
		r, err := parseRemote(src)
		if err != nil {
			return prefixedErr("%v", err)
		}
		srcDir = a.home.cachedImage(r)
		if srcDir == "" {
			if srcDir, err = a.pull(r); err != nil {
				return err
			}
		}
	} else {
		exists, complete := vmDirComplete(a.home.vmDir(src))
		if !exists {
			return bareErr(exitVMState, "%s", vmNotFound(src))
		}
		if !complete {
			return bareErr(exitFailure, "VM is missing some of its files (%s, %s or %s)", fileConfig, fileDisk, fileNVRAM)
		}
		srcDir = a.home.vmDir(src)
	}
	touchAccess(srcDir)
	if a.shouldFail("clone") {
		return prefixedErr("%s", a.failMessage("clone", "faketart: injected clone failure"))
	}
	return a.cloneInto(srcDir, dst)
}

// cloneInto copies srcDir to vms/<dst> under the global lock and silently
// replaces an existing dst. It applies tart's clone MAC rule: the clone
// keeps the source's MAC unless another local VM has it, and a suspended
// source's MAC is always kept (its snapshot records it).
func (a *app) cloneInto(srcDir, dst string) error {
	tmp, err := a.home.newTmp()
	if err != nil {
		return err
	}
	defer tmp.remove()
	stop := cancelOnInterrupt(tmp)
	defer stop()

	gl, err := a.home.globalLock()
	if err != nil {
		return err
	}
	defer gl.unlock()
	if err := copyTree(srcDir, tmp.dir); err != nil {
		return fmt.Errorf("copy VM files from %s: %w", srcDir, err)
	}
	_ = os.Remove(filepath.Join(tmp.dir, fileManifest))
	cfgPath := filepath.Join(tmp.dir, fileConfig)
	cfg, err := readConfig(cfgPath)
	if err != nil {
		return err
	}
	_, suspendedErr := os.Stat(filepath.Join(srcDir, fileSnapshot))
	if suspendedErr != nil && a.macInUse(cfg.MACAddress, "") {
		cfg.MACAddress = RandomMAC()
		if err := writeConfigInPlace(cfgPath, cfg); err != nil {
			return err
		}
	}
	target := a.home.vmDir(dst)
	// Swap the new directory in; a previous VM of that name is moved to
	// tmp/ (garbage-collected even if this process dies) and discarded.
	old := filepath.Join(a.home.tmpDir(), "replaced-"+strconv.Itoa(os.Getpid())+"-"+filepath.Base(tmp.dir))
	if err := os.Rename(target, old); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("replace VM %s: %w", dst, err)
	}
	if err := os.Rename(tmp.dir, target); err != nil {
		return fmt.Errorf("move clone into place as %s: %w", dst, err)
	}
	_ = os.RemoveAll(old)
	touchAccess(target)
	return nil
}

// macInUse reports whether a local VM other than except has mac.
func (a *app) macInUse(mac, except string) bool {
	names, err := a.home.localVMNames()
	if err != nil {
		return false
	}
	for _, n := range names {
		if n == except {
			continue
		}
		c, err := a.readVMConfig(a.home.vmDir(n))
		if err == nil && normalizeMAC(c.MACAddress) == normalizeMAC(mac) {
			return true
		}
	}
	return false
}

// readVMConfig reads a VM's config, from memory for the VM whose lock this
// process holds (reopening it would drop the lock).
func (a *app) readVMConfig(dir string) (VMConfig, error) {
	if a.heldLock != nil && a.heldLockPath == filepath.Join(dir, fileConfig) {
		return a.runConfig, nil
	}
	return readConfig(filepath.Join(dir, fileConfig))
}

var displayRe = regexp.MustCompile(`^(\d+)x(\d+)(pt|px)?$`)

// setRequest is a validated `tart set` command line.
type setRequest struct {
	cpu, memoryMiB, diskSizeGB int64
	display                    []string // regexp submatches, nil when not given
	refit                      *bool
	randomMAC, randomSerial    bool
	disk                       string
}

func parseSet(spec *commandSpec, p *parsedArgs) (setRequest, error) {
	var r setRequest
	var err error
	if r.cpu, err = spec.intValue(p, "cpu", 0, 1, maxUInt16); err != nil {
		return r, err
	}
	if r.memoryMiB, err = spec.intValue(p, "memory", 0, 1, 1<<40); err != nil {
		return r, err
	}
	if r.diskSizeGB, err = spec.intValue(p, "disk-size", 0, 1, maxUInt16); err != nil {
		return r, err
	}
	if v, ok := p.value("display"); ok {
		if r.display = displayRe.FindStringSubmatch(v); r.display == nil {
			return r, usageErr(spec.name, "The value '%s' is invalid for '--display <display>'", v)
		}
	}
	if p.has("display-refit") && p.has("no-display-refit") {
		return r, usageErr(spec.name, "Value to be set with flag '--display-refit' had already been set with flag '--no-display-refit'")
	}
	if p.has("display-refit") || p.has("no-display-refit") {
		v := p.has("display-refit")
		r.refit = &v
	}
	r.randomMAC, r.randomSerial = p.has("random-mac"), p.has("random-serial")
	r.disk, _ = p.value("disk")
	return r, nil
}

func (a *app) cmdSet(spec *commandSpec, p *parsedArgs) error {
	req, err := parseSet(spec, p)
	if err != nil {
		return err
	}
	dir, err := a.home.openLocal(p.pos[0])
	if err != nil {
		return err
	}
	if a.shouldFail("set") {
		return prefixedErr("%s", a.failMessage("set", "faketart: injected set failure"))
	}
	cfgPath := filepath.Join(dir, fileConfig)
	cfg, err := readConfig(cfgPath)
	if err != nil {
		return err
	}
	if err := applySet(&cfg, req); err != nil {
		return err
	}
	if err := writeConfigInPlace(cfgPath, cfg); err != nil {
		return err
	}
	if req.randomMAC {
		// A snapshot cannot be restored with another MAC: tart discards
		// it.
		_ = os.Remove(filepath.Join(dir, fileSnapshot))
	}
	if req.disk != "" {
		if err := copySparseFile(expandHome(req.disk), filepath.Join(dir, fileDisk), 0o644); err != nil {
			return prefixedErr("%v", err)
		}
	}
	if req.diskSizeGB > 0 {
		return growDisk(filepath.Join(dir, fileDisk), req.diskSizeGB)
	}
	return nil
}

// applySet changes cfg as tart set does, enforcing macOS minimums.
func applySet(cfg *VMConfig, req setRequest) error {
	if req.cpu > 0 {
		if cfg.OS == osDarwin && int(req.cpu) < cfg.CPUCountMin {
			return bareErr(exitFailure, "VM should have %d CPU cores at minimum (requested %d)", cfg.CPUCountMin, req.cpu)
		}
		cfg.CPUCount = int(req.cpu)
	}
	if req.memoryMiB > 0 {
		bytes := uint64(req.memoryMiB) * mib
		if cfg.OS == osDarwin && bytes < cfg.MemorySizeMin {
			return bareErr(exitFailure, "VM should have %d megabytes of memory at minimum (requested %d)",
				cfg.MemorySizeMin/mib, req.memoryMiB)
		}
		cfg.MemorySize = bytes
	}
	if req.display != nil {
		cfg.Display.Width, _ = strconv.Atoi(req.display[1])
		cfg.Display.Height, _ = strconv.Atoi(req.display[2])
		cfg.Display.Unit = req.display[3]
	}
	// Every `set` clears the refit setting unless a refit flag is given.
	cfg.DisplayRefit = req.refit
	if req.randomMAC {
		cfg.MACAddress = RandomMAC()
	}
	if req.randomSerial && cfg.OS == osDarwin {
		cfg.ECID = randomB64(8)
	}
	return nil
}

// growDisk resizes a sparse disk; tart refuses to shrink.
func growDisk(path string, sizeGB int64) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("stat disk %s: %w", path, err)
	}
	want := sizeGB * gb
	if want < st.Size() {
		return bareErr(exitFailure, "new disk size of %dGB should be larger than the current disk size of %dGB",
			sizeGB, st.Size()/gb)
	}
	return createSparse(path, want)
}

func expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if h, err := os.UserHomeDir(); err == nil {
			return filepath.Join(h, strings.TrimPrefix(p, "~"))
		}
	}
	return p
}

func (a *app) cmdDelete(p *parsedArgs) error {
	for _, name := range p.pos {
		if isRemoteName(name) {
			if err := a.deleteRemote(name); err != nil {
				return err
			}
			continue
		}
		dir, err := a.home.openLocal(name)
		if err != nil {
			return err
		}
		if st, _ := a.state(dir); st == stateRunning {
			return bareErr(exitFailure, "VM \"%s\" is running", name)
		}
		if a.shouldFail("delete") {
			return prefixedErr("%s", a.failMessage("delete", "faketart: injected delete failure"))
		}
		if err := os.RemoveAll(dir); err != nil {
			return prefixedErr("failed to delete VM \"%s\": %v", name, err)
		}
	}
	return nil
}

func (a *app) deleteRemote(name string) error {
	r, err := parseRemote(name)
	if err != nil {
		return bareErr(exitVMState, "%s", vmNotFound(name))
	}
	n := r.tag
	if r.digest != "" {
		n = r.digest
	}
	p := filepath.Join(a.home.repoCacheDir(r), n)
	if _, err := os.Lstat(p); err != nil {
		return bareErr(exitVMState, "%s", vmNotFound(name))
	}
	if err := os.RemoveAll(p); err != nil {
		return prefixedErr("failed to delete \"%s\": %v", name, err)
	}
	a.gcOCI()
	return nil
}

// gcOCI removes digest directories no tag points to. (Real tart keeps
// digests pulled explicitly by digest; faketart does not track that.)
func (a *app) gcOCI() {
	entries, err := a.home.ociEntries()
	if err != nil {
		return
	}
	linked := map[string]bool{}
	for _, e := range entries {
		if e.ref.tag != "" {
			linked[e.dir] = true
		}
	}
	for _, e := range entries {
		if e.ref.digest != "" && !linked[e.dir] {
			_ = os.RemoveAll(e.dir)
		}
	}
}

func (a *app) cmdCreate(spec *commandSpec, p *parsedArgs) error {
	diskSize, err := spec.intValue(p, "disk-size", 50, 1, maxUInt16)
	if err != nil {
		return err
	}
	_, fromIPSW := p.value("from-ipsw")
	if fromIPSW == p.has("linux") {
		return usageErr(spec.name, "Please specify either a --from-ipsw or --linux option!")
	}
	format := "raw"
	if v, ok := p.value("disk-format"); ok {
		if v != "raw" && v != "asif" {
			return usageErr(spec.name, "The value '%s' is invalid for '--disk-format <disk-format>'", v)
		}
		format = v
	}
	name := p.pos[0]
	if isRemoteName(name) {
		return usageErr(spec.name, "<name> should be a local name")
	}
	if _, ok := vmDirComplete(a.home.vmDir(name)); ok {
		return bareErr(exitFailure, "VM \"%s\" already exists", name)
	}
	guestOS := osLinux
	if fromIPSW {
		guestOS = osDarwin
	}
	cfg := DefaultConfig(guestOS)
	cfg.DiskFormat = format
	return SeedVM(a.home.root, name, cfg, int(diskSize))
}

func (a *app) cmdRename(spec *commandSpec, p *parsedArgs) error {
	src, dst := p.pos[0], p.pos[1]
	if isRemoteName(dst) {
		return usageErr(spec.name, "<new-name> should be a local name")
	}
	if _, ok := vmDirComplete(a.home.vmDir(src)); !ok || isRemoteName(src) {
		return usageErr(spec.name, "%s", vmNotFound(src))
	}
	if _, ok := vmDirComplete(a.home.vmDir(dst)); ok {
		return usageErr(spec.name, "VM \"%s\" already exists", dst)
	}
	if err := os.Rename(a.home.vmDir(src), a.home.vmDir(dst)); err != nil {
		return prefixedErr("rename VM \"%s\" to \"%s\": %v", src, dst, err)
	}
	return nil
}

func (a *app) cmdFQN(p *parsedArgs) error {
	r, err := parseRemote(p.pos[0])
	if err != nil {
		return bareErr(exitFailure, "%v", err)
	}
	dir := a.home.cachedImage(r)
	if dir == "" {
		return bareErr(exitVMState, "%s", vmNotFound(p.pos[0]))
	}
	a.out("%s", r.withDigest(filepath.Base(dir)))
	return nil
}

func (a *app) cmdLogin(p *parsedArgs) error {
	if p.has("password-stdin") {
		buf := make([]byte, 4096)
		_, _ = a.stdin.Read(buf) // consumed, never stored: faketart has no keychain
	}
	return nil
}
