// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package faketart_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/sim/faketart"
)

const image = "ghcr.io/cirruslabs/macos-tahoe-base:latest"

func TestFaketart_Clone_implicitPullThenCached(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	img := e.seedImage(image, "darwin", faketart.ImageOptions{CompressedSize: 25_000_000_000})

	out := e.ok("clone", image, "first")
	must.Eq(t, []string{
		"pulling " + image + "...",
		"pulling manifest...",
		"pulling disk (25.0 GB compressed)...",
		"0%",
		"100%",
		"pulling NVRAM...",
	}, lines(out))
	// The first clone keeps the image's MAC; later clones regenerate it.
	must.Eq(t, img.MACAddress, e.config("first").MACAddress)
	must.Eq(t, "", e.ok("clone", image, "second"), must.Sprint("a cached image is not pulled again"))
	must.NotEq(t, img.MACAddress, e.config("second").MACAddress)
	// A local clone always gets a new MAC.
	e.ok("clone", "first", "third")
	must.NotEq(t, img.MACAddress, e.config("third").MACAddress)

	// Storage layout: digest directory plus a tag symlink.
	repo := filepath.Join(e.home, "cache", "OCIs", "ghcr.io", "cirruslabs", "macos-tahoe-base")
	target, err := os.Readlink(filepath.Join(repo, "latest"))
	must.NoError(t, err)
	must.RegexMatch(t, regexp.MustCompile(`^sha256:[0-9a-f]{64}$`), target)
	for _, f := range []string{"config.json", "disk.img", "nvram.bin", "manifest.json"} {
		must.FileExists(t, filepath.Join(repo, target, f))
	}
	st, err := os.Stat(filepath.Join(e.home, "vms", "first", "disk.img"))
	must.NoError(t, err)
	must.Eq(t, int64(50_000_000_000), st.Size())

	// fqn names the digest.
	must.Eq(t, "ghcr.io/cirruslabs/macos-tahoe-base@"+target+"\n", e.ok("fqn", image))
}

func TestFaketart_Pull_refreshAndProgress(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.seedImage(image, "darwin", faketart.ImageOptions{})
	e.ok("pull", image)
	out := e.ok("pull", image)
	must.RegexMatch(t, regexp.MustCompile(`^pulling `+regexp.QuoteMeta(image)+`\.\.\.\npulling manifest\.\.\.\n`+
		`ghcr\.io/cirruslabs/macos-tahoe-base@sha256:[0-9a-f]{64} image is already cached and linked!\n$`), out)

	// The tag moves in the registry: clone keeps the cached one, pull refreshes.
	before := e.ok("fqn", image)
	must.NoError(t, faketart.SeedImage(e.registry, image, cfg, faketart.ImageOptions{Revision: "2"}))
	e.ok("clone", image, "vm")
	must.Eq(t, before, e.ok("fqn", image))
	out = e.ok("pull", image)
	must.StrContains(t, out, "pulling disk (")
	must.NotEq(t, before, e.ok("fqn", image))

	// Another tag with the same content links to the cached digest.
	must.NoError(t, faketart.SeedImage(e.registry, "ghcr.io/cirruslabs/macos-tahoe-base:v2", cfg, faketart.ImageOptions{Revision: "2"}))
	out = e.ok("pull", "ghcr.io/cirruslabs/macos-tahoe-base:v2")
	must.StrContains(t, out, "image is already cached! creating a symlink...")

	// Pull by digest.
	digest := strings.TrimSpace(e.ok("fqn", image))
	must.StrContains(t, e.ok("pull", digest), "image is already cached and linked!")

	// Without CI the percentage lines rewrite each other with ANSI codes.
	delete(e.vars, "CI")
	e.seedImage(image, "darwin", faketart.ImageOptions{Revision: "3"})
	e.set("FAKETART_PULL_SPEED", "2000000000").set("FAKETART_PULL_SIZE", "2500000000")
	out = e.ok("pull", image)
	must.StrContains(t, out, "0%\n\x1b[1A\x1b[K")
	must.StrContains(t, out, "\x1b[1A\x1b[K100%\n")
}

func TestFaketart_Pull_lockPerHost(t *testing.T) {
	t.Parallel()
	e := newEnv(t).set("FAKETART_PULL_SPEED", "1000000000").set("FAKETART_PULL_SIZE", "1000000000")
	e.seedImage("example.com/a:1", "linux", faketart.ImageOptions{})
	e.seedImage("example.com/b:1", "linux", faketart.ImageOptions{})
	first := e.cmd("pull", "example.com/a:1")
	firstOut := &testutil.SyncBuffer{}
	first.Stdout = firstOut
	must.NoError(t, first.Start())
	// Wait until the first pull holds the host lock (it prints the manifest line).
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(firstOut.String(), "pulling disk") {
		if time.Now().After(deadline) {
			t.Fatal("first pull never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	out := e.ok("pull", "example.com/b:1")
	must.Eq(t, "waiting for lock...", lines(out)[0])
	must.NoError(t, first.Wait())
}

func TestFaketart_Clone_concurrent(t *testing.T) {
	t.Parallel()
	e := newEnv(t).set("FAKETART_PULL_SPEED", "5000000000").set("FAKETART_PULL_SIZE", "1000000000")
	e.seedImage(image, "darwin", faketart.ImageOptions{})
	const n = 6
	var wg sync.WaitGroup
	results := make([]result, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = e.tart("clone", image, fmt.Sprintf("vm-%d", i))
		}()
	}
	// Concurrent readers garbage-collect tmp/ while the clones stage there.
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				if r := e.tart("list", "-q"); r.code != 0 {
					t.Errorf("list during clones: %s", r.stderr)
				}
			}
		}()
	}
	wg.Wait()
	downloads := 0
	for i, r := range results {
		must.Eq(t, 0, r.code, must.Sprintf("clone %d: %s", i, r.stderr))
		if strings.Contains(r.stdout, "pulling disk") {
			downloads++
		}
	}
	must.Eq(t, 1, downloads, must.Sprint("the image is downloaded once"))
	names := lines(e.ok("list", "--source", "local", "-q"))
	must.Len(t, n, names)
	macs := map[string]bool{}
	for _, name := range names {
		macs[e.config(name).MACAddress] = true
	}
	must.MapLen(t, n, macs, must.Sprint("every clone but one got a fresh MAC"))
	ents, err := os.ReadDir(filepath.Join(e.home, "tmp"))
	must.NoError(t, err)
	must.SliceEmpty(t, ents)
}

func TestFaketart_Clone_overwritesSilently(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.seedVM("a", "linux")
	e.seedVM("b", "darwin")
	e.ok("clone", "a", "b")
	must.Eq(t, "linux", e.config("b").OS)

	// Replacing a running VM: its run keeps the old, deleted files and the
	// new VM shows as stopped.
	p := e.start("b")
	e.ok("clone", "a", "b")
	must.Eq(t, "stopped", e.state("b"))
	must.Eq(t, 2, e.tart("stop", "b").code)
	p.signal(t, syscall.SIGINT)
	must.Eq(t, 0, p.wait(t).code)
	must.DirExists(t, filepath.Join(e.home, "vms", "b", "guest"))
}

func TestFaketart_Delete_andPrune(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.seedImage(image, "darwin", faketart.ImageOptions{})
	e.seedVM("a", "linux")
	e.seedVM("c", "linux")
	e.ok("pull", image)

	// rename: a stopped VM gets a new name; an existing target is refused.
	e.ok("rename", "c", "c2")
	must.Eq(t, 64, e.tart("rename", "c2", "a").code)
	e.ok("rename", "c2", "c")

	// Stops at the first failure; earlier names stay deleted.
	r := e.tart("delete", "a", "missing", "c")
	must.Eq(t, 2, r.code)
	must.Eq(t, "c\n"+image+"\n", stripDigests(e.ok("list", "-q")))

	// Deleting the tag garbage-collects its digest.
	e.ok("delete", image)
	must.Eq(t, "c\n", e.ok("list", "-q"))

	// prune --entries vms skips running VMs.
	e.seedVM("d", "linux")
	e.start("d")
	e.ok("prune", "--entries", "vms", "--older-than", "0")
	must.Eq(t, "d\n", e.ok("list", "-q"))

	// prune caches with a zero space budget empties the cache.
	e.ok("pull", image)
	e.ok("prune", "--space-budget", "0")
	must.Eq(t, "", e.ok("list", "--source", "oci", "-q"))
}

func stripDigests(s string) string {
	var keep []string
	for _, l := range lines(s) {
		if !strings.Contains(l, "@sha256:") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n") + "\n"
}

func TestFaketart_Pull_interruptCleansStaging(t *testing.T) {
	t.Parallel()
	e := newEnv(t).set("FAKETART_PULL_SPEED", "1000000000").set("FAKETART_PULL_SIZE", "60000000000")
	e.seedImage(image, "darwin", faketart.ImageOptions{})
	c := e.cmd("pull", image)
	out := &testutil.SyncBuffer{}
	c.Stdout = out
	must.NoError(t, c.Start())
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "0%") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	ents, err := os.ReadDir(filepath.Join(e.home, "tmp"))
	must.NoError(t, err)
	must.Len(t, 1, ents, must.Sprint("the download stages in tmp/"))
	must.NoError(t, c.Process.Signal(syscall.SIGINT))
	r := finish(t, c.Wait(), out.String(), "")
	must.Eq(t, syscall.SIGINT, r.signaled)
	ents, err = os.ReadDir(filepath.Join(e.home, "tmp"))
	must.NoError(t, err)
	must.SliceEmpty(t, ents)
	must.Eq(t, "", e.ok("list", "--source", "oci", "-q"))
}

func TestFaketart_Clone_suspendedSourceKeepsMAC(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.seedVM("mac", "darwin")
	p := e.start("mac", "--suspendable")
	e.ok("suspend", "mac")
	p.wait(t)
	e.ok("clone", "mac", "copy")
	must.Eq(t, cfg.MACAddress, e.config("copy").MACAddress)
	must.Eq(t, "suspended", e.state("copy"))
}
