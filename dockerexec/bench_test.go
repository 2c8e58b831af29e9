// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package dockerexec_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/tartnomad/nomad-driver-tart/dockerexec"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
)

// BenchmarkStartRunners times starting N runner containers at once through
// this package (file and env delivery) and the same containers through N
// concurrent `docker run -d` commands, side by side in one run, and reports
// the ratios (above 1: the package is faster). The three are interleaved,
// in rotating order, several rounds for small N, and the medians compared:
// a shared machine is noisy. Each executor and the CLI get one untimed
// warm-up start first, since a service's executor is long-lived.
// Run with: make bench, or
//
//	go test -run '^$' -bench StartRunners -benchtime 1x ./dockerexec/
func BenchmarkStartRunners(b *testing.B) {
	cli := testutil.DockerClient(b)
	img := testImage(b, cli)
	dockerBin, err := exec.LookPath("docker")
	if err != nil {
		b.Skip("docker CLI not on PATH: needed for the side-by-side comparison")
	}
	for _, bc := range []struct{ n, rounds int }{{1, 5}, {10, 5}, {50, 3}} {
		b.Run(fmt.Sprintf("N=%d", bc.n), func(b *testing.B) {
			var file, env, viaCLI []time.Duration
			ways := []func(){
				func() { file = append(file, benchPackage(b, cli, img, bc.n, dockerexec.DeliveryFile)) },
				func() { env = append(env, benchPackage(b, cli, img, bc.n, dockerexec.DeliveryEnv)) },
				func() { viaCLI = append(viaCLI, benchCLI(b, cli, dockerBin, img, bc.n)) },
			}
			for i := range b.N * bc.rounds {
				for j := range ways {
					ways[(i+j)%len(ways)]()
				}
			}
			f, e, c := median(file), median(env), median(viaCLI)
			b.ReportMetric(float64(f.Milliseconds()), "pkg_file_ms")
			b.ReportMetric(float64(e.Milliseconds()), "pkg_env_ms")
			b.ReportMetric(float64(c.Milliseconds()), "cli_ms")
			b.ReportMetric(float64(c)/float64(f), "cli/pkg_file")
			b.ReportMetric(float64(c)/float64(e), "cli/pkg_env")
		})
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func benchPackage(b *testing.B, cli *client.Client, img string, n int, d dockerexec.Delivery) time.Duration {
	b.Helper()
	cfg := baseConfig(img)
	cfg.JITConfigDelivery = d
	labels := map[string]string{dockerexec.LabelInstance: cfg.InstanceID}
	testutil.RemoveContainersOnCleanup(b, cli, labels)
	ex, err := dockerexec.New(cfg, cli, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	warm, err := ex.StartRunner(ctx, "warm-"+randHex(4), fakeJIT("warm", "bench-secret"))
	if err != nil {
		b.Fatal(err)
	}
	_ = ex.RemoveRunner(ctx, warm)

	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		name := runnerName("bench", i)
		wg.Go(func() { _, errs[i] = ex.StartRunner(ctx, name, fakeJIT(name, "bench-secret")) })
	}
	wg.Wait()
	took := time.Since(start)
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	removeLabelled(b, cli, labels)
	return took
}

func benchCLI(b *testing.B, cli *client.Client, dockerBin, img string, n int) time.Duration {
	b.Helper()
	instance := "t" + randHex(6)
	labels := map[string]string{dockerexec.LabelInstance: instance}
	testutil.RemoveContainersOnCleanup(b, cli, labels)
	run := func(name string) error {
		// The same container the package's env delivery creates; the JIT
		// config is passed by name (-e VAR) so it stays out of argv.
		cmd := exec.Command(dockerBin, "run", "-d", "--name", name,
			"--label", dockerexec.LabelInstance+"="+instance,
			"--label", dockerexec.LabelScaleSet+"=dockerexec-test",
			"--label", dockerexec.LabelRunner+"="+name,
			"--network", "none",
			"-e", "FAKERUNNER_JIT_FILE="+dockerexec.DefaultJITConfigPath,
			"-e", dockerexec.JITConfigEnv,
			img, "/bin/fakerunner")
		cmd.Env = append(os.Environ(), dockerexec.JITConfigEnv+"="+fakeJIT(name, "bench-secret"))
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("docker run %s: %w: %s", name, err, out)
		}
		return nil
	}
	if err := run("warm-" + randHex(4)); err != nil {
		b.Fatal(err)
	}
	removeLabelled(b, cli, labels)

	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		name := runnerName("bench", i)
		wg.Go(func() { errs[i] = run(name) })
	}
	wg.Wait()
	took := time.Since(start)
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	removeLabelled(b, cli, labels)
	return took
}

func removeLabelled(b *testing.B, cli *client.Client, labels map[string]string) {
	b.Helper()
	ex, err := dockerexec.New(dockerexec.Config{ScaleSet: "dockerexec-test", InstanceID: labels[dockerexec.LabelInstance]}, cli, nil)
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, c := range testutil.ContainersWithLabels(b, cli, labels) {
		wg.Go(func() { _ = ex.RemoveRunner(context.Background(), c.ID) })
	}
	wg.Wait()
	testutil.AssertNoContainers(b, cli, labels)
}
