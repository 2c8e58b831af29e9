// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package faketart

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// remoteRef is a parsed OCI reference host[:port]/ns[/more][:tag|@digest].
type remoteRef struct {
	host, namespace string
	tag             string // "" when pinned by digest
	digest          string // "sha256:<hex>" or ""
}

func parseRemote(s string) (remoteRef, error) {
	host, rest, ok := strings.Cut(s, "/")
	if !ok || host == "" || rest == "" {
		return remoteRef{}, fmt.Errorf("invalid remote name %q", s)
	}
	r := remoteRef{host: host}
	if ns, dg, ok := strings.Cut(rest, "@"); ok {
		if !strings.HasPrefix(dg, "sha256:") || len(dg) != len("sha256:")+64 {
			return remoteRef{}, fmt.Errorf("invalid digest %q in remote name %q", dg, s)
		}
		r.namespace, r.digest = ns, dg
	} else {
		r.namespace, r.tag = rest, "latest"
		if i := strings.LastIndex(rest, ":"); i > strings.LastIndex(rest, "/") {
			r.namespace, r.tag = rest[:i], rest[i+1:]
		}
	}
	if r.namespace == "" || r.tag == "" && r.digest == "" || strings.Contains(r.namespace, "..") {
		return remoteRef{}, fmt.Errorf("invalid remote name %q", s)
	}
	return r, nil
}

// String is the name tart prints: host/ns:tag or host/ns@sha256:<hex>.
func (r remoteRef) String() string {
	if r.digest != "" {
		return r.host + "/" + r.namespace + "@" + r.digest
	}
	return r.host + "/" + r.namespace + ":" + r.tag
}

func (r remoteRef) withDigest(d string) remoteRef {
	return remoteRef{host: r.host, namespace: r.namespace, digest: d}
}

func encodeHost(h string) string { return strings.ReplaceAll(h, ":", "%3A") }
func decodeHost(h string) string { return strings.ReplaceAll(h, "%3A", ":") }

// repoCacheDir is cache/OCIs/<host>/<ns>.
func (h *home) repoCacheDir(r remoteRef) string {
	return filepath.Join(h.ociDir(), encodeHost(r.host), filepath.FromSlash(r.namespace))
}

// cachedImage returns the directory of a cached image (resolving a tag
// symlink), or "" when it is not cached or incomplete.
func (h *home) cachedImage(r remoteRef) string {
	name := r.tag
	if r.digest != "" {
		name = r.digest
	}
	p := filepath.Join(h.repoCacheDir(r), name)
	if _, ok := vmDirComplete(p); !ok {
		return ""
	}
	if resolved, err := filepath.EvalSymlinks(p); err == nil {
		return resolved
	}
	return p
}

// ociEntry is one entry in the OCI cache as `list` shows it.
type ociEntry struct {
	name string // host/ns:tag or host/ns@sha256:...
	dir  string // resolved digest directory
	path string // the tag symlink or the digest directory itself
	ref  remoteRef
}

// ociEntries lists tag symlinks and digest directories, sorted by name.
func (h *home) ociEntries() ([]ociEntry, error) {
	var out []ociEntry
	root := h.ociDir()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		parts := strings.Split(filepath.ToSlash(rel), "/")
		if len(parts) < 3 {
			return nil // host or first namespace level
		}
		host := decodeHost(parts[0])
		ns := strings.Join(parts[1:len(parts)-1], "/")
		last := parts[len(parts)-1]
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := filepath.EvalSymlinks(p)
			if err != nil {
				return nil // dangling tag
			}
			r := remoteRef{host: host, namespace: ns, tag: last}
			out = append(out, ociEntry{name: r.String(), dir: target, path: p, ref: r})
		case d.IsDir() && strings.HasPrefix(last, "sha256:"):
			if _, ok := vmDirComplete(p); ok {
				r := remoteRef{host: host, namespace: ns, digest: last}
				out = append(out, ociEntry{name: r.String(), dir: p, path: p, ref: r})
			}
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list OCI cache %s: %w", root, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// registryImage is one image available in the fake registry
// (FAKETART_REGISTRY/<host>/<ns>/<tag>/).
type registryImage struct {
	dir            string
	digest         string
	config         VMConfig
	diskBytes      int64
	compressedSize int64
}

// imageMeta is the optional image.json of a registry image.
type imageMeta struct {
	DiskSizeGB     int64 `json:"diskSizeGB"`
	CompressedSize int64 `json:"compressedSize"`
}

// lookupRegistry finds r in the fake registry; ok=false means 404.
func (a *app) lookupRegistry(r remoteRef) (registryImage, bool, error) {
	if a.knobs.registry == "" {
		return registryImage{}, false, nil
	}
	var repoDir string
	for _, host := range []string{r.host, encodeHost(r.host)} {
		d := filepath.Join(a.knobs.registry, host, filepath.FromSlash(r.namespace))
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			repoDir = d
			break
		}
	}
	if repoDir == "" {
		return registryImage{}, false, nil
	}
	if r.tag != "" {
		st, err := os.Stat(filepath.Join(repoDir, r.tag))
		if err != nil || !st.IsDir() {
			return registryImage{}, false, nil
		}
		img, err := a.loadRegistryImage(r, filepath.Join(repoDir, r.tag))
		return img, err == nil, err
	}
	ents, err := os.ReadDir(repoDir)
	if err != nil {
		return registryImage{}, false, fmt.Errorf("read registry repository %s: %w", repoDir, err)
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		img, err := a.loadRegistryImage(r, filepath.Join(repoDir, e.Name()))
		if err == nil && img.digest == r.digest {
			return img, true, nil
		}
	}
	return registryImage{}, false, nil
}

func (a *app) loadRegistryImage(r remoteRef, dir string) (registryImage, error) {
	img := registryImage{dir: dir, diskBytes: 50 * gb, compressedSize: a.knobs.pullSize}
	h := sha256.New()
	cfgBytes, err := os.ReadFile(filepath.Join(dir, fileConfig))
	switch {
	case err == nil:
		if err := json.Unmarshal(cfgBytes, &img.config); err != nil {
			return img, fmt.Errorf("parse registry image config %s: %w", dir, err)
		}
	case errors.Is(err, fs.ErrNotExist):
		// A fixed MAC per repository, as a real image carries one.
		img.config = DefaultConfig(osDarwin)
		sum := sha256.Sum256([]byte(r.host + "/" + r.namespace))
		mac := sum[:6]
		mac[0] = (mac[0] & 0xfc) | 0x02
		img.config.MACAddress = formatMAC(mac)
		img.config.ECID = "AAAAAAAAAAA="
		cfgBytes, _ = json.Marshal(img.config)
	default:
		return img, fmt.Errorf("read registry image config %s: %w", dir, err)
	}
	h.Write(cfgBytes)
	if b, err := os.ReadFile(filepath.Join(dir, "image.json")); err == nil {
		var m imageMeta
		if err := json.Unmarshal(b, &m); err != nil {
			return img, fmt.Errorf("parse registry image.json in %s: %w", dir, err)
		}
		if m.DiskSizeGB > 0 {
			img.diskBytes = m.DiskSizeGB * gb
		}
		if m.CompressedSize > 0 {
			img.compressedSize = m.CompressedSize
		}
		h.Write(b)
	}
	if st, err := os.Stat(filepath.Join(dir, fileDisk)); err == nil {
		img.diskBytes = st.Size()
		fmt.Fprintf(h, "disk:%d:%d", st.Size(), st.ModTime().UnixNano())
	}
	if b, err := os.ReadFile(filepath.Join(dir, "revision")); err == nil {
		h.Write(b)
	}
	img.digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return img, nil
}
