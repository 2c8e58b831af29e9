// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package faketart_test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoenig/test/must"
)

func TestFaketart_Exec_statusAndStreams(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.seedVM("vm", "linux")
	e.start("vm")

	r := e.tart("exec", "vm", "sh", "-c", "echo hi; echo oops >&2; exit 3")
	must.Eq(t, 3, r.code)
	must.Eq(t, "hi\n", r.stdout)
	must.Eq(t, "oops\n", r.stderr)

	// argv is verbatim after the VM name, options included; cwd and HOME
	// are the guest directory; the caller's environment is not forwarded.
	guest := filepath.Join(e.home, "vms", "vm", "guest")
	e.set("SECRET_TOKEN", "hunter2")
	out := e.ok("exec", "vm", "sh", "-c", `pwd; echo "$HOME"; echo "token=$SECRET_TOKEN"`, "-la")
	must.Eq(t, guest+"\n"+guest+"\ntoken=\n", out)
	delete(e.vars, "SECRET_TOKEN")

	// A signal-killed guest command is reported as -1 (255).
	r = e.tart("exec", "vm", "sh", "-c", "kill -KILL $$")
	must.Eq(t, 255, r.code)

	// A program that cannot start: "Error: ..." and exit 1.
	r = e.tart("exec", "vm", "no-such-program-xyz")
	must.Eq(t, 1, r.code)
	must.StrHasPrefix(t, "Error: ", r.stderr)

	// Guest files persist in the VM directory and are cloned with it.
	e.ok("exec", "vm", "sh", "-c", "echo data > state.txt")
	e.ok("clone", "vm", "copy")
	b, err := os.ReadFile(filepath.Join(e.home, "vms", "copy", "guest", "state.txt"))
	must.NoError(t, err)
	must.Eq(t, "data\n", string(b))
}

func TestFaketart_Exec_stdin(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.seedVM("vm", "linux")
	e.start("vm")
	// -i forwards stdin including EOF.
	r := e.tartIn("line one\nline two\n", "exec", "-i", "vm", "sh", "-c", "wc -l")
	must.Eq(t, 0, r.code)
	must.Eq(t, "2", strings.TrimSpace(r.stdout))
	// Without -i the command's stdin is never fed.
	r = e.tartIn("ignored\n", "exec", "vm", "cat")
	must.Eq(t, 0, r.code)
	must.Eq(t, "", r.stdout)
}

func TestFaketart_Exec_signalForwarding(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.seedVM("vm", "linux")
	e.start("vm")
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
	}{
		{"INT", syscall.SIGINT}, {"TERM", syscall.SIGTERM}, {"HUP", syscall.SIGHUP}, {"USR1", syscall.SIGUSR1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			script := `trap 'echo got-` + tc.name + `; exit 7' ` + tc.name + `; echo ready; while :; do sleep 0.05; done`
			c := e.cmd("exec", "vm", "sh", "-c", script)
			var se bytes.Buffer
			pr, pw, err := os.Pipe()
			must.NoError(t, err)
			t.Cleanup(func() { _ = pr.Close() })
			c.Stdout, c.Stderr = pw, &se
			must.NoError(t, c.Start())
			_ = pw.Close()
			buf := make([]byte, 6)
			_, err = io.ReadFull(pr, buf) // "ready\n": the trap is installed
			must.NoError(t, err)
			must.NoError(t, c.Process.Signal(tc.sig))
			rest, _ := io.ReadAll(pr)
			r := finish(t, c.Wait(), string(rest), se.String())
			must.Eq(t, 7, r.code)
			must.Eq(t, "got-"+tc.name+"\n", r.stdout)
		})
	}
}

func TestFaketart_Exec_killedExecKillsCommand(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.seedVM("vm", "linux")
	e.start("vm")
	pidFile := filepath.Join(t.TempDir(), "pid")
	c := e.cmd("exec", "vm", "sh", "-c", "echo $$ > "+pidFile+"; exec sleep 60")
	must.NoError(t, c.Start())
	pid := waitPIDFile(t, pidFile)
	must.NoError(t, c.Process.Kill())
	_ = c.Wait()
	waitGone(t, pid)
}

func TestFaketart_Exec_vmStopKillsCommand(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.seedVM("vm", "linux")
	p := e.start("vm")
	pidFile := filepath.Join(t.TempDir(), "pid")
	c := e.cmd("exec", "vm", "sh", "-c", "echo $$ > "+pidFile+"; exec sleep 60")
	var se bytes.Buffer
	c.Stderr = &se
	must.NoError(t, c.Start())
	pid := waitPIDFile(t, pidFile)
	e.ok("stop", "vm")
	p.wait(t)
	r := finish(t, c.Wait(), "", se.String())
	must.Eq(t, 1, r.code)
	must.StrHasPrefix(t, "Error: ", r.stderr)
	waitGone(t, pid)
}

func TestFaketart_Exec_vmStopKillsBackgroundProcesses(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.seedVM("vm", "linux")
	p := e.start("vm")
	pidFile := filepath.Join(t.TempDir(), "pid")
	// The command returns at once, leaving a "guest daemon" behind.
	e.ok("exec", "vm", "sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $! > "+pidFile)
	pid := waitPIDFile(t, pidFile)
	must.NoError(t, syscall.Kill(pid, 0), must.Sprint("the background process outlives exec"))
	e.ok("stop", "vm")
	p.wait(t)
	waitGone(t, pid)
}

func TestFaketart_Exec_waitsForAgent(t *testing.T) {
	t.Parallel()
	e := newEnv(t).set("FAKETART_BOOT_DELAY", "400ms")
	e.seedVM("vm", "linux")
	e.start("vm")
	start := time.Now()
	must.Eq(t, "up\n", e.ok("exec", "vm", "echo", "up"))
	// Returned only once the agent answered (the boot delay has passed).
	must.Greater(t, 300*time.Millisecond, time.Since(start))
}

func TestFaketart_Exec_agentNeverReady(t *testing.T) {
	t.Parallel()
	e := newEnv(t).set("FAKETART_NO_AGENT", "1").set("FAKETART_EXEC_CONNECT_TIMEOUT", "200ms")
	e.seedVM("vm", "linux")
	e.start("vm")
	r := e.tart("exec", "vm", "true")
	must.Eq(t, 1, r.code)
	must.RegexMatch(t, agentErrRe, r.stderr)
	// ip --resolver=agent fails too; dhcp still works.
	r = e.tart("ip", "vm", "--resolver", "agent")
	must.Eq(t, 1, r.code)
	must.StrContains(t, r.stderr, "Guest agent for Tart")
	e.ok("ip", "vm", "--wait", "5")
}

func TestFaketart_Exec_ttyNeedsTerminal(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.seedVM("vm", "linux")
	e.start("vm")
	r := e.tart("exec", "-t", "vm", "true")
	must.Eq(t, syscall.SIGTRAP, r.signaled)
	// -it parses as two flags.
	r = e.tart("exec", "-it", "vm", "true")
	must.Eq(t, syscall.SIGTRAP, r.signaled)
}

func TestFaketart_Exec_guestShutdown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.seedVM("vm", "linux")
	p := e.start("vm")
	e.ok("exec", "vm", "sudo", "shutdown", "-h", "now")
	res := p.wait(t)
	must.Eq(t, 0, res.code)
	must.Eq(t, "guest has stopped the virtual machine\n", res.stdout)
}

func waitPIDFile(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(path)
		if err == nil && strings.HasSuffix(string(b), "\n") {
			var pid int
			for _, ch := range strings.TrimSpace(string(b)) {
				pid = pid*10 + int(ch-'0')
			}
			return pid
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no pid in %s", path)
	return 0
}

// waitGone waits until pid no longer exists (or is a zombie of init).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile("/proc/" + itoa(pid) + "/stat")
		if err != nil || strings.Contains(string(b), ") Z ") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("process %d still alive", pid)
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func TestFaketart_Exec_guestBuiltins(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.seedVM("lin", "linux")
	share := t.TempDir()
	must.NoError(t, os.WriteFile(filepath.Join(share, "f"), []byte("shared"), 0o644))
	p := e.start("lin", "--dir", share+":tag=data")

	// Linux guests mount virtiofs shares themselves; nothing is mounted on the host.
	r := e.tart("exec", "lin", "sudo", "mount", "-t", "virtiofs", "nope", "/mnt/x")
	must.Eq(t, 32, r.code)
	e.ok("exec", "lin", "sudo", "mount", "-t", "virtiofs", "data", "/mnt/data")
	must.Eq(t, "shared", e.ok("exec", "lin", "cat", "mnt/data/f"))

	// reboot: the agent goes away for a boot, guest processes die, the VM keeps running.
	pidFile := filepath.Join(t.TempDir(), "pid")
	e.ok("exec", "lin", "sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $! > "+pidFile)
	pid := waitPIDFile(t, pidFile)
	e.ok("exec", "lin", "sudo", "reboot")
	waitGone(t, pid)
	must.Eq(t, "running", e.state("lin"))
	must.Eq(t, "back\n", e.ok("exec", "lin", "echo", "back"))
	must.FileNotExists(t, filepath.Join(e.home, "vms", "lin", "guest", "mnt", "data"))

	e.ok("exec", "lin", "sudo", "-n", "shutdown", "-h", "now")
	must.Eq(t, "guest has stopped the virtual machine\n", p.wait(t).stdout)
}
