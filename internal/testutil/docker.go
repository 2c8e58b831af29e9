// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package testutil

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// Docker test helpers: a client for the test engine (skipping politely on a
// laptop without one, failing under CI), offline image builds from static
// binaries (no registry is reachable), and label-based leak checks.
//
// Test images hold a minimal root: /bin/<binary>, /etc/passwd and /etc/group
// with root (0) and runner (1001, home /home/runner), and the directories
// /tmp (1777), /home/runner, /proc, /sys, /dev, /run.

// RunnerUID is the uid (and gid) of user "runner" in images built here, as in
// the official actions runner image.
const RunnerUID = 1001

const dockerHowTo = "start the private test engine with: eval \"$(scripts/test-dockerd.sh start)\" " +
	"(needs dockerd: apt-get install docker.io), or point DOCKER_HOST at a Docker engine; " +
	"under CI=true an unreachable engine fails the test instead of skipping it"

// InCI reports whether the CI environment variable says this is a CI run,
// where dependencies CI provides must not be skipped.
func InCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}

// DockerClient returns a client for the engine named by the environment
// (DOCKER_HOST), with API version negotiation done. When the engine does not
// answer it skips the test with a message saying how to run it, except under
// CI=true, where it fails.
func DockerClient(t testing.TB) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err = cli.Ping(ctx); err == nil {
			cli.NegotiateAPIVersion(ctx)
			t.Cleanup(func() { _ = cli.Close() })
			return cli
		}
		_ = cli.Close()
	}
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		host = client.DefaultDockerHost
	}
	if InCI() {
		t.Fatalf("docker engine not reachable at %s: %v (%s)", host, err, dockerHowTo)
	}
	t.Skipf("docker engine not reachable at %s: %v; %s", host, err, dockerHowTo)
	return nil
}

// ImageFile is one file or directory of an image built by BuildImage.
type ImageFile struct {
	Path string // absolute path in the image
	Mode int64  // permission bits (and setuid/sticky)
	UID  int
	GID  int
	Dir  bool
	Body []byte // file content
	// Link makes a symlink to this target instead of a file.
	Link string
}

var (
	tagMu    sync.Mutex
	tagCount int
)

// uniqueRef appends a per-process unique tag when ref has none, so parallel
// test processes on one engine never share (and remove) each other's images.
func uniqueRef(ref string) string {
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref
	}
	tagMu.Lock()
	defer tagMu.Unlock()
	tagCount++
	return fmt.Sprintf("%s:p%d-%d", ref, os.Getpid(), tagCount)
}

// BuildImage imports an image offline (docker import of an in-memory root
// file system holding the base layout plus files) and returns its reference.
// A ref without a tag gets a unique one. changes are Dockerfile
// instructions for import (ENTRYPOINT, USER, ENV...). The image is removed
// when the test ends.
func BuildImage(t testing.TB, cli *client.Client, ref string, files []ImageFile, changes ...string) string {
	t.Helper()
	ref = importImage(t, cli, ref, files, changes)
	t.Cleanup(func() { RemoveImage(t, cli, ref) })
	return ref
}

// BuildImageFromBinary builds an image whose entrypoint is the static binary
// at binaryPath (copied to /bin/<name>; build it with CGO_ENABLED=0, e.g.
// through BuildBinary) and returns its reference. entrypoint defaults to
// that binary. The image is removed when the test ends.
func BuildImageFromBinary(t testing.TB, cli *client.Client, binaryPath, tag string, entrypoint ...string) string {
	t.Helper()
	files, changes := binaryImage(t, binaryPath, entrypoint)
	return BuildImage(t, cli, tag, files, changes...)
}

var (
	sharedMu     sync.Mutex
	sharedCli    *client.Client
	sharedImages = map[string]string{}
)

// SharedImageFromBinary is BuildImageFromBinary built once per test process
// and shared by every test that asks for the same tag. Call CleanupImages
// from TestMain after m.Run to remove it.
func SharedImageFromBinary(t testing.TB, cli *client.Client, binaryPath, tag string, entrypoint ...string) string {
	t.Helper()
	files, changes := binaryImage(t, binaryPath, entrypoint)
	return SharedImage(t, cli, tag, files, changes...)
}

// SharedImage is BuildImage built once per test process and shared by every
// test that asks for the same ref (the first caller's files and changes
// win). Call CleanupImages from TestMain after m.Run to remove it.
func SharedImage(t testing.TB, cli *client.Client, ref string, files []ImageFile, changes ...string) string {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if got, ok := sharedImages[ref]; ok {
		return got
	}
	if sharedCli == nil {
		// A client of its own: the caller's is closed when its test ends.
		c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
		if err != nil {
			t.Fatalf("testutil: docker client for shared images: %v", err)
		}
		sharedCli = c
	}
	got := importImage(t, cli, ref, files, changes)
	sharedImages[ref] = got
	return got
}

// CleanupImages removes the images SharedImageFromBinary built. Call it from
// TestMain after m.Run.
func CleanupImages() {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if sharedCli == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, ref := range sharedImages {
		_, _ = sharedCli.ImageRemove(ctx, ref, image.RemoveOptions{Force: true, PruneChildren: true})
	}
	sharedImages = map[string]string{}
	_ = sharedCli.Close()
	sharedCli = nil
}

// RemoveImage force-removes ref; an image already gone is fine.
func RemoveImage(t testing.TB, cli *client.Client, ref string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cli.ImageRemove(ctx, ref, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil &&
		!strings.Contains(strings.ToLower(err.Error()), "no such image") {
		t.Errorf("testutil: remove image %s: %v", ref, err)
	}
}

func binaryImage(t testing.TB, binaryPath string, entrypoint []string) ([]ImageFile, []string) {
	t.Helper()
	body, err := os.ReadFile(binaryPath)
	if err != nil {
		t.Fatalf("testutil: read binary for image: %v", err)
	}
	inImage := "/bin/" + filepath.Base(binaryPath)
	if len(entrypoint) == 0 {
		entrypoint = []string{inImage}
	}
	ep, err := json.Marshal(entrypoint)
	if err != nil {
		t.Fatalf("testutil: entrypoint: %v", err)
	}
	files := []ImageFile{{Path: inImage, Mode: 0o755, Body: body}}
	return files, []string{"ENTRYPOINT " + string(ep)}
}

func importImage(t testing.TB, cli *client.Client, ref string, files []ImageFile, changes []string) string {
	t.Helper()
	ref = uniqueRef(ref)
	rootfs, err := rootfsTar(append(baseLayout(), files...))
	if err != nil {
		t.Fatalf("testutil: pack root file system for %s: %v", ref, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rc, err := cli.ImageImport(ctx, image.ImportSource{Source: bytes.NewReader(rootfs), SourceName: "-"}, ref,
		image.ImportOptions{Changes: changes})
	if err != nil {
		t.Fatalf("testutil: docker import %s: %v", ref, err)
	}
	out, err := io.ReadAll(rc)
	_ = rc.Close()
	if err != nil || bytes.Contains(out, []byte(`"error"`)) {
		t.Fatalf("testutil: docker import %s: %v %s", ref, err, out)
	}
	return ref
}

func baseLayout() []ImageFile {
	passwd := "root:x:0:0:root:/root:/bin/sh\nrunner:x:1001:1001:runner:/home/runner:/bin/sh\n"
	group := "root:x:0:\nrunner:x:1001:\n"
	return []ImageFile{
		{Path: "/bin", Mode: 0o755, Dir: true},
		{Path: "/etc", Mode: 0o755, Dir: true},
		{Path: "/etc/passwd", Mode: 0o644, Body: []byte(passwd)},
		{Path: "/etc/group", Mode: 0o644, Body: []byte(group)},
		{Path: "/tmp", Mode: 0o1777, Dir: true},
		{Path: "/root", Mode: 0o700, Dir: true},
		{Path: "/home", Mode: 0o755, Dir: true},
		{Path: "/home/runner", Mode: 0o755, Dir: true, UID: RunnerUID, GID: RunnerUID},
		{Path: "/proc", Mode: 0o555, Dir: true},
		{Path: "/sys", Mode: 0o555, Dir: true},
		{Path: "/dev", Mode: 0o755, Dir: true},
		{Path: "/run", Mode: 0o755, Dir: true},
	}
}

// rootfsTar writes files (parents first: they are sorted by path, and
// missing parent directories are added) as a tar stream.
func rootfsTar(files []ImageFile) ([]byte, error) {
	byPath := map[string]ImageFile{}
	for _, f := range files {
		p := path.Clean("/" + f.Path)
		f.Path = p
		byPath[p] = f
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if _, ok := byPath[d]; !ok {
				byPath[d] = ImageFile{Path: d, Mode: 0o755, Dir: true}
			}
		}
	}
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	for _, p := range paths {
		f := byPath[p]
		hdr := &tar.Header{Name: strings.TrimPrefix(p, "/"), Mode: f.Mode, Uid: f.UID, Gid: f.GID, ModTime: now}
		switch {
		case f.Dir:
			hdr.Typeflag, hdr.Name = tar.TypeDir, hdr.Name+"/"
		case f.Link != "":
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, f.Link
		default:
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(f.Body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.Body); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

var lddPath = regexp.MustCompile(`(/[^\s]+)\s+\(0x`)

// HostExecutableFiles returns the host executable at hostPath plus the shared
// libraries ldd says it loads, at the same paths, for images that need a
// dynamically linked tool such as the host's /bin/sh. It skips the test when
// the executable or ldd is missing (and fails under CI=true).
func HostExecutableFiles(t testing.TB, hostPath string) []ImageFile {
	t.Helper()
	real, err := filepath.EvalSymlinks(hostPath)
	if err != nil {
		skipOrFail(t, "host executable %s not found: %v", hostPath, err)
	}
	out, err := exec.Command("ldd", real).CombinedOutput()
	paths := []string{real}
	if err == nil {
		for _, m := range lddPath.FindAllStringSubmatch(string(out), -1) {
			paths = append(paths, m[1])
		}
	} else if !strings.Contains(string(out), "not a dynamic executable") {
		skipOrFail(t, "ldd %s: %v %s", real, err, out)
	}
	var files []ImageFile
	for _, p := range paths {
		body, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("testutil: read %s: %v", p, err)
		}
		files = append(files, ImageFile{Path: p, Mode: 0o755, Body: body})
	}
	if hostPath != real {
		files = append(files, ImageFile{Path: hostPath, Link: real})
	}
	return files
}

func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// LabelFilter returns list filters matching every label in labels.
func LabelFilter(labels map[string]string) filters.Args {
	args := filters.NewArgs()
	for k, v := range labels {
		args.Add("label", k+"="+v)
	}
	return args
}

// ContainersWithLabels lists every container (any state) carrying all of
// labels.
func ContainersWithLabels(t testing.TB, cli *client.Client, labels map[string]string) []container.Summary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: LabelFilter(labels)})
	if err != nil {
		t.Fatalf("testutil: list containers with labels %v: %v", labels, err)
	}
	return list
}

// AssertNoContainers fails the test when containers carrying all of labels
// exist (a leak), naming them, and removes them so one leak does not spill
// into other tests.
func AssertNoContainers(t testing.TB, cli *client.Client, labels map[string]string) {
	t.Helper()
	leaked := ContainersWithLabels(t, cli, labels)
	if len(leaked) == 0 {
		return
	}
	var desc []string
	for _, c := range leaked {
		desc = append(desc, fmt.Sprintf("%s %v (%s)", c.ID[:12], c.Names, c.State))
	}
	forceRemove(cli, leaked)
	t.Errorf("leaked %d container(s) with labels %v: %s", len(leaked), labels, strings.Join(desc, ", "))
}

// RemoveContainersOnCleanup force-removes, when the test ends, any container
// still carrying all of labels: a safety net that keeps the engine clean
// when a test fails half-way. Register it early: cleanups run last-in
// first-out, so leak checks registered later still see what leaked.
func RemoveContainersOnCleanup(t testing.TB, cli *client.Client, labels map[string]string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		list, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: LabelFilter(labels)})
		if err == nil {
			forceRemove(cli, list)
		}
	})
}

func forceRemove(cli *client.Client, list []container.Summary) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, c := range list {
		_ = cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
	}
}
