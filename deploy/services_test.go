// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package deploy_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/scaleset/cli"
	"github.com/tartnomad/nomad-driver-tart/scaleset/config"
	"github.com/tartnomad/nomad-driver-tart/scaleset/service"
)

const (
	scalesetBin         = "/usr/local/bin/nomad-gha-scaleset"
	macScalesetConfig   = "/usr/local/etc/nomad-gha-scaleset/scaleset.hcl"
	linuxScalesetConfig = "/etc/nomad-gha-scaleset/scaleset.hcl"
)

func readDeploy(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), "deploy", rel))
	must.NoError(t, err)
	return b
}

func plistDict(t *testing.T, rel string) map[string]any {
	t.Helper()
	v, err := parsePlist(readDeploy(t, rel))
	must.NoError(t, err, must.Sprintf("parse %s", rel))
	d, ok := v.(map[string]any)
	must.True(t, ok, must.Sprintf("%s: top level is %T, want a dict", rel, v))
	return d
}

func strs(t *testing.T, v any) []string {
	t.Helper()
	arr, ok := v.([]any)
	must.True(t, ok, must.Sprintf("%v is %T, want an array", v, v))
	out := make([]string, len(arr))
	for i, e := range arr {
		s, ok := e.(string)
		must.True(t, ok, must.Sprintf("array element %v is %T", e, e))
		out[i] = s
	}
	return out
}

// scalesetFlags returns the flags `nomad-gha-scaleset <command>` really
// accepts, read from its --help output, and the environment variables the
// help names.
func scalesetFlags(t *testing.T, command string) (flags, env []string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Main(context.Background(), []string{command, "--help"}, &out, &errb)
	must.Eq(t, 0, code, must.Sprint("--help prints the usage and exits 0 (issue 13)"))
	help := out.String() + errb.String()
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z][a-z0-9-]*)`).FindAllStringSubmatch(help, -1) {
		flags = append(flags, m[1])
	}
	env = regexp.MustCompile(config.EnvPrefix+`[A-Z_]+`).FindAllString(help, -1)
	must.SliceNotEmpty(t, flags, must.Sprint(help))
	return flags, env
}

// checkScalesetArgs checks argv against the real flag set: binary, the run
// command, every --flag known, and --config at configPath.
func checkScalesetArgs(t *testing.T, argv []string, configPath string) {
	t.Helper()
	must.Eq(t, scalesetBin, argv[0])
	must.Eq(t, "run", argv[1])
	flags, _ := scalesetFlags(t, "run")
	var cfg string
	for i := 2; i < len(argv); i++ {
		a := argv[i]
		must.StrHasPrefix(t, "-", a, must.Sprintf("positional argument %q after run", a))
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		must.SliceContains(t, flags, name, must.Sprintf("flag %q is not a flag of run", a))
		if !hasVal {
			i++
			must.Less(t, len(argv), i, must.Sprintf("flag %q has no value", a))
			val = argv[i]
		}
		if name == "config" {
			cfg = val
		}
	}
	must.Eq(t, configPath, cfg)
}

func checkEnv(t *testing.T, env map[string]string) {
	t.Helper()
	_, known := scalesetFlags(t, "run")
	for k := range env {
		if strings.HasPrefix(k, config.EnvPrefix) {
			must.SliceContains(t, known, k, must.Sprintf("%s is not read by run", k))
		}
	}
}

func envDict(t *testing.T, d map[string]any) map[string]string {
	t.Helper()
	raw, ok := d["EnvironmentVariables"].(map[string]any)
	must.True(t, ok, must.Sprint("EnvironmentVariables is not a dict"))
	out := map[string]string{}
	for k, v := range raw {
		s, ok := v.(string)
		must.True(t, ok, must.Sprintf("EnvironmentVariables.%s is %T", k, v))
		out[k] = s
	}
	return out
}

// checkLaunchAgent checks what both LaunchAgents need: the GUI session Tart
// needs, restarts, log files, and tart on PATH.
func checkLaunchAgent(t *testing.T, rel string, d map[string]any) {
	t.Helper()
	must.Eq(t, strings.TrimSuffix(path.Base(rel), ".plist"), d["Label"].(string), must.Sprint("Label matches the file name (launchctl bootout gui/$UID/<label>)"))
	must.Eq(t, "Aqua", d["LimitLoadToSessionType"].(string), must.Sprint("Tart needs the GUI user's session"))
	must.Eq(t, true, d["KeepAlive"].(bool))
	must.Eq(t, true, d["RunAtLoad"].(bool))
	for _, k := range []string{"StandardOutPath", "StandardErrorPath"} {
		p, ok := d[k].(string)
		must.True(t, ok, must.Sprintf("%s missing", k))
		must.True(t, filepath.IsAbs(p) && strings.HasSuffix(p, ".log"), must.Sprintf("%s = %q", k, p))
	}
	_, hasUser := d["UserName"]
	must.False(t, hasUser, must.Sprint("a LaunchAgent runs as the user who loads it; UserName is for daemons"))
	env := envDict(t, d)
	must.SliceContains(t, filepath.SplitList(env["PATH"]), "/opt/homebrew/bin", must.Sprint("Homebrew's tart"))
}

func TestLaunchd_nomadClient(t *testing.T) {
	const rel = "launchd/io.github.tartnomad.nomad-client.plist"
	d := plistDict(t, rel)
	checkLaunchAgent(t, rel, d)
	argv := strs(t, d["ProgramArguments"])
	must.Eq(t, []string{"/usr/local/bin/nomad", "agent", "-config=/usr/local/etc/nomad.d"}, argv)

	// The arguments against the real nomad agent when one is installed
	// (NOMAD_BIN, or nomad on PATH).
	nomad := os.Getenv("NOMAD_BIN")
	if nomad == "" {
		nomad, _ = exec.LookPath("nomad")
	}
	if nomad == "" {
		t.Log("no nomad binary (NOMAD_BIN): agent flags not checked against it")
		return
	}
	out, _ := exec.Command(nomad, "agent", "-h").CombinedOutput()
	for _, a := range argv[2:] {
		name, _, _ := strings.Cut(a, "=")
		must.StrContains(t, string(out), "\n  "+name+"=", must.Sprintf("nomad agent has no flag %s", name))
	}
}

func TestLaunchd_scalesetOnMac(t *testing.T) {
	const rel = "launchd/io.github.tartnomad.nomad-gha-scaleset.plist"
	d := plistDict(t, rel)
	checkLaunchAgent(t, rel, d)
	checkScalesetArgs(t, strs(t, d["ProgramArguments"]), macScalesetConfig)
	checkEnv(t, envDict(t, d))
	exit, ok := d["ExitTimeOut"].(int64)
	must.True(t, ok)
	must.Greater(t, int64(config.DefaultShutdownTimeout.Seconds()), exit, must.Sprint("launchd must wait for the graceful shutdown"))
}

func TestSystemd_scalesetOnLinux(t *testing.T) {
	u, err := parseUnit(bytes.NewReader(readDeploy(t, "systemd/nomad-gha-scaleset.service")))
	must.NoError(t, err)

	checkScalesetArgs(t, strings.Fields(u.last("Service", "ExecStart")), linuxScalesetConfig)
	env := map[string]string{}
	for _, e := range u.get("Service", "Environment") {
		k, v, _ := strings.Cut(e, "=")
		env[k] = v
	}
	checkEnv(t, env)

	// A user of its own, in the group that owns the engine socket.
	must.NotEq(t, "", u.last("Service", "User"))
	must.NotEq(t, "root", u.last("Service", "User"))
	must.SliceContains(t, strings.Fields(strings.Join(u.get("Service", "SupplementaryGroups"), " ")), "docker")
	must.StrContains(t, u.last("Unit", "After"), "docker.service")
	must.Eq(t, "always", u.last("Service", "Restart"))
	// The start journals need a writable directory under
	// ProtectSystem=strict and ProtectHome: systemd's StateDirectory,
	// which it hands over as $STATE_DIRECTORY, the default state_dir.
	sd := u.last("Service", "StateDirectory")
	must.NotEq(t, "", sd)
	must.Eq(t, "/var/lib/"+sd, config.DefaultStateDir(func(k string) string {
		if k == "STATE_DIRECTORY" {
			return "/var/lib/" + sd
		}
		return "/home/x"
	}))
	must.Eq(t, "0700", u.last("Service", "StateDirectoryMode"))

	// Hardening that still lets it reach /run/docker.sock and GitHub.
	for k, want := range map[string]string{
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"RestrictSUIDSGID": "yes", "CapabilityBoundingSet": "",
	} {
		must.Eq(t, want, u.last("Service", k), must.Sprintf("%s", k))
	}
	families := strings.Fields(u.last("Service", "RestrictAddressFamilies"))
	for _, f := range []string{"AF_UNIX", "AF_INET", "AF_INET6"} {
		must.SliceContains(t, families, f)
	}
	must.NotEq(t, "yes", u.last("Service", "PrivateNetwork"), must.Sprint("GitHub must stay reachable"))
	for _, f := range u.get("Service", "SystemCallFilter") {
		if strings.HasPrefix(f, "~") {
			must.SliceNotContains(t, strings.Fields(strings.TrimPrefix(f, "~")), "@resources",
				must.Sprint("the Go runtime calls setrlimit at start; denying @resources kills it"))
		}
	}
	must.Eq(t, "EPERM", u.last("Service", "SystemCallErrorNumber"), must.Sprint("a filtered call must fail, not kill the service"))
	must.NotEq(t, "yes", u.last("Service", "PrivateUsers"), must.Sprint("would unmap the docker group"))
	for _, k := range []string{"InaccessiblePaths", "TemporaryFileSystem"} {
		for _, p := range u.get("Service", k) {
			for _, sock := range []string{"/run/docker.sock", "/var/run/docker.sock"} {
				// p hides the socket when the socket is p or lies under it
				must.False(t, strings.HasPrefix(sock, strings.TrimPrefix(p, "-")), must.Sprintf("%s=%s hides the socket", k, p))
			}
		}
	}
	// Stop waits for the graceful shutdown.
	must.Eq(t, "45s", u.last("Service", "TimeoutStopSec"))
	must.Greater(t, config.DefaultShutdownTimeout.Seconds(), 45.0)
	must.Eq(t, "multi-user.target", u.last("Install", "WantedBy"))

	// systemd's own checker, where there is one (not required: CI images
	// and containers often have no systemd).
	if sa, err := exec.LookPath("systemd-analyze"); err == nil {
		out, err := exec.Command(sa, "verify", "--man=no", filepath.Join(testutil.RepoRoot(t), "deploy", "systemd", "nomad-gha-scaleset.service")).CombinedOutput()
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if strings.Contains(line, "Unknown key") || strings.Contains(line, "Unknown section") || strings.Contains(line, "Failed to parse") {
				t.Errorf("systemd-analyze verify: %s", line)
			}
		}
		t.Logf("systemd-analyze verify (err=%v):\n%s", err, out)
	}
}

// TestConfigs_validate: the example configs the service definitions point
// at parse and validate (with a generated key, since the files name paths
// on the target host).
func TestConfigs_validate(t *testing.T) {
	for _, tc := range []struct{ file, backend string }{
		{"config/scaleset-tart.hcl", config.BackendTart},
		{"config/scaleset-docker.hcl", config.BackendDocker},
	} {
		t.Run(tc.file, func(t *testing.T) {
			c, err := config.Parse(readDeploy(t, tc.file), tc.file)
			must.NoError(t, err)
			must.NotNil(t, c.GitHubApp)
			c.GitHubApp.PrivateKey = config.Secret(testutil.RSAPrivateKeyPEM(t))
			must.NoError(t, c.Validate())
			must.NoError(t, service.ValidateBackends(c))
			must.Len(t, 1, c.ScaleSets)
			must.Eq(t, tc.backend, c.ScaleSets[0].Backend)
		})
	}
}

// TestReadme_referencesEveryFile: the README's Install section names every
// file under deploy/ that an operator installs.
func TestReadme_referencesEveryFile(t *testing.T) {
	root := testutil.RepoRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	must.NoError(t, err)
	_, install, ok := strings.Cut(string(readme), "\n## Install")
	must.True(t, ok, must.Sprint("README has no ## Install section"))
	var files []string
	must.NoError(t, filepath.WalkDir(filepath.Join(root, "deploy"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, ".go") {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		files = append(files, filepath.ToSlash(rel))
		return nil
	}))
	must.SliceNotEmpty(t, files)
	slices.Sort(files)
	for _, f := range files {
		must.StrContains(t, install, f, must.Sprintf("README Install does not mention %s", f))
	}
}
