// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package dockerexec

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoenig/test/must"
)

// Test_wrapperScript runs the file-delivery wrapper with the host's sh: the
// runner command must see the JIT config in its environment (and not in its
// arguments), and the file must be empty afterwards; a second run refuses.
func Test_wrapperScript(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	file := filepath.Join(t.TempDir(), "jit")
	const jit = "eyJzZWNyZXQiOiJ4In0="
	must.NoError(t, os.WriteFile(file, []byte(jit+"\n"), 0o600))

	// "$@" is the runner command: print its env var and its argv.
	run := func() (string, int) {
		cmd := exec.Command("/bin/sh", "-c", wrapperScript(file), "nomad-gha-runner",
			"/bin/sh", "-c", `echo "env=$`+JITConfigEnv+`"; echo "args=$*"`, "runner", "--arg")
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		must.NoError(t, err)
		return string(out), 0
	}
	out, code := run()
	must.EqOp(t, 0, code)
	must.StrContains(t, out, "env="+jit+"\n")
	must.StrContains(t, out, "args=--arg\n")
	left, err := os.ReadFile(file)
	must.NoError(t, err)
	must.SliceEmpty(t, left)

	out, code = run()
	must.EqOp(t, 78, code)
	must.StrContains(t, out, "no JIT config")
	must.False(t, strings.Contains(out, jit))
}

func Test_jitConfigTar(t *testing.T) {
	t.Parallel()
	b, err := jitConfigTar(".jit", "secret", owner{uid: 1001, gid: 121})
	must.NoError(t, err)
	tr := tar.NewReader(bytes.NewReader(b))
	hdr, err := tr.Next()
	must.NoError(t, err)
	must.EqOp(t, ".jit", hdr.Name)
	must.EqOp(t, int64(0o600), hdr.Mode)
	must.EqOp(t, 1001, hdr.Uid)
	must.EqOp(t, 121, hdr.Gid)
	body, err := io.ReadAll(tr)
	must.NoError(t, err)
	must.EqOp(t, "secret\n", string(body))
	_, err = tr.Next()
	must.ErrorIs(t, err, io.EOF)
}
