// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package dockerexec_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/dockerexec"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
)

// The engine tests run on a real Docker engine (DOCKER_HOST). Without one
// they skip, saying how to start one; under CI=true they fail instead. Run
// them with:
//
//	eval "$(scripts/test-dockerd.sh start)"
//	go test -race -count=1 ./dockerexec/...

const fakeRunnerImage = "nomad-gha-test/dockerexec-fakerunner"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(runKillHelper())
	}
	code := m.Run()
	testutil.CleanupImages()
	testutil.CleanupBuilds()
	os.Exit(code)
}

// testImage builds (once per process) the offline test image: the static
// fakerunner as /bin/fakerunner, the host's /bin/sh with its libraries for
// the file-delivery wrapper, and USER runner like the official image.
func testImage(t testing.TB, cli *client.Client) string {
	t.Helper()
	bin := testutil.BuildBinary(t, "./sim/cmd/jitprobe")
	body, err := os.ReadFile(bin)
	must.NoError(t, err)
	files := append(testutil.HostExecutableFiles(t, "/bin/sh"),
		testutil.ImageFile{Path: "/bin/fakerunner", Mode: 0o755, Body: body})
	return testutil.SharedImage(t, cli, fakeRunnerImage, files, "USER runner", `ENTRYPOINT ["/bin/fakerunner"]`)
}

// harness is one executor on the test engine with its own instance label,
// a captured log, and the secrets it handed out.
type harness struct {
	t      *testing.T
	cli    *client.Client
	ex     *dockerexec.Executor
	cfg    dockerexec.Config
	logs   *testutil.SyncBuffer
	labels map[string]string

	mu      sync.Mutex
	secrets []string
}

func baseConfig(image string) dockerexec.Config {
	return dockerexec.Config{
		ScaleSet:    "dockerexec-test",
		InstanceID:  "t" + randHex(6),
		Image:       image,
		NetworkMode: "none",
		Command:     []string{"/bin/fakerunner"},
		Env:         map[string]string{"FAKERUNNER_JIT_FILE": dockerexec.DefaultJITConfigPath},
	}
}

func newHarness(t *testing.T, mutate func(*dockerexec.Config)) *harness {
	t.Helper()
	cli := testutil.DockerClient(t)
	cfg := baseConfig(testImage(t, cli))
	if mutate != nil {
		mutate(&cfg)
	}
	labels := map[string]string{dockerexec.LabelInstance: cfg.InstanceID}
	testutil.RemoveContainersOnCleanup(t, cli, labels)
	h := &harness{t: t, cli: cli, cfg: cfg, logs: &testutil.SyncBuffer{}, labels: labels}
	ex, err := dockerexec.New(cfg, cli, h.logger())
	must.NoError(t, err)
	h.ex = ex
	t.Cleanup(h.assertNoSecretsLogged)
	return h
}

func (h *harness) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// jit returns a fresh JIT config for name, shaped like the service's: base64
// JSON of base64 files, with a random credential that must never leak.
func (h *harness) jit(name string) string {
	secret := "jit-secret-" + randHex(16)
	h.mu.Lock()
	h.secrets = append(h.secrets, secret)
	h.mu.Unlock()
	jit := fakeJIT(name, secret)
	h.mu.Lock()
	h.secrets = append(h.secrets, jit)
	h.mu.Unlock()
	return jit
}

func fakeJIT(name, secret string) string {
	enc := base64.StdEncoding.EncodeToString
	runner, _ := json.Marshal(map[string]any{"agentId": 42, "agentName": name, "poolId": 1})
	creds, _ := json.Marshal(map[string]any{"scheme": "OAuth", "data": map[string]string{"clientId": secret}})
	files, _ := json.Marshal(map[string]string{".runner": enc(runner), ".credentials": enc(creds)})
	return enc(files)
}

// assertSecretFree fails when s contains any secret handed out so far.
func (h *harness) assertSecretFree(what, s string) {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, sec := range h.secrets {
		if strings.Contains(s, sec) {
			h.t.Errorf("%s contains a JIT config secret: %q", what, s)
			return
		}
	}
}

func (h *harness) assertNoSecretsLogged() {
	h.assertSecretFree("executor log", h.logs.String())
}

// waitExit waits for the container to stop and returns its exit code and
// its output.
func waitExit(t *testing.T, cli *client.Client, id string) (int64, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	waitC, errC := cli.ContainerWait(ctx, id, container.WaitConditionNotRunning)
	var code int64
	select {
	case w := <-waitC:
		code = w.StatusCode
	case err := <-errC:
		t.Fatalf("wait for container %s: %v", id, err)
	}
	rc, err := cli.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	must.NoError(t, err)
	defer rc.Close()
	var out bytes.Buffer
	_, err = stdcopy.StdCopy(&out, &out, rc)
	must.NoError(t, err)
	return code, out.String()
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func runnerName(prefix string, i int) string {
	return fmt.Sprintf("%s-%s-%d", prefix, randHex(3), i)
}
