// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package faketart

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// dirShare is one --dir argument.
type dirShare struct {
	name, path, tag string
	readOnly        bool
}

const defaultShareTag = "com.apple.virtio-fs.automount"

func parseDirShare(s string) (dirShare, error) {
	d := dirShare{tag: defaultShareTag}
	parts := strings.Split(s, ":")
	isOpts := func(x string) bool {
		for _, o := range strings.Split(x, ",") {
			if o != "ro" && !strings.HasPrefix(o, "tag=") {
				return false
			}
		}
		return true
	}
	switch {
	case strings.Contains(s, "://"):
		d.path = s // a .tar.gz URL: accepted, not downloaded
		return d, nil
	case len(parts) == 1:
		d.path = parts[0]
	case len(parts) == 2 && isOpts(parts[1]):
		d.path = parts[0]
		parts = append(parts[:1], "", parts[1])
		d.applyOpts(parts[2])
	case len(parts) == 2:
		d.name, d.path = parts[0], parts[1]
	case len(parts) == 3 && isOpts(parts[2]):
		d.name, d.path = parts[0], parts[1]
		d.applyOpts(parts[2])
	default:
		return d, fmt.Errorf("invalid --dir syntax: \"%s\"", s)
	}
	if d.path == "" {
		return d, fmt.Errorf("invalid --dir syntax: \"%s\"", s)
	}
	d.path = expandHome(d.path)
	return d, nil
}

func (d *dirShare) applyOpts(opts string) {
	for _, o := range strings.Split(opts, ",") {
		if o == "ro" {
			d.readOnly = true
		} else if t, ok := strings.CutPrefix(o, "tag="); ok {
			d.tag = t
		}
	}
}

// runOpts are the validated flags of `tart run`.
type runOpts struct {
	suspendable bool
	softnet     bool
	bridged     []string
	shares      []dirShare
}

func (a *app) validateRunFlags(spec *commandSpec, p *parsedArgs) (runOpts, error) {
	o := runOpts{suspendable: p.has("suspendable"), bridged: p.values["net-bridged"]}
	o.softnet = p.has("net-softnet") || p.has("net-softnet-allow") || p.has("net-softnet-block") || p.has("net-softnet-expose")
	modes := 0
	for _, on := range []bool{len(o.bridged) > 0, o.softnet, p.has("net-host")} {
		if on {
			modes++
		}
	}
	if modes > 1 {
		return o, usageErr(spec.name, "--net-bridged, --net-softnet and --net-host are mutually exclusive")
	}
	if p.has("graphics") && p.has("no-graphics") {
		return o, usageErr(spec.name, "--graphics and --no-graphics are mutually exclusive")
	}
	if p.has("vnc") && p.has("vnc-experimental") {
		return o, usageErr(spec.name, "--vnc and --vnc-experimental are mutually exclusive")
	}
	if o.suspendable && (p.has("no-trackpad") || p.has("no-keyboard") || p.has("no-pointer")) {
		return o, usageErr(spec.name, "--suspendable is incompatible with --no-trackpad, --no-keyboard and --no-pointer")
	}
	byTag := map[string]int{}
	unnamed := map[string]int{}
	for _, v := range p.values["dir"] {
		d, err := parseDirShare(v)
		if err != nil {
			return o, usageErr(spec.name, "%v", err)
		}
		byTag[d.tag]++
		if d.name == "" {
			unnamed[d.tag]++
		}
		o.shares = append(o.shares, d)
	}
	for tag, n := range byTag {
		if n > 1 && unnamed[tag] > 0 {
			return o, usageErr(spec.name, "invalid --dir syntax: for multiple directory shares each one of them should be named")
		}
	}
	return o, nil
}

func (a *app) cmdRun(spec *commandSpec, p *parsedArgs) error {
	opts, err := a.validateRunFlags(spec, p)
	if err != nil {
		return err
	}
	name := p.pos[0]
	dir, err := a.home.openLocal(name)
	if err != nil {
		// Raised in run's validation step: "Error: " prefix and exit 1.
		var ce *cliError
		if errors.As(err, &ce) {
			return prefixedErr("%s", ce.msg)
		}
		return err
	}
	cfg, err := readConfig(filepath.Join(dir, fileConfig))
	if err != nil {
		return prefixedErr("%v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, fileSnapshot)); err == nil {
		opts.suspendable = true // implied when resuming
	}
	if opts.suspendable && cfg.OS != osDarwin {
		return usageErr(spec.name, "You can only suspend macOS VMs")
	}
	if opts.softnet || p.has("net-host") {
		if a.knobs.softnetMissing {
			return prefixedErr("softnet not found in PATH")
		}
	}
	for _, b := range opts.bridged {
		if !slices.Contains(a.knobs.bridgedIfaces, b) {
			return prefixedErr("invalid --net-bridged value \"%s\": no such interface, available interfaces: %s",
				b, strings.Join(a.knobs.bridgedIfaces, ", "))
		}
	}
	for _, d := range opts.shares {
		if strings.Contains(d.path, "://") {
			continue
		}
		if st, err := os.Stat(d.path); err != nil || !st.IsDir() {
			return bareErr(exitFailure, `Error Domain=VZErrorDomain Code=2 "A directory sharing device configuration is invalid." UserInfo={NSLocalizedFailure=Invalid virtual machine configuration., NSLocalizedFailureReason=The directory "%s" does not exist.}`, d.path)
		}
	}
	// Listen before the lock is taken: from then on `tart stop` may signal
	// this process, and tart handles SIGINT from the moment it runs.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	if a.knobs.runStartDelay > 0 {
		time.Sleep(a.knobs.runStartDelay)
	}
	if err := a.startVM(name, dir, &cfg); err != nil {
		return err
	}
	return a.runVM(p, opts, name, dir, cfg, sigs)
}

// startVM does run's lifecycle steps 2 to 7 under the global lock: MAC
// collision handling, the VM lock, and the macOS VM limit.
func (a *app) startVM(name, dir string, cfg *VMConfig) error {
	gl, err := a.home.globalLock()
	if err != nil {
		return err
	}
	defer gl.unlock()
	others, err := a.runningVMs(name)
	if err != nil {
		return err
	}
	for _, o := range others {
		if normalizeMAC(o.cfg.MACAddress) == normalizeMAC(cfg.MACAddress) {
			a.out("There is already a running VM with the same MAC address!")
			a.out("Resetting VM to assign a new MAC address...")
			cfg.MACAddress = RandomMAC()
			if err := writeConfigInPlace(filepath.Join(dir, fileConfig), *cfg); err != nil {
				return err
			}
			_ = os.Remove(filepath.Join(dir, fileSnapshot))
			break
		}
	}
	ok, err := a.takeVMLock(dir)
	if err != nil {
		return err
	}
	if !ok {
		return bareErr(exitVMState, "VM \"%s\" is already running!", name)
	}
	a.runConfig = *cfg
	if cfg.OS == osDarwin {
		var names []string
		darwin := 0
		for _, o := range others {
			names = append(names, o.name)
			if o.cfg.OS == osDarwin {
				darwin++
			}
		}
		if darwin+a.knobs.phantomVMs >= a.knobs.vmLimit {
			msg := "The number of VMs exceeds the system limit"
			if len(names) > 0 {
				msg += " (other running VMs: " + strings.Join(names, ", ") + ")"
			}
			return bareErr(exitFailure, "%s", msg)
		}
	}
	if a.shouldFail("run") {
		return bareErr(exitFailure, "%s", a.failMessage("run",
			`Error Domain=VZErrorDomain Code=1 "The virtual machine failed to start." UserInfo={NSLocalizedFailure=Internal Virtualization error., NSLocalizedFailureReason=faketart injected run failure.}`))
	}
	return nil
}

type runningVM struct {
	name string
	cfg  VMConfig
}

// runningVMs lists running local VMs other than except.
func (a *app) runningVMs(except string) ([]runningVM, error) {
	names, err := a.home.localVMNames()
	if err != nil {
		return nil, err
	}
	var out []runningVM
	for _, n := range names {
		if n == except {
			continue // never open our own config.json: see lockHolder
		}
		d := a.home.vmDir(n)
		if st, _ := a.state(d); st != stateRunning {
			continue
		}
		c, err := readConfig(filepath.Join(d, fileConfig))
		if err != nil {
			continue
		}
		out = append(out, runningVM{name: n, cfg: c})
	}
	return out, nil
}

// runVM is the running VM: it waits for signals and timers and returns
// when the VM stops.
func (a *app) runVM(p *parsedArgs, opts runOpts, name, dir string, cfg VMConfig, sigs <-chan os.Signal) error {
	fake := filepath.Join(dir, dirFake)
	_ = os.RemoveAll(fake) // state of a previous, killed run
	if err := os.MkdirAll(filepath.Join(fake, "execs"), 0o755); err != nil {
		return fmt.Errorf("create runtime dir: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, dirGuest), 0o755); err != nil {
		return fmt.Errorf("create guest dir: %w", err)
	}
	resumed, err := a.restoreSnapshot(dir, cfg)
	if err != nil {
		return err
	}
	if p.has("vnc") || p.has("vnc-experimental") {
		if _, ci := os.LookupEnv("CI"); ci || p.has("no-graphics") {
			a.out("VNC server is running at vnc://:faketart@127.0.0.1:5900")
		}
	}
	if p.has("serial") {
		a.out("Successfully open pty /dev/ttys000")
	}
	ln := a.listenControl(dir)
	a.writeShares(dir, opts.shares)
	unshare := a.mountShares(dir, cfg, opts.shares)
	defer a.powerOff(dir, ln, unshare)
	return a.waitVM(opts, name, dir, cfg, resumed, sigs)
}

// restoreSnapshot resumes from state.vzvmsave when there is one, as
// `tart run` does before it boots, and reports whether it did. The snapshot records the
// MAC it was taken with: a VM whose MAC changed since (config.json edited)
// cannot be restored, as Virtualization.framework refuses ("invalid
// argument", tart PR #527); FAKETART_FAIL_RESUME injects that failure.
func (a *app) restoreSnapshot(dir string, cfg VMConfig) (bool, error) {
	path := filepath.Join(dir, fileSnapshot)
	data, err := os.ReadFile(path)
	if err != nil {
		return false, nil
	}
	a.out("restoring VM state from a snapshot...")
	var snap snapshotFile
	_ = json.Unmarshal(data, &snap)
	if (snap.MAC != "" && normalizeMAC(snap.MAC) != normalizeMAC(cfg.MACAddress)) || a.shouldFail("resume") {
		return false, bareErr(exitFailure, "%s", a.failMessage("resume",
			`Error Domain=VZErrorDomain Code=2 "failed to restore with error invalid argument" UserInfo={NSLocalizedFailure=Invalid virtual machine configuration.}`))
	}
	a.out("resuming VM...")
	_ = os.Remove(path)
	return true, nil
}

// snapshotFile is what faketart writes as state.vzvmsave (tart writes the
// guest's memory): the MAC the VM had when it was suspended.
type snapshotFile struct {
	Note string `json:"note"`
	MAC  string `json:"mac"`
}

// powerOff tidies up while still holding the lock (a new run of this VM
// may start as soon as it is released), then drops the lock, then kills
// the guest processes exec started, so exec sees the VM gone.
func (a *app) powerOff(dir string, ln net.Listener, unshare func()) {
	groups := a.execGroups(dir)
	if ln != nil {
		_ = ln.Close()
	}
	// A `clone` onto this name may have replaced the directory under us:
	// then the files at dir are another VM's.
	if a.stillOwnsDir(dir) {
		unshare()
		unmountGuest(dir)
		_ = os.Remove(filepath.Join(dir, fileControl))
		_ = os.RemoveAll(filepath.Join(dir, dirFake))
	}
	a.releaseVMLock()
	for _, pgid := range groups {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
}

// waitVM is the running VM's event loop: boot timers, fault knobs, guest
// power-off requests and signals. It returns when the VM stops.
func (a *app) waitVM(opts runOpts, name, dir string, cfg VMConfig, resumed bool, sigs <-chan os.Signal) error {
	fake := filepath.Join(dir, dirFake)
	// A resumed guest is up once its memory is read back: its agent was
	// already running when the snapshot was taken.
	first := a.knobs.bootDelay
	if resumed {
		first = a.knobs.resumeDelay
	}
	boot := time.NewTimer(first)
	defer boot.Stop()
	var agent, shutdown <-chan time.Time
	crash := timerChan(a.knobs.runCrashAfter)
	guestStop := timerChan(a.knobs.guestStopAfter)
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	for {
		select {
		case <-boot.C:
			if !a.knobs.noDHCP {
				if _, err := a.acquireLease(name, cfg.MACAddress); err != nil {
					fmt.Fprintf(a.stderr, "faketart: DHCP lease: %v\n", err)
				}
			}
			if !a.knobs.noAgent {
				agent = time.After(a.knobs.agentDelay)
				if resumed {
					agent = time.After(0)
				}
			}
		case <-agent:
			agent = nil
			_ = os.WriteFile(filepath.Join(fake, "agent"), []byte(strconv.Itoa(os.Getpid())), 0o644)
		case <-crash:
			a.out("guest has stopped the virtual machine due to error: faketart: simulated VM crash")
			return &exitCodeErr{code: exitFailure}
		case <-guestStop:
			a.out("guest has stopped the virtual machine")
			return nil
		case <-shutdown:
			a.out("guest has stopped the virtual machine")
			return nil
		case <-poll.C:
			if _, err := os.Stat(filepath.Join(fake, markerPowerOff)); err == nil && shutdown == nil {
				shutdown = time.After(a.knobs.shutdownDelay)
			}
			if _, err := os.Stat(filepath.Join(fake, markerReboot)); err == nil {
				a.rebootGuest(dir)
				boot.Reset(a.knobs.shutdownDelay + a.knobs.bootDelay)
				agent = nil
			}
		case s := <-sigs:
			done, err := a.onSignal(s, opts, dir, cfg)
			if done {
				return err
			}
			if s == syscall.SIGUSR2 && shutdown == nil {
				shutdown = time.After(a.knobs.shutdownDelay)
			}
		}
	}
}

// rebootGuest ends the guest's processes and its agent; the caller restarts
// the boot timer. The DHCP lease (same MAC) survives, as with bootpd.
func (a *app) rebootGuest(dir string) {
	fake := filepath.Join(dir, dirFake)
	_ = os.Remove(filepath.Join(fake, markerReboot))
	_ = os.Remove(filepath.Join(fake, "agent"))
	unmountGuest(dir)
	for _, pgid := range a.execGroups(dir) {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		_ = os.Remove(filepath.Join(fake, "execs", strconv.Itoa(pgid)))
	}
}

// onSignal handles a signal to `tart run` and reports
// whether the VM stopped.
func (a *app) onSignal(s os.Signal, opts runOpts, dir string, cfg VMConfig) (bool, error) {
	switch s {
	case syscall.SIGINT:
		if a.knobs.runIgnoreSIGINT {
			return false, nil
		}
		a.out("Stopping VM...")
		return true, nil
	case syscall.SIGUSR1:
		if !opts.suspendable {
			fmt.Fprintln(a.stderr, "Failed to suspend the VM: Error Domain=VZErrorDomain Code=12 \"The virtual machine is not configured to support save and restore.\"")
			return true, &exitCodeErr{code: exitFailure}
		}
		a.out("pausing VM to take a snapshot...")
		a.out("creating a snapshot...")
		snap, _ := json.Marshal(snapshotFile{Note: "faketart snapshot", MAC: cfg.MACAddress})
		if err := os.WriteFile(filepath.Join(dir, fileSnapshot), append(snap, '\n'), 0o644); err != nil {
			return true, fmt.Errorf("write snapshot: %w", err)
		}
		a.out("snapshot created successfully! shutting down the VM...")
		return true, nil
	case syscall.SIGUSR2:
		a.out("Requesting guest OS to stop...")
	}
	return false, nil
}

func timerChan(d time.Duration) <-chan time.Time {
	if d <= 0 {
		return nil
	}
	return time.After(d)
}

// listenControl creates control.sock as a Unix socket when the path fits
// in sun_path. faketart's exec does not talk over it; it is there so the
// layout matches tart's.
func (a *app) listenControl(dir string) net.Listener {
	path := filepath.Join(dir, fileControl)
	_ = os.Remove(path)
	if len(path) >= 104 {
		return nil
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil
	}
	return ln
}

// mountShares makes --dir shares visible in a macOS guest the way they
// auto-mount: guest/Volumes/My Shared Files (single unnamed share) or
// guest/Volumes/My Shared Files/<name>, as symlinks to the host paths.
// Linux guests mount shares themselves (exec's `mount -t virtiofs`).
func (a *app) mountShares(dir string, cfg VMConfig, shares []dirShare) func() {
	mount := filepath.Join(dir, dirGuest, "Volumes", "My Shared Files")
	var auto []dirShare
	for _, s := range shares {
		if s.tag == defaultShareTag && !strings.Contains(s.path, "://") {
			auto = append(auto, s)
		}
	}
	if cfg.OS != osDarwin || len(auto) == 0 {
		return func() {}
	}
	_ = os.RemoveAll(mount)
	_ = linkShares(mount, auto)
	return func() { unlinkShares(mount) }
}

// unlinkShares removes what linkShares made (never the shared files).
func unlinkShares(mount string) {
	st, err := os.Lstat(mount)
	if err != nil {
		return
	}
	if st.Mode()&fs.ModeSymlink == 0 {
		ents, _ := os.ReadDir(mount)
		for _, e := range ents {
			_ = os.Remove(filepath.Join(mount, e.Name()))
		}
	}
	_ = os.Remove(mount)
}

// execGroups lists the process groups of commands exec started in this
// VM (a stopped VM takes its guest processes with it), skipping groups
// whose leader's start time no longer matches: that ID now belongs to
// someone else.
func (a *app) execGroups(dir string) []int {
	var out []int
	execDir := filepath.Join(dir, dirFake, "execs")
	ents, _ := os.ReadDir(execDir)
	for _, e := range ents {
		pgid, err := strconv.Atoi(e.Name())
		if err != nil || pgid <= 1 {
			continue
		}
		want, _ := os.ReadFile(filepath.Join(execDir, e.Name()))
		if got, alive := procStartTime(pgid); alive && got != string(want) {
			continue
		}
		out = append(out, pgid)
	}
	return out
}

// procStartTime returns a process's start time (field 22 of
// /proc/<pid>/stat) and whether the process exists.
func procStartTime(pid int) (string, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", false
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return "", true
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return "", true
	}
	return f[19], true
}
