// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/shoenig/test/must"
)

// Test_guestWrapper runs the guest wrapper with the host's /bin/sh: the env
// block sets every variable exactly (newlines, backslashes, quotes, $), the
// wrapper records its PID and execs the command, and the rest of stdin (the
// payload) reaches the command untouched.
func Test_guestWrapper(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	env := map[string]string{
		"PLAIN":   "value",
		"MULTI":   "line1\nline2",
		"BACKSL":  `a\nb\\c\`,
		"QUOTES":  `it's "quoted" $HOME ${X} $(false)`,
		"EMPTY":   "",
		"bad.key": "skipped",
	}
	argv := guestArgv("/bin/sh", []string{"-c", `printf '%s|%s|%s|%s|%s|' "$PLAIN" "$MULTI" "$BACKSL" "$QUOTES" "$EMPTY"; cat; echo "|$$"`})
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"HOME=" + home, "PATH=/usr/bin:/bin"}
	cmd.Stdin = bytes.NewReader(append(envBlock(env), []byte("payload\nline two")...))
	out, err := cmd.Output()
	must.NoError(t, err)
	pid, err := os.ReadFile(filepath.Join(home, guestPIDFile))
	must.NoError(t, err)
	want := "value|line1\nline2|" + `a\nb\\c\` + `|it's "quoted" $HOME ${X} $(false)||payload` + "\nline two|" + string(bytes.TrimSpace(pid)) + "\n"
	must.Eq(t, want, string(out))
}

func Test_envBlock(t *testing.T) {
	t.Parallel()
	must.Eq(t, "A=1\\n2\nB=x\\\\y\n.\n", string(envBlock(map[string]string{"B": `x\y`, "A": "1\n2", "1X": "no", "a-b": "no"})))
}

func Test_versionAtLeast(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]bool{"2.32.1": true, "2.27.0": true, "2.26.9": false, "1.9.0": false, "3.0": true, "SNAPSHOT": true, "v2.28.0": true} {
		must.Eq(t, want, versionAtLeast(v, minTartVersion), must.Sprint(v))
	}
}

func Test_confined(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	outside := t.TempDir()
	must.NoError(t, os.MkdirAll(filepath.Join(base, "local"), 0o755))
	must.NoError(t, os.WriteFile(filepath.Join(base, "local", "ok"), nil, 0o600))
	must.NoError(t, os.Symlink(outside, filepath.Join(base, "local", "escape")))
	_, err := confined(base, "local/ok")
	must.NoError(t, err)
	_, err = confined(base, "local/escape")
	must.ErrorContains(t, err, "leaves the task directory")
	_, err = confined(base, "../x")
	must.ErrorContains(t, err, "leaves the task directory")
	_, err = confined(base, "local/missing")
	must.ErrorContains(t, err, "does not exist")
}

// Test_signalArgv_exitedCommandIsQuiet runs the signal script with the
// host's /bin/sh against the PID file of a command that has already exited:
// stopping a task whose command just ended is normal, so the script
// succeeds without a word (it used to fail with "kill: No such process",
// which the driver logged as a WARN). A live command still gets the signal.
func Test_signalArgv_exitedCommandIsQuiet(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	gone := exec.Command("/bin/sh", "-c", "exit 0")
	must.NoError(t, gone.Run())
	must.NoError(t, os.WriteFile(filepath.Join(home, guestPIDFile), []byte(strconv.Itoa(gone.Process.Pid)+"\n"), 0o600))
	run := func() (string, error) {
		argv := signalArgv("TERM")
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = []string{"HOME=" + home, "PATH=/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run()
	must.NoError(t, err, must.Sprint(out))
	must.Eq(t, "", out)

	live := exec.Command("/bin/sh", "-c", "trap 'exit 5' TERM; echo ready; while :; do sleep 0.05; done")
	stdout, err := live.StdoutPipe()
	must.NoError(t, err)
	must.NoError(t, live.Start())
	t.Cleanup(func() { _ = live.Process.Kill(); _ = live.Wait() })
	// Signal only once the trap is set.
	line, err := bufio.NewReader(stdout).ReadString('\n')
	must.NoError(t, err)
	must.Eq(t, "ready\n", line)
	must.NoError(t, os.WriteFile(filepath.Join(home, guestPIDFile), []byte(strconv.Itoa(live.Process.Pid)+"\n"), 0o600))
	out, err = run()
	must.NoError(t, err, must.Sprint(out))
	err = live.Wait()
	var ee *exec.ExitError
	must.True(t, errors.As(err, &ee))
	must.Eq(t, 5, ee.ExitCode())
}
