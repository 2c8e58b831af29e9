// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package supervisor

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/tart"
)

// ftVM boots a Linux VM on faketart in a private TART_HOME and returns the
// client and the VM name; the VM is deleted at cleanup.
func ftVM(t *testing.T) (*tart.Client, string) {
	t.Helper()
	bin := testutil.BuildBinary(t, "./sim/cmd/faketart")
	home := t.TempDir()
	c := tart.NewClient(tart.WithBinary(bin), tart.WithHome(home), tart.WithEnv("FAKETART_BOOT_DELAY=20ms"))
	create := exec.Command(bin, "create", "--linux", "base")
	create.Env = append(os.Environ(), "TART_HOME="+home)
	out, err := create.CombinedOutput()
	must.NoError(t, err, must.Sprint(string(out)))
	ctx := t.Context()
	must.NoError(t, c.Clone(ctx, "base", "vm1"))
	t.Cleanup(func() {
		_ = c.Destroy(context.Background(), "vm1", time.Second)
		testutil.AssertCensusEmpty(t, testutil.CensusScope{TartHome: home, KeepVMs: []string{"base"}}, 10*time.Second)
	})
	h, err := c.Run(ctx, "vm1", tart.RunOptions{Detached: true})
	must.NoError(t, err)
	must.NoError(t, c.WaitReady(ctx, "vm1", tart.ReadyOptions{Interval: 20 * time.Millisecond, Run: h}))
	return c, "vm1"
}

func ftSpec(c *tart.Client, vm, out string, argv ...string) Spec {
	return Spec{TartPath: c.Binary(), TartEnv: c.Environ(), VM: vm, Argv: argv, StdoutPath: out, StderrPath: out, CreateOutput: true}
}

// TestFaketart_exitCodeAndTartFailure runs guest commands in a faketart VM:
// the guest's exit code and stdin pass through, and once the VM is stopped
// the record says tart failed rather than reporting a guest exit code.
func TestFaketart_exitCodeAndTartFailure(t *testing.T) {
	c, vm := ftVM(t)
	out := filepath.Join(t.TempDir(), "out")
	dir := filepath.Join(t.TempDir(), "s1")
	h, err := Start(t.Context(), StartOptions{Dir: dir, Spec: ftSpec(c, vm, out, "/bin/sh", "-c", "cat; exit 7"), Stdin: []byte("from-stdin")})
	must.NoError(t, err)
	st, err := h.Wait(t.Context())
	must.NoError(t, err)
	must.Eq(t, 7, st.Exit.ExitCode)
	must.Eq(t, "", st.Exit.Err)
	b, _ := os.ReadFile(out)
	must.StrContains(t, string(b), "from-stdin")

	must.NoError(t, c.Stop(t.Context(), vm, 2*time.Second))
	dir2 := filepath.Join(t.TempDir(), "s2")
	h, err = Start(t.Context(), StartOptions{Dir: dir2, Spec: ftSpec(c, vm, out, "true")})
	must.NoError(t, err)
	st, err = h.Wait(t.Context())
	must.NoError(t, err)
	must.StrContains(t, st.Exit.Err, "vm1")
}

// helperStartAndHang is the child side of TestFaketart_adoptedAfterParentSIGKILL:
// it starts a supervisor, prints its directory and waits to be killed.
func helperStartAndHang() {
	var spec Spec
	spec.TartPath, spec.VM = os.Getenv("HELPER_TART"), "vm1"
	spec.TartEnv = strings.Split(os.Getenv("HELPER_TART_ENV"), "\n")
	spec.Argv = []string{"/bin/sh", "-c", "echo started; exec sleep 60"}
	spec.StdoutPath, spec.StderrPath, spec.CreateOutput = os.Getenv("HELPER_OUT"), os.Getenv("HELPER_OUT"), true
	if _, err := Start(context.Background(), StartOptions{Dir: os.Getenv("HELPER_DIR"), Spec: spec}); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("ok")
	select {}
}

// TestFaketart_adoptedAfterParentSIGKILL: the process that started a
// supervisor is SIGKILLed; another process adopts the supervisor by its
// directory, sees it running, kills its command, and reads the record.
// Nothing of it is left (the cleanup's census).
func TestFaketart_adoptedAfterParentSIGKILL(t *testing.T) {
	c, _ := ftVM(t)
	dir := filepath.Join(t.TempDir(), "s")
	out := filepath.Join(t.TempDir(), "out")
	helper := exec.Command(os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(), "SUPERVISOR_TEST_HELPER=start-and-hang", "HELPER_TART="+c.Binary(),
		"HELPER_TART_ENV="+strings.Join(c.Environ(), "\n"), "HELPER_DIR="+dir, "HELPER_OUT="+out)
	stdout, err := helper.StdoutPipe()
	must.NoError(t, err)
	must.NoError(t, helper.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	must.NoError(t, err)
	must.Eq(t, "ok\n", line)
	must.NoError(t, helper.Process.Kill())
	_ = helper.Wait()

	st, err := Check(dir)
	must.NoError(t, err)
	must.True(t, st.Running, must.Sprint("the supervisor outlives its parent"))
	must.NoError(t, Kill(dir))
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	st, err = Adopt(dir).Wait(ctx)
	must.NoError(t, err)
	must.True(t, st.Exit.Killed)
}
