// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package faketart

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

func (a *app) cmdStop(spec *commandSpec, p *parsedArgs) error {
	timeout, err := spec.intValue(p, "timeout", 30, 0, 1<<31)
	if err != nil {
		return err
	}
	name := p.pos[0]
	dir, err := a.home.openLocal(name)
	if err != nil {
		return err
	}
	st, pid := a.state(dir)
	switch st {
	case stateSuspended:
		if err := os.Remove(filepath.Join(dir, fileSnapshot)); err != nil {
			return prefixedErr("failed to discard the snapshot of VM \"%s\": %v", name, err)
		}
		return nil
	case stateStopped:
		return bareErr(exitVMState, "VM \"%s\" is not running", name)
	}
	if a.shouldFail("stop") {
		return prefixedErr("%s", a.failMessage("stop", "faketart: injected stop failure"))
	}
	if pid <= 0 {
		return bareErr(exitFailure, "failed to forcefully terminate the VM \"%s\": %v", name, syscall.ESRCH)
	}
	_ = syscall.Kill(pid, syscall.SIGINT)
	deadline := time.Now().Add(time.Duration(timeout) * time.Second)
	for time.Now().Before(deadline) {
		if s, _ := a.state(dir); s != stateRunning {
			return nil
		}
		time.Sleep(a.knobs.stopPoll)
	}
	if s, _ := a.state(dir); s != stateRunning {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return bareErr(exitFailure, "failed to forcefully terminate the VM \"%s\": %v", name, err)
	}
	return nil
}

func (a *app) cmdSuspend(p *parsedArgs) error {
	name := p.pos[0]
	dir, err := a.home.openLocal(name)
	if err != nil {
		return err
	}
	st, pid := a.state(dir)
	if st != stateRunning {
		return bareErr(exitVMState, "VM \"%s\" is not running", `VM "`+name+`" is not running`)
	}
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		return prefixedErr("failed to send SIGUSR1 to the VM \"%s\": %v", name, err)
	}
	return nil
}

func (a *app) cmdIP(spec *commandSpec, p *parsedArgs) error {
	wait, err := spec.intValue(p, "wait", 0, 0, maxUInt16)
	if err != nil {
		return err
	}
	resolver := "dhcp"
	if v, ok := p.value("resolver"); ok {
		if v != "dhcp" && v != "arp" && v != "agent" {
			return usageErr(spec.name, "The value '%s' is invalid for '--resolver <resolver>'", v)
		}
		resolver = v
	}
	name := p.pos[0]
	dir, err := a.home.openLocal(name)
	if err != nil {
		return err
	}
	fail := a.shouldFail("ip")
	deadline := time.Now().Add(time.Duration(wait) * time.Second)
	for {
		if !fail {
			if ip := a.resolveIP(dir, resolver); ip != "" {
				a.out("%s", ip)
				return nil
			}
		}
		time.Sleep(a.knobs.ipPoll)
		if !time.Now().Before(deadline) {
			break
		}
	}
	msg := "no IP address found"
	if st, _ := a.state(dir); st != stateRunning {
		msg += ", is your VM running?"
	}
	if resolver == "agent" {
		msg += " (also make sure that Guest agent for Tart is running inside of a VM)"
	} else if cfg, err := readConfig(filepath.Join(dir, fileConfig)); err == nil && resolver == "arp" && cfg.OS == osLinux {
		msg += " (not all Linux distributions are compatible with the ARP resolver)"
	}
	return bareErr(exitFailure, "%s", msg)
}

// resolveIP answers like each resolver would: dhcp reads the lease file
// (leases outlive the VM, as bootpd's do); arp needs a running guest that
// has a lease; agent needs the running guest's agent.
func (a *app) resolveIP(dir, resolver string) string {
	cfg, err := readConfig(filepath.Join(dir, fileConfig))
	if err != nil {
		return ""
	}
	switch resolver {
	case "arp":
		if st, _ := a.state(dir); st != stateRunning {
			return ""
		}
	case "agent":
		if !a.agentReady(dir) {
			return ""
		}
	}
	return a.lookupLease(cfg.MACAddress)
}

// agentReady reports whether the running VM's simulated guest agent
// answers: the `run` process holding the lock wrote its PID in the marker.
func (a *app) agentReady(dir string) bool {
	st, pid := a.state(dir)
	if st != stateRunning {
		return false
	}
	b, err := os.ReadFile(filepath.Join(dir, dirFake, "agent"))
	if err != nil {
		return false
	}
	return string(b) == itoa(pid)
}
