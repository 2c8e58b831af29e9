// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package faketart

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// knobs are faketart's own settings, read from FAKETART_* environment
// variables. Production code never reads them. README.md documents each one.
type knobs struct {
	version         string
	bootDelay       time.Duration
	resumeDelay     time.Duration
	agentDelay      time.Duration
	noAgent         bool
	noDHCP          bool
	dhcpPool        int
	leaseTime       time.Duration
	leasesFile      string
	ipSubnet        string
	ipPoll          time.Duration
	execTimeout     time.Duration
	guestPath       string
	vmLimit         int
	phantomVMs      int
	runIgnoreSIGINT bool
	runCrashAfter   time.Duration
	guestStopAfter  time.Duration
	shutdownDelay   time.Duration
	softnetMissing  bool
	bridgedIfaces   []string
	registry        string
	pullSize        int64
	pullSpeed       int64
	pullRetries     int
	stopPoll        time.Duration
	logFile         string
	fail            map[string]string // command -> spec
	failMsg         map[string]string // command -> message override
	runStartDelay   time.Duration
}

// failCommands are the commands that accept FAKETART_FAIL_<CMD>.
var failCommands = []string{"clone", "pull", "run", "resume", "exec", "stop", "set", "delete", "ip"}

func loadKnobs() (knobs, error) {
	k := knobs{
		version:       envOr("FAKETART_VERSION", "2.32.1"),
		guestPath:     envOr("FAKETART_GUEST_PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"),
		ipSubnet:      envOr("FAKETART_IP_SUBNET", "127.64.0.0/24"),
		leasesFile:    os.Getenv("FAKETART_DHCP_LEASES"),
		registry:      os.Getenv("FAKETART_REGISTRY"),
		logFile:       os.Getenv("FAKETART_LOG"),
		fail:          map[string]string{},
		failMsg:       map[string]string{},
		bridgedIfaces: strings.Split(envOr("FAKETART_BRIDGED_INTERFACES", "en0,en1,Wi-Fi,Ethernet"), ","),
	}
	var errs []string
	dur := func(name string, def time.Duration) time.Duration {
		v := os.Getenv(name)
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			errs = append(errs, fmt.Sprintf("%s=%q is not a duration", name, v))
			return def
		}
		return d
	}
	num := func(name string, def int64) int64 {
		v := os.Getenv(name)
		if v == "" {
			return def
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Sprintf("%s=%q is not a non-negative integer", name, v))
			return def
		}
		return n
	}
	k.bootDelay = dur("FAKETART_BOOT_DELAY", 200*time.Millisecond)
	k.resumeDelay = dur("FAKETART_RESUME_DELAY", time.Second)
	k.agentDelay = dur("FAKETART_AGENT_DELAY", 0)
	k.noAgent = truthy("FAKETART_NO_AGENT")
	k.noDHCP = truthy("FAKETART_NO_DHCP")
	k.dhcpPool = int(num("FAKETART_DHCP_POOL", 253))
	k.leaseTime = dur("FAKETART_LEASE_TIME", 24*time.Hour)
	k.ipPoll = dur("FAKETART_IP_POLL_INTERVAL", time.Second)
	k.execTimeout = dur("FAKETART_EXEC_CONNECT_TIMEOUT", 10*time.Second)
	k.vmLimit = int(num("FAKETART_VM_LIMIT", 2))
	k.phantomVMs = int(num("FAKETART_PHANTOM_VMS", 0))
	k.runStartDelay = dur("FAKETART_RUN_START_DELAY", 0)
	k.runIgnoreSIGINT = truthy("FAKETART_RUN_IGNORE_SIGINT")
	k.runCrashAfter = dur("FAKETART_RUN_CRASH_AFTER", 0)
	k.guestStopAfter = dur("FAKETART_GUEST_STOP_AFTER", 0)
	k.shutdownDelay = dur("FAKETART_SHUTDOWN_DELAY", 100*time.Millisecond)
	k.softnetMissing = truthy("FAKETART_SOFTNET_MISSING")
	k.pullSize = num("FAKETART_PULL_SIZE", 2_500_000_000)
	k.pullSpeed = num("FAKETART_PULL_SPEED", 0)
	k.pullRetries = int(num("FAKETART_PULL_TRANSIENT_ERRORS", 0))
	k.stopPoll = dur("FAKETART_STOP_POLL_INTERVAL", 100*time.Millisecond)
	for _, c := range failCommands {
		up := strings.ToUpper(c)
		if v := os.Getenv("FAKETART_FAIL_" + up); v != "" {
			if _, err := parseFailSpec(v); err != nil {
				errs = append(errs, fmt.Sprintf("FAKETART_FAIL_%s: %v", up, err))
			}
			k.fail[c] = v
		}
		if v := os.Getenv("FAKETART_FAIL_" + up + "_MESSAGE"); v != "" {
			k.failMsg[c] = v
		}
	}
	if len(errs) > 0 {
		return k, fmt.Errorf("faketart: bad knob: %s", strings.Join(errs, "; "))
	}
	return k, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func truthy(name string) bool {
	switch strings.ToLower(os.Getenv(name)) {
	case "", "0", "false", "no", "off":
		return false
	}
	return true
}

// failSpec says which calls of a command fail.
type failSpec struct {
	always bool
	calls  map[int]bool // 1-based call numbers that fail
	first  int          // the first N calls fail
	prob   float64
}

// parseFailSpec parses a FAKETART_FAIL_<CMD> value:
//
//	1 | always | true   every call fails
//	0 | never  | false  no call fails
//	N  or  calls:N,M    the Nth (and Mth) call fails, counting from 1
//	first:N             the first N calls fail
//	p:0.25              each call fails with that probability
func parseFailSpec(v string) (failSpec, error) {
	v = strings.TrimSpace(strings.ToLower(v))
	switch v {
	case "1", "always", "true", "yes":
		return failSpec{always: true}, nil
	case "", "0", "never", "false", "no":
		return failSpec{}, nil
	}
	kind, arg, ok := strings.Cut(v, ":")
	if !ok {
		kind, arg = "calls", v
	}
	switch kind {
	case "calls":
		s := failSpec{calls: map[int]bool{}}
		for _, f := range strings.Split(arg, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return failSpec{}, fmt.Errorf("call number %q must be an integer >= 1", f)
			}
			s.calls[n] = true
		}
		return s, nil
	case "first":
		n, err := strconv.Atoi(arg)
		if err != nil || n < 0 {
			return failSpec{}, fmt.Errorf("first:%q must be a non-negative integer", arg)
		}
		return failSpec{first: n}, nil
	case "p":
		p, err := strconv.ParseFloat(arg, 64)
		if err != nil || p < 0 || p > 1 {
			return failSpec{}, fmt.Errorf("p:%q must be a probability between 0 and 1", arg)
		}
		return failSpec{prob: p}, nil
	}
	return failSpec{}, fmt.Errorf("unknown failure spec %q (want 1, 0, N, calls:N,M, first:N or p:X)", v)
}

// shouldFail counts this call of cmd (in a counter file shared by every
// faketart process on the same TART_HOME) and says whether it must fail.
func (a *app) shouldFail(cmd string) bool {
	v, ok := a.knobs.fail[cmd]
	if !ok {
		return false
	}
	spec, err := parseFailSpec(v)
	if err != nil {
		return false
	}
	if spec.always {
		return true
	}
	if spec.prob > 0 {
		return rand.Float64() < spec.prob //nolint:gosec // test fault injection
	}
	if spec.first == 0 && len(spec.calls) == 0 {
		return false
	}
	n, err := a.countCall(cmd)
	if err != nil {
		return false
	}
	return spec.calls[n] || n <= spec.first
}

// countCall increments and returns the call counter of cmd.
func (a *app) countCall(cmd string) (int, error) {
	dir := filepath.Join(a.home.root, ".faketart", "calls")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("create call counter dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, cmd), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return 0, fmt.Errorf("open call counter: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return 0, fmt.Errorf("lock call counter: %w", err)
	}
	b := make([]byte, 32)
	nr, _ := f.ReadAt(b, 0)
	n, _ := strconv.Atoi(strings.TrimSpace(string(b[:nr])))
	n++
	if err := f.Truncate(0); err != nil {
		return 0, fmt.Errorf("reset call counter: %w", err)
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(n)), 0); err != nil {
		return 0, fmt.Errorf("write call counter: %w", err)
	}
	return n, nil
}

func (a *app) failMessage(cmd, def string) string {
	if m, ok := a.knobs.failMsg[cmd]; ok {
		return m
	}
	return def
}
