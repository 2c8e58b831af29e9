// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package harness

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	driverpb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/drivers"
)

// hostEnvDenylist mirrors the default of the client option env.denylist:
// credentials of the agent never reach tasks.
var hostEnvDenylist = map[string]bool{
	"CONSUL_TOKEN": true, "CONSUL_HTTP_TOKEN": true, "CONSUL_HTTP_TOKEN_FILE": true,
	"NOMAD_TOKEN": true, "VAULT_TOKEN": true,
	"AWS_ACCESS_KEY_ID": true, "AWS_SECRET_ACCESS_KEY": true, "AWS_SESSION_TOKEN": true,
	"GOOGLE_APPLICATION_CREDENTIALS": true,
}

// envInput is what the task environment is computed from.
type envInput struct {
	spec     *TaskSpec
	allocID  string
	dirs     allocDirs
	fs       driverpb.DriverCapabilities_FSIsolation
	nodeID   string
	nodeName string
	hostEnv  bool
}

// buildTaskEnv returns TaskConfig.env as Nomad's client computes it for a
// third-party driver: host environment (unless the driver isolates with an
// image), the job's env, and the NOMAD_* variables, which win.
func buildTaskEnv(in envInput) map[string]string {
	env := map[string]string{}
	if in.hostEnv && in.fs != driverpb.DriverCapabilities_IMAGE {
		for _, kv := range os.Environ() {
			k, v, ok := strings.Cut(kv, "=")
			if ok && !hostEnvDenylist[k] {
				env[k] = v
			}
		}
	}
	for k, v := range in.spec.Env {
		env[k] = v
	}
	s := in.spec
	allocDir, taskDir, secretsDir := taskDirVars(in)
	nomad := map[string]string{
		"NOMAD_ALLOC_DIR":      allocDir,
		"NOMAD_TASK_DIR":       taskDir,
		"NOMAD_SECRETS_DIR":    secretsDir,
		"NOMAD_ALLOC_ID":       in.allocID,
		"NOMAD_SHORT_ALLOC_ID": in.allocID[:8],
		"NOMAD_ALLOC_NAME":     s.JobName + "." + s.Group + "[0]",
		"NOMAD_ALLOC_INDEX":    "0",
		"NOMAD_TASK_NAME":      s.Name,
		"NOMAD_GROUP_NAME":     s.Group,
		"NOMAD_JOB_NAME":       s.JobName,
		"NOMAD_JOB_ID":         s.JobID,
		"NOMAD_NAMESPACE":      s.Namespace,
		"NOMAD_REGION":         "global",
		"NOMAD_DC":             "dc1",
		"NOMAD_NODE_ID":        in.nodeID,
		"NOMAD_NODE_NAME":      in.nodeName,
		"NOMAD_CPU_LIMIT":      strconv.FormatInt(s.CPU, 10),
		"NOMAD_MEMORY_LIMIT":   strconv.FormatInt(s.MemoryMB, 10),
	}
	if s.MemoryMaxMB > 0 {
		nomad["NOMAD_MEMORY_MAX_LIMIT"] = strconv.FormatInt(s.MemoryMaxMB, 10)
	}
	if s.ParentJobID != "" {
		nomad["NOMAD_JOB_PARENT_ID"] = s.ParentJobID
	}
	for k, v := range s.Meta {
		nomad["NOMAD_META_"+k] = v
	}
	for _, p := range s.Ports {
		ip := p.HostIP
		if ip == "" {
			ip = "127.0.0.1"
		}
		to := p.To
		if to == 0 {
			to = p.Value
		}
		port := strconv.Itoa(int(p.Value))
		nomad["NOMAD_IP_"+p.Label] = ip
		nomad["NOMAD_HOST_PORT_"+p.Label] = port
		nomad["NOMAD_PORT_"+p.Label] = strconv.Itoa(int(to))
		nomad["NOMAD_ALLOC_PORT_"+p.Label] = strconv.Itoa(int(to))
		nomad["NOMAD_ADDR_"+p.Label] = ip + ":" + port
		nomad["NOMAD_HOST_ADDR_"+p.Label] = ip + ":" + port
	}
	for k, v := range nomad {
		env[k] = v
	}
	return env
}

// taskDirVars returns NOMAD_ALLOC_DIR, NOMAD_TASK_DIR and NOMAD_SECRETS_DIR
// for the driver's filesystem isolation (reference 3.5).
func taskDirVars(in envInput) (allocDir, taskDir, secretsDir string) {
	switch in.fs {
	case driverpb.DriverCapabilities_CHROOT, driverpb.DriverCapabilities_IMAGE:
		return "/alloc", "/local", "/secrets"
	default:
		return in.dirs.shared, filepath.Join(in.dirs.taskDir, "local"), filepath.Join(in.dirs.taskDir, "secrets")
	}
}
