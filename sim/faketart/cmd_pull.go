// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package faketart

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func (a *app) cmdPull(spec *commandSpec, p *parsedArgs) error {
	if _, err := spec.intValue(p, "concurrency", 4, 1, 1<<31); err != nil {
		return err
	}
	name := p.pos[0]
	if !isRemoteName(name) {
		if _, ok := vmDirComplete(a.home.vmDir(name)); ok {
			a.out("\"%s\" is a local image, nothing to pull here!", name)
			return nil
		}
	}
	r, err := parseRemote(name)
	if err != nil {
		return prefixedErr("%v", err)
	}
	_, err = a.pull(r)
	return err
}

// pull fetches r from the fake registry into the OCI cache, printing tart's
// progress lines, and returns the digest directory.
func (a *app) pull(r remoteRef) (string, error) {
	hostDir := filepath.Join(a.home.ociDir(), encodeHost(r.host))
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		return "", fmt.Errorf("create OCI cache dir %s: %w", hostDir, err)
	}
	lock, err := flockPath(hostDir, false)
	if err != nil {
		return "", err
	}
	if lock == nil {
		a.out("waiting for lock...")
		if lock, err = flockPath(hostDir, true); err != nil {
			return "", err
		}
	}
	defer lock.unlock()

	a.out("pulling %s...", r)
	a.out("pulling manifest...")
	if a.shouldFail("pull") {
		return "", prefixedErr("%s", a.failMessage("pull",
			`UnexpectedHTTPStatusCode(when: "pulling manifest", code: 503, details: "faketart: injected pull failure")`))
	}
	img, ok, err := a.lookupRegistry(r)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", prefixedErr(`UnexpectedHTTPStatusCode(when: "pulling manifest", code: 404, details: "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"manifest unknown\",\"detail\":{\"name\":\"%s\",\"reference\":\"%s\"}}]}")`,
			r.namespace, r.tag+r.digest)
	}
	repoDir := a.home.repoCacheDir(r)
	if err := os.MkdirAll(repoDir, 0o755); err != nil {
		return "", fmt.Errorf("create OCI cache dir %s: %w", repoDir, err)
	}
	digestDir := filepath.Join(repoDir, img.digest)
	byDigest := r.withDigest(img.digest)
	if _, ok := vmDirComplete(digestDir); ok {
		if r.tag == "" || linkedTo(filepath.Join(repoDir, r.tag), img.digest) {
			a.out("%s image is already cached and linked!", byDigest)
			return digestDir, nil
		}
		a.out("%s image is already cached! creating a symlink...", byDigest)
		return digestDir, linkTag(repoDir, r.tag, img.digest)
	}
	if err := a.download(img, digestDir); err != nil {
		return "", err
	}
	if r.tag != "" {
		if err := linkTag(repoDir, r.tag, img.digest); err != nil {
			return "", err
		}
	}
	return digestDir, nil
}

func linkedTo(tagPath, digest string) bool {
	t, err := os.Readlink(tagPath)
	return err == nil && filepath.Base(t) == digest
}

// linkTag points <repoDir>/<tag> at the digest directory, replacing an old
// link atomically.
func linkTag(repoDir, tag, digest string) error {
	tmp := filepath.Join(repoDir, ".tmp-"+tag+fmt.Sprint(os.Getpid()))
	_ = os.Remove(tmp)
	if err := os.Symlink(digest, tmp); err != nil {
		return fmt.Errorf("link tag %s: %w", tag, err)
	}
	if err := os.Rename(tmp, filepath.Join(repoDir, tag)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("link tag %s: %w", tag, err)
	}
	return nil
}

// download simulates fetching img at FAKETART_PULL_SPEED into a staging
// directory, then moves it to digestDir. SIGINT removes the staging dir.
func (a *app) download(img registryImage, digestDir string) error {
	tmp, err := a.home.newTmp()
	if err != nil {
		return err
	}
	defer tmp.remove()
	stop := cancelOnInterrupt(tmp)
	defer stop()

	for i := 0; i < a.knobs.pullRetries && i < 4; i++ {
		a.out(`Error pulling image: "faketart: injected transient error %d", attempting to re-try...`, i+1)
	}
	a.out("pulling disk (%.1f GB compressed)...", float64(img.compressedSize)/gb)
	a.progress(img.compressedSize)
	if err := a.materialize(img, tmp.dir); err != nil {
		return err
	}
	a.out("pulling NVRAM...")
	if err := os.Rename(tmp.dir, digestDir); err != nil {
		return fmt.Errorf("move pulled image into the cache: %w", err)
	}
	return nil
}

// materialize writes an image's files (sparse disk) into dir.
func (a *app) materialize(img registryImage, dir string) error {
	if err := copyTree(img.dir, dir); err != nil {
		return fmt.Errorf("copy image files from %s: %w", img.dir, err)
	}
	if err := writeConfigInPlace(filepath.Join(dir, fileConfig), img.config); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(dir, "image.json"))
	_ = os.Remove(filepath.Join(dir, "revision"))
	if _, err := os.Stat(filepath.Join(dir, fileDisk)); err != nil {
		if err := createSparse(filepath.Join(dir, fileDisk), img.diskBytes); err != nil {
			return err
		}
	}
	if _, err := os.Stat(filepath.Join(dir, fileNVRAM)); err != nil {
		if err := os.WriteFile(filepath.Join(dir, fileNVRAM), make([]byte, 4096), 0o644); err != nil {
			return fmt.Errorf("write NVRAM: %w", err)
		}
	}
	manifest, _ := json.MarshalIndent(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.cirruslabs.tart.config.v1", "digest": img.digest},
		"annotations":   map[string]string{"org.cirruslabs.tart.uncompressed-disk-size": fmt.Sprint(img.diskBytes)},
	}, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, fileManifest), manifest, 0o644); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	return nil
}

// progress prints percentage lines while "downloading" size bytes: at most
// one per second and only when the integer percent changes; plain lines
// with CI set, ANSI line rewrites without.
func (a *app) progress(size int64) {
	_, plain := os.LookupEnv("CI")
	printed := false
	last := -1
	emit := func(pct int) {
		if pct == last {
			return
		}
		if printed && !plain {
			fmt.Fprint(a.stdout, "\x1b[1A\x1b[K")
		}
		a.out("%d%%", pct)
		printed, last = true, pct
	}
	emit(0)
	if a.knobs.pullSpeed > 0 && size > 0 {
		total := time.Duration(float64(size) / float64(a.knobs.pullSpeed) * float64(time.Second))
		start := time.Now()
		for {
			left := total - time.Since(start)
			if left <= 0 {
				break
			}
			time.Sleep(min(left, time.Second))
			if el := time.Since(start); el < total {
				emit(int(100 * el / total))
			}
		}
	}
	emit(100)
}

// cancelOnInterrupt removes the staging dir and dies by SIGINT when
// interrupted, as tart cleans up an interrupted pull or clone.
func cancelOnInterrupt(tmp *tmpEntry) func() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT)
	done := make(chan struct{})
	go func() {
		select {
		case <-ch:
			tmp.remove()
			signal.Reset(syscall.SIGINT)
			_ = syscall.Kill(os.Getpid(), syscall.SIGINT)
		case <-done:
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}
