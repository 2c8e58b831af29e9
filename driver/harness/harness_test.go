// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package harness_test

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/shoenig/test/must"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tartnomad/nomad-driver-tart/driver/harness"
	"github.com/tartnomad/nomad-driver-tart/driver/harness/internal/testdriver"
	driverpb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/drivers"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk/hclspec"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.CleanupBuilds()
	os.Exit(code)
}

const testdriverPkg = "./driver/harness/internal/testdriver/cmd/testdriver"

// launch starts the test driver binary.
func launch(t *testing.T, opts harness.Options) *harness.Harness {
	t.Helper()
	return harness.Launch(t, testutil.BuildBinary(t, testdriverPkg), opts)
}

// inProcess serves the test driver inside the test process; its tasks still
// run under the built binary's wrapper.
func inProcess(t *testing.T, opts harness.Options) *harness.Harness {
	t.Helper()
	bin := testutil.BuildBinary(t, testdriverPkg)
	return harness.InProcess(t, func(l hclog.Logger) sdk.Driver {
		return testdriver.New(l, testdriver.Options{WrapperPath: bin})
	}, opts)
}

// shTask is a task running a shell script.
func shTask(script string) harness.TaskSpec {
	return harness.TaskSpec{Config: `
command = "/bin/sh"
args    = ["-c", ` + quote(script) + `]
`}
}

// quote makes an HCL string literal for a job file; "${" is escaped twice
// (job parser, then client) so that the shell sees it.
func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "${", "$$${")
	return `"` + r.Replace(s) + `"`
}

func TestHarness_Launch_clientStartSequence(t *testing.T) {
	t.Parallel()
	h := launch(t, harness.Options{PluginConfig: `greeting = "hi there"`, ClientMinPort: 15000})

	info := h.PluginInfo(t)
	must.Eq(t, testdriver.Name, info.Name)
	must.SliceContains(t, info.APIVersions, "v0.1.0")
	must.Positive(t, h.PID(t))

	fp := h.WaitFingerprint(t, func(fp *harness.Fingerprint) bool { return fp.Healthy })
	must.True(t, fp.Detected)
	must.Eq(t, "ready", fp.HealthDescription)
	// Plugin config HCL -> msgpack -> SetConfig -> fingerprint.
	must.Eq(t, "hi there", fp.Attributes["driver.testdriver.greeting"])
	// nomad_config reached the long-lived process.
	must.Eq(t, "15000", fp.Attributes["driver.testdriver.client_min_port"])
}

func TestHarness_Launch_defaultsAndFullAgentStart(t *testing.T) {
	t.Parallel()
	h := launch(t, harness.Options{FullAgentStart: true})
	fp := h.LastFingerprint(t)
	must.Eq(t, "hello", fp.Attributes["driver.testdriver.greeting"])
}

func TestHarness_Launch_badPluginConfigFailsLikeTheAgent(t *testing.T) {
	t.Parallel()
	bin := testutil.BuildBinary(t, testdriverPkg)
	ft := &fakeT{TB: t}
	runFatal(func() { harness.Launch(ft, bin, harness.Options{PluginConfig: `nope = 1`}) })
	must.True(t, ft.failed)
	must.StrContains(t, ft.msg, "the agent would refuse to start")
	must.StrContains(t, ft.msg, `"nope"`)
}

func TestHarness_StartTask_logsExitCodeAndEvents(t *testing.T) {
	t.Parallel()
	h := launch(t, harness.Options{})
	task := h.StartTask(t, shTask(`echo out; echo err >&2; exit 3`))

	must.RegexMatch(t, regexp.MustCompile(`^[0-9a-f-]{36}/task/[0-9a-f]{8}$`), task.ID)
	must.Eq(t, task.ID, task.Handle.GetConfig().GetId())
	must.Positive(t, task.Handle.GetVersion())
	must.NotEq(t, 0, len(task.Config.GetMsgpackDriverConfig()))

	res := h.WaitTask(t, task.ID)
	must.Eq(t, 3, res.ExitCode)
	must.False(t, res.Successful())
	stdout, stderr := h.Logs(t, task.ID)
	must.Eq(t, "out\n", stdout)
	must.Eq(t, "err\n", stderr)
	// Like logmon, the collector also writes the log files.
	data, err := os.ReadFile(filepath.Join(task.AllocDir, "alloc", "logs", "task.stdout.0"))
	must.NoError(t, err)
	must.Eq(t, "out\n", string(data))

	h.WaitPluginLogLine(t, "client.driver_mgr.testdriver: started task:", "task_id="+task.ID, "wrapper_pid=")

	ev := h.WaitEvent(t, task.ID, "started task")
	must.Eq(t, task.AllocID, ev.AllocID)
	must.MapContainsKey(t, ev.Annotations, "wrapper_pid")
	h.DestroyTask(t, task.ID, true)
}

func TestHarness_StartTask_allocDirEnvAndInterpolation(t *testing.T) {
	t.Parallel()
	h := launch(t, harness.Options{})
	spec := harness.TaskSpec{
		Name:        "web",
		JobName:     "example",
		Env:         map[string]string{"GREETING": "hi"},
		PayloadFile: "input.json",
		Payload:     []byte(`{"a":1}`),
		// ${NOMAD_TASK_NAME} is interpolated by the client, $$ is not.
		Config: `
command = "/bin/sh"
args    = ["-c", "echo ${NOMAD_TASK_NAME} $GREETING $NOMAD_JOB_NAME; cat $NOMAD_TASK_DIR/input.json; pwd"]
`,
	}
	task := h.StartTask(t, spec)
	must.Zero(t, h.WaitTask(t, task.ID).ExitCode)
	stdout, _ := h.Logs(t, task.ID)
	must.Eq(t, "web hi example\n{\"a\":1}"+task.TaskDir+"\n", stdout)

	for _, dir := range []string{"alloc/data", "alloc/logs", "alloc/tmp", "web/local", "web/secrets", "web/tmp", "web/private"} {
		fi, err := os.Stat(filepath.Join(task.AllocDir, dir))
		must.NoError(t, err)
		must.True(t, fi.IsDir())
	}
	env := task.Config.GetEnv()
	must.Eq(t, filepath.Join(task.AllocDir, "alloc"), env["NOMAD_ALLOC_DIR"])
	must.Eq(t, task.LocalDir(), env["NOMAD_TASK_DIR"])
	must.Eq(t, task.SecretsDir(), env["NOMAD_SECRETS_DIR"])
	must.Eq(t, task.AllocID, env["NOMAD_ALLOC_ID"])
	must.Eq(t, "300", env["NOMAD_MEMORY_LIMIT"])
	must.Eq(t, int64(300*1024*1024), task.Config.GetResources().GetLinuxResources().GetMemoryLimitBytes())
	must.Eq(t, filepath.Join(task.AllocDir, "alloc", "logs", ".web.stdout.fifo"), task.Config.GetStdoutPath())
}

func TestHarness_StartTask_failedValidation(t *testing.T) {
	t.Parallel()
	h := launch(t, harness.Options{})
	tests := []struct {
		name, config, want string
	}{
		{"unknown attribute", `command = "/bin/true"` + "\n" + `bogus = 1`, `Invalid label: No argument or block type is named "bogus".`},
		{"missing required", `args = []`, `"command" is required`},
		{"empty config", ``, "Root value must be object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.TryStartTask(harness.TaskSpec{Config: tc.config})
			var verr *harness.ValidationError
			must.True(t, errors.As(err, &verr), must.Sprintf("err = %v", err))
			must.StrContains(t, err.Error(), "failed to parse config: ")
			must.StrContains(t, err.Error(), tc.want)
			var cerr *hclspec.ConfigError
			must.True(t, errors.As(err, &cerr))
			must.Eq(t, hclspec.StageTaskConfigDecode, cerr.Stage)
		})
	}
}

func TestHarness_StopTask_signalThenKill(t *testing.T) {
	t.Parallel()
	h := launch(t, harness.Options{})
	tests := []struct {
		name       string
		script     string
		signal     string
		wantSignal int
	}{
		// The driver's default signal (SIGINT) ends a plain sleep.
		{"default signal", `echo up; exec sleep 300`, "", int(syscall.SIGINT)},
		{"job kill_signal", `echo up; exec sleep 300`, "SIGTERM", int(syscall.SIGTERM)},
		// A task ignoring the signal is killed after the timeout.
		{"kill after timeout", `trap "" INT; echo up; exec sleep 300`, "SIGINT", int(syscall.SIGKILL)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			task := h.StartTask(t, shTask(tc.script))
			h.WaitStdout(t, task.ID, "up")
			h.StopTask(t, task.ID, 200*time.Millisecond, tc.signal)
			res := h.WaitTask(t, task.ID)
			must.Eq(t, tc.wantSignal, res.Signal)
			h.DestroyTask(t, task.ID, true)
		})
	}
}

func TestHarness_RecoverTask_afterPluginKill(t *testing.T) {
	t.Parallel()
	h := launch(t, harness.Options{})
	task := h.StartTask(t, shTask(`echo before; while [ ! -f "$NOMAD_TASK_DIR/go" ]; do sleep 0.02; done; echo after; exit 7`))
	h.WaitStdout(t, task.ID, "before")

	oldPID := h.PID(t)
	h.KillPlugin(t)
	must.ErrorIs(t, syscall.Kill(oldPID, 0), syscall.ESRCH)
	_, err := h.TryWaitTask(t.Context(), task.ID)
	must.Error(t, err)

	h.Relaunch(t)
	must.NotEq(t, oldPID, h.PID(t))
	h.RecoverTask(t, task)
	h.WaitEvent(t, task.ID, "recovered task")

	must.NoError(t, os.WriteFile(filepath.Join(task.LocalDir(), "go"), nil, 0o644))
	res := h.WaitTask(t, task.ID)
	must.Eq(t, 7, res.ExitCode)
	// The FIFOs stayed open across the plugin's death.
	stdout, _ := h.Logs(t, task.ID)
	must.Eq(t, "before\nafter\n", stdout)
	h.DestroyTask(t, task.ID, true)
}

func TestHarness_RestartAgent_recoversRunningTask(t *testing.T) {
	t.Parallel()
	h := launch(t, harness.Options{})
	task := h.StartTask(t, shTask(`echo up; exec sleep 300`))
	h.WaitStdout(t, task.ID, "up")

	h.RestartAgent(t)

	h.StopTask(t, task.ID, time.Second, "SIGTERM")
	must.Eq(t, int(syscall.SIGTERM), h.WaitTask(t, task.ID).Signal)
	h.DestroyTask(t, task.ID, true)
}

func TestHarness_TryRecoverTask_goneTaskFails(t *testing.T) {
	t.Parallel()
	h := launch(t, harness.Options{})
	task := h.StartTask(t, shTask(`exit 0`))
	h.WaitTask(t, task.ID)
	h.DestroyTask(t, task.ID, true)

	// A handle whose wrapper is gone and whose state was cleaned up.
	gone := *task
	gone.Handle = proto.Clone(task.Handle).(*driverpb.TaskHandle)
	gone.Handle.DriverState = []byte(`{"wrapper_pid": 999999999, "state_dir": "/nonexistent"}`)
	err := h.TryRecoverTask(&gone)
	must.ErrorContains(t, err, "is gone")
}

func TestHarness_Exec_signalStatsInspect(t *testing.T) {
	t.Parallel()
	h := launch(t, harness.Options{})
	task := h.StartTask(t, shTask(`trap 'echo got-usr1' USR1; echo up; while :; do sleep 0.02; done`))
	h.WaitStdout(t, task.ID, "up")

	res := h.ExecTask(t, task.ID, []string{"/bin/sh", "-c", `echo "$NOMAD_TASK_NAME"; echo oops >&2; exit 4`}, 5*time.Second)
	must.Eq(t, 4, res.ExitCode)
	must.Eq(t, "task\n", string(res.Stdout))
	must.Eq(t, "oops\n", string(res.Stderr))

	sres := h.ExecTaskStreaming(t, task.ID, harness.ExecOptions{
		Command: []string{"/bin/sh", "-c", "cat; echo done >&2; exit 5"},
		Stdin:   strings.NewReader("hello over grpc"),
	})
	must.Eq(t, 5, sres.ExitCode)
	must.Eq(t, "hello over grpc", string(sres.Stdout))
	must.Eq(t, "done\n", string(sres.Stderr))

	h.SignalTask(t, task.ID, "SIGUSR1")
	h.WaitStdout(t, task.ID, "got-usr1")

	stats := h.TaskStats(t, task.ID, 10*time.Millisecond, 3)
	must.Len(t, 3, stats)
	for _, s := range stats {
		must.NotNil(t, s.GetTimestamp())
	}

	st := h.InspectTask(t, task.ID)
	must.Eq(t, task.ID, st.GetTask().GetId())
	must.Eq(t, driverpb.TaskState_RUNNING, st.GetTask().GetState())
}

func TestHarness_InProcess_lifecycleAndRecover(t *testing.T) {
	t.Parallel()
	h := inProcess(t, harness.Options{PluginConfig: `greeting = "in-process"`})
	must.Eq(t, "in-process", h.LastFingerprint(t).Attributes["driver.testdriver.greeting"])

	task := h.StartTask(t, shTask(`echo before; while [ ! -f "$NOMAD_TASK_DIR/go" ]; do sleep 0.02; done; echo after; exit 2`))
	h.WaitStdout(t, task.ID, "before")

	h.KillPlugin(t)
	h.Relaunch(t)
	h.RecoverTask(t, task)

	must.NoError(t, os.WriteFile(filepath.Join(task.LocalDir(), "go"), nil, 0o644))
	must.Eq(t, 2, h.WaitTask(t, task.ID).ExitCode)
	stdout, _ := h.Logs(t, task.ID)
	must.Eq(t, "before\nafter\n", stdout)
}

func TestHarness_cleanup_destroysTasksOfAKilledPlugin(t *testing.T) {
	t.Parallel()
	var wrapperPID int
	t.Run("leaves a task behind", func(t *testing.T) {
		h := launch(t, harness.Options{})
		task := h.StartTask(t, shTask(`echo up; exec sleep 300`))
		h.WaitStdout(t, task.ID, "up")
		h.WaitPluginLogLine(t, "client.driver_mgr.testdriver: started task:", "task_id="+task.ID, "wrapper_pid=")

		ev := h.WaitEvent(t, task.ID, "started task")
		wrapperPID = atoi(t, ev.Annotations["wrapper_pid"])
		h.KillPlugin(t)
	})
	// The subtest's cleanup relaunched the plugin and destroyed the task.
	waitGone(t, wrapperPID)
}

func TestHarness_WaitTask_concurrentWithStop(t *testing.T) {
	t.Parallel()
	h := launch(t, harness.Options{})
	task := h.StartTask(t, shTask(`echo up; exec sleep 300`))
	h.WaitStdout(t, task.ID, "up")

	// A restart (reference 3.1.E): a second WaitTask, then StopTask; both
	// waits return.
	type outcome struct {
		res harness.ExitResult
		err error
	}
	waits := make(chan outcome, 2)
	for range 2 {
		go func() {
			res, err := h.TryWaitTask(t.Context(), task.ID)
			waits <- outcome{res, err}
		}()
	}
	h.StopTask(t, task.ID, 5*time.Second, "SIGTERM")
	for range 2 {
		o := <-waits
		must.NoError(t, o.err)
		must.Eq(t, int(syscall.SIGTERM), o.res.Signal)
	}
	// Answered at once after exit, until DestroyTask.
	must.Eq(t, int(syscall.SIGTERM), h.WaitTask(t, task.ID).Signal)
	h.DestroyTask(t, task.ID, true)
}

func TestHarness_StartTask_optionsReachTheTask(t *testing.T) {
	t.Parallel()
	h := inProcess(t, harness.Options{NoHostEnv: true})
	task := h.StartTask(t, harness.TaskSpec{
		LogsDisabled: true,
		Files:        map[string][]byte{"local/app.conf": []byte("port=1")},
		Ports:        []harness.Port{{Label: "http", Value: 25000, To: 8080}},
		Meta:         map[string]string{"rack": "r1"},
		MemoryMaxMB:  512,
		Config:       `command = "/bin/sh"` + "\n" + `args = ["-c", "exit 0"]`,
	})
	must.Eq(t, os.DevNull, task.Config.GetStdoutPath())
	must.Eq(t, os.DevNull, task.Config.GetStderrPath())
	data, err := os.ReadFile(filepath.Join(task.LocalDir(), "app.conf"))
	must.NoError(t, err)
	must.Eq(t, "port=1", string(data))

	env := task.Config.GetEnv()
	must.MapNotContainsKey(t, env, "PATH") // NoHostEnv
	must.Eq(t, "8080", env["NOMAD_PORT_http"])
	must.Eq(t, "127.0.0.1:25000", env["NOMAD_ADDR_http"])
	must.Eq(t, "r1", env["NOMAD_META_rack"])
	must.Eq(t, "512", env["NOMAD_MEMORY_MAX_LIMIT"])
	must.Eq(t, int64(512*1024*1024), task.Config.GetResources().GetLinuxResources().GetMemoryLimitBytes())
	must.Eq(t, int32(8080), task.Config.GetResources().GetPorts()[0].GetTo())
	must.Zero(t, h.WaitTask(t, task.ID).ExitCode)
}

func TestHarness_TryExecTaskStreaming_ttyUnsupported(t *testing.T) {
	t.Parallel()
	h := inProcess(t, harness.Options{})
	task := h.StartTask(t, shTask(`echo up; exec sleep 300`))
	h.WaitStdout(t, task.ID, "up")
	_, err := h.TryExecTaskStreaming(task.ID, harness.ExecOptions{
		Command: []string{"/bin/sh"}, Tty: true, TerminalSize: &harness.TerminalSize{Height: 24, Width: 80},
	})
	must.Eq(t, codes.Unimplemented, status.Code(err), must.Sprintf("err = %v", err))
}
