// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package faketart_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/shoenig/test/must"
)

// TestFaketart_Fidelity checks exit codes and message shapes against the
// reference (tart-cli.md), one case per documented behaviour, named after
// the section that documents it.
func TestFaketart_Fidelity(t *testing.T) {
	e := newEnv(t)
	e.seedVM("lin", "linux")
	e.seedVM("mac", "darwin")
	// A directory missing disk.img and nvram.bin is not a VM.
	must.NoError(t, os.MkdirAll(filepath.Join(e.home, "vms", "partial"), 0o755))
	must.NoError(t, os.WriteFile(filepath.Join(e.home, "vms", "partial", "config.json"), []byte("{}"), 0o644))
	usage := func(cmd string) string {
		return `(?s)\nUsage: tart ` + cmd + ` .*\n  See 'tart ` + cmd + ` --help' for more information\.\n$`
	}
	cases := []struct {
		name       string
		args       []string
		env        map[string]string
		wantCode   int
		wantStderr string // regexp, anchored by the case when needed
		wantStdout string // exact
	}{
		{name: "0_version", args: []string{"--version"}, wantStdout: "2.32.1\n"},
		{name: "1.2_run_missing_vm_is_exit_1_with_prefix", args: []string{"run", "nope"}, wantCode: 1,
			wantStderr: `^Error: the specified VM "nope" does not exist\n$`},
		{name: "1.3_get_missing_vm_is_bare_exit_2", args: []string{"get", "nope"}, wantCode: 2,
			wantStderr: `^the specified VM "nope" does not exist\n$`},
		{name: "1.3_stop_missing_vm", args: []string{"stop", "nope"}, wantCode: 2, wantStderr: `^the specified VM "nope" does not exist\n$`},
		{name: "1.3_ip_missing_vm", args: []string{"ip", "nope"}, wantCode: 2, wantStderr: `^the specified VM "nope" does not exist\n$`},
		{name: "1.3_exec_missing_vm", args: []string{"exec", "nope", "true"}, wantCode: 2, wantStderr: `^the specified VM "nope" does not exist\n$`},
		{name: "1.3_set_missing_vm", args: []string{"set", "nope", "--cpu", "2"}, wantCode: 2, wantStderr: `^the specified VM "nope" does not exist\n$`},
		{name: "1.3_delete_missing_vm", args: []string{"delete", "nope"}, wantCode: 2, wantStderr: `^the specified VM "nope" does not exist\n$`},
		{name: "1.3_validation_unknown_option", args: []string{"get", "lin", "--bogus"}, wantCode: 64,
			wantStderr: `^Error: Unknown option '--bogus'` + usage("get")},
		{name: "1.3_validation_missing_argument", args: []string{"stop"}, wantCode: 64,
			wantStderr: `^Error: Missing expected argument '<name>'` + usage("stop")},
		{name: "1.3_validation_bad_value", args: []string{"set", "lin", "--cpu", "many"}, wantCode: 64,
			wantStderr: `^Error: The value 'many' is invalid for '--cpu <cpu>'` + usage("set")},
		{name: "1.5_remote_name_is_not_a_local_vm", args: []string{"get", "ghcr.io/x/y:latest"}, wantCode: 2,
			wantStderr: `^the specified VM "ghcr.io/x/y:latest" does not exist\n$`},
		{name: "3.1_clone_missing_source", args: []string{"clone", "nope", "x"}, wantCode: 2,
			wantStderr: `^the specified VM "nope" does not exist\n$`},
		{name: "3.1_clone_new_name_must_be_local", args: []string{"clone", "lin", "a/b"}, wantCode: 64,
			wantStderr: `^Error: <new-name> should be a local name` + usage("clone")},
		{name: "3.1_clone_registry_404", args: []string{"clone", "ghcr.io/x/missing:1", "x"}, wantCode: 1,
			wantStderr: `^Error: UnexpectedHTTPStatusCode\(when: "pulling manifest", code: 404, .*\)\n$`,
			wantStdout: "pulling ghcr.io/x/missing:1...\npulling manifest...\n"},
		{name: "3.2_pull_local_image", args: []string{"pull", "lin"}, wantStdout: "\"lin\" is a local image, nothing to pull here!\n"},
		{name: "3.3_set_below_min_cpu", args: []string{"set", "mac", "--cpu", "2"}, wantCode: 1,
			wantStderr: `^VM should have 4 CPU cores at minimum \(requested 2\)\n$`},
		{name: "3.3_set_disk_shrink", args: []string{"set", "lin", "--disk-size", "10"}, wantCode: 1,
			wantStderr: `^new disk size of 10GB should be larger than the current disk size of 20GB\n$`},
		{name: "3.5_list_bad_source", args: []string{"list", "--source", "LOCAL"}, wantCode: 64,
			wantStderr: `^Error: 'LOCAL' is not a valid <source>` + usage("list")},
		{name: "3.6_run_network_modes_exclusive", args: []string{"run", "lin", "--net-softnet", "--net-host"}, wantCode: 64,
			wantStderr: `^Error: --net-bridged, --net-softnet and --net-host are mutually exclusive` + usage("run")},
		{name: "3.6_run_softnet_allow_implies_softnet", args: []string{"run", "lin", "--net-softnet-allow", "10.0.0.0/8", "--net-bridged", "en0"},
			wantCode: 64, wantStderr: `mutually exclusive`},
		{name: "3.6_run_suspendable_linux", args: []string{"run", "lin", "--suspendable"}, wantCode: 64,
			wantStderr: `^Error: You can only suspend macOS VMs` + usage("run")},
		{name: "3.6_run_dir_unnamed_duplicates", args: []string{"run", "lin", "--dir", "/tmp", "--dir", "/var"}, wantCode: 64,
			wantStderr: `^Error: invalid --dir syntax: for multiple directory shares each one of them should be named`},
		{name: "4.4_run_softnet_missing", args: []string{"run", "lin", "--net-softnet"}, env: map[string]string{"FAKETART_SOFTNET_MISSING": "1"},
			wantCode: 1, wantStderr: `softnet not found in PATH`},
		{name: "3.7_ip_stopped_vm", args: []string{"ip", "lin"}, wantCode: 1, wantStderr: `^no IP address found, is your VM running\?\n$`},
		{name: "3.7_ip_agent_resolver", args: []string{"ip", "lin", "--resolver", "agent"}, wantCode: 1,
			wantStderr: `^no IP address found, is your VM running\? \(also make sure that Guest agent for Tart is running inside of a VM\)\n$`},
		{name: "3.7_ip_arp_linux", args: []string{"ip", "lin", "--resolver", "arp"}, wantCode: 1,
			wantStderr: `^no IP address found, is your VM running\? \(not all Linux distributions are compatible with the ARP resolver\)\n$`},
		{name: "3.8_exec_not_running", args: []string{"exec", "lin", "true"}, wantCode: 2, wantStderr: `^VM "lin" is not running\n$`},
		{name: "3.8_exec_needs_command", args: []string{"exec", "lin"}, wantCode: 64, wantStderr: `^Error: Missing expected argument`},
		{name: "3.9_stop_not_running", args: []string{"stop", "lin"}, wantCode: 2, wantStderr: `^VM "lin" is not running\n$`},
		{name: "3.10_suspend_not_running_double_wrapped", args: []string{"suspend", "mac"}, wantCode: 2,
			wantStderr: `^VM "VM "mac" is not running" is not running\n$`},
		{name: "3.12_prune_needs_criteria", args: []string{"prune"}, wantCode: 64,
			wantStderr: `^Error: at least one pruning criteria must be specified` + usage("prune")},
		{name: "2_partial_vm_directory", args: []string{"get", "partial"}, wantCode: 1,
			wantStderr: `^VM is missing some of its files \(config.json, disk.img or nvram.bin\)\n$`},
		{name: "3.13_rename_missing_source", args: []string{"rename", "nope", "x"}, wantCode: 64, wantStderr: `^Error: the specified VM "nope" does not exist`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			saved := map[string]string{}
			for k, v := range tc.env {
				saved[k] = e.vars[k]
				e.vars[k] = v
			}
			t.Cleanup(func() {
				for k, v := range saved {
					if v == "" {
						delete(e.vars, k)
					} else {
						e.vars[k] = v
					}
				}
			})
			r := e.tart(tc.args...)
			must.Eq(t, tc.wantCode, r.code, must.Sprintf("stderr=%q", r.stderr))
			if tc.wantStderr == "" {
				must.Eq(t, "", r.stderr)
			} else {
				must.RegexMatch(t, regexp.MustCompile(tc.wantStderr), r.stderr)
			}
			if tc.wantStdout != "" || tc.wantCode != 0 {
				must.Eq(t, tc.wantStdout, r.stdout)
			}
		})
	}
	// No case above may have created or changed VMs.
	must.Eq(t, "lin\nmac\n", e.ok("list", "-q"))
	must.True(t, !strings.Contains(e.ok("list"), "running"))
}
