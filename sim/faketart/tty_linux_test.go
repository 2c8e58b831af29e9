// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

//go:build linux

package faketart_test

import (
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/shoenig/test/must"
)

// openPTY opens a pseudo-terminal pair with plain syscalls.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Skipf("unlock pty: %v", e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Skipf("pty number: %v", e)
	}
	s, err := os.OpenFile("/dev/pts/"+itoa(int(n)), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open pty slave: %v", err)
	}
	t.Cleanup(func() { _ = m.Close(); _ = s.Close() })
	return m, s
}

func TestFaketart_Exec_ttyOnTerminal(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.seedVM("vm", "linux")
	e.start("vm")
	master, slave := openPTY(t)
	c := e.cmd("exec", "-t", "vm", "sh", "-c", `test -t 1 && echo tty-out; echo tty-err >&2; echo "term=$TERM"; exit 4`)
	c.Stdin, c.Stdout, c.Stderr = slave, slave, slave
	must.NoError(t, c.Start())
	err := c.Wait()
	_ = slave.Close()
	out, _ := io.ReadAll(master) // EIO once the slave side is closed
	r := finish(t, err, string(out), "")
	must.Eq(t, 4, r.code)
	text := strings.ReplaceAll(string(out), "\r\n", "\n")
	must.StrContains(t, text, "tty-out\n")
	must.StrContains(t, text, "tty-err\n", must.Sprint("-t merges stderr into the terminal"))
	must.StrContains(t, text, "term=")
}
