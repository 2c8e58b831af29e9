// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package dist

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Image constants shared by the Dockerfile, the context and the tests.
const (
	// ImageUID is the image's user (and group): scaleset, 65532, the
	// usual non-root id of images without a distribution.
	ImageUID = 65532
	// ImageBinary is where the service binary sits in the image.
	ImageBinary = "/usr/local/bin/nomad-gha-scaleset"
	// ImageCACerts is the CA bundle Go's crypto/x509 reads on Linux.
	ImageCACerts = "/etc/ssl/certs/ca-certificates.crt"
	// DefaultCACerts is the build host's bundle (Debian, Ubuntu, Alpine).
	DefaultCACerts = "/etc/ssl/certs/ca-certificates.crt"
	// DockerfilePath is the Dockerfile, relative to the repository root.
	DockerfilePath = "deploy/container/Dockerfile"
)

// ImageOptions are the inputs of the image's build context.
type ImageOptions struct {
	// Root is the repository root (for the Dockerfile).
	Root string
	// Binary is a static (CGO_ENABLED=0) linux nomad-gha-scaleset.
	Binary string
	// CACerts is the PEM bundle to copy; default DefaultCACerts.
	CACerts string
}

// ImageContext writes the docker build context of the service image as a
// tar stream (what `docker build -` reads): the Dockerfile and rootfs/.
// Entries are dated at the zip epoch so the same inputs give the same
// stream.
func ImageContext(w io.Writer, o ImageOptions) error {
	if o.CACerts == "" {
		o.CACerts = DefaultCACerts
	}
	dockerfile, err := os.ReadFile(filepath.Join(o.Root, DockerfilePath))
	if err != nil {
		return fmt.Errorf("failed to read the Dockerfile: %w", err)
	}
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return fmt.Errorf("failed to read the service binary: %w", err)
	}
	certs, err := os.ReadFile(o.CACerts)
	if err != nil {
		return fmt.Errorf("failed to read the CA certificates (install ca-certificates or pass --ca-certs): %w", err)
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nscaleset:x:%d:%d:nomad-gha-scaleset:/tmp:/sbin/nologin\n", ImageUID, ImageUID)
	group := fmt.Sprintf("root:x:0:\nscaleset:x:%d:\n", ImageUID)
	when := time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	tw := tar.NewWriter(w)
	for _, e := range []struct {
		name string
		mode int64
		body []byte
		dir  bool
	}{
		{name: "Dockerfile", mode: 0o644, body: dockerfile},
		{name: "rootfs/", mode: 0o755, dir: true},
		{name: "rootfs/etc/", mode: 0o755, dir: true},
		{name: "rootfs/etc/group", mode: 0o644, body: []byte(group)},
		{name: "rootfs/etc/passwd", mode: 0o644, body: []byte(passwd)},
		{name: "rootfs/etc/ssl/", mode: 0o755, dir: true},
		{name: "rootfs/etc/ssl/certs/", mode: 0o755, dir: true},
		{name: "rootfs" + ImageCACerts, mode: 0o644, body: certs},
		{name: "rootfs/tmp/", mode: 0o1777, dir: true},
		{name: "rootfs/usr/", mode: 0o755, dir: true},
		{name: "rootfs/usr/local/", mode: 0o755, dir: true},
		{name: "rootfs/usr/local/bin/", mode: 0o755, dir: true},
		{name: "rootfs" + ImageBinary, mode: 0o755, body: bin},
	} {
		h := &tar.Header{Name: e.name, Mode: e.mode, ModTime: when, Typeflag: tar.TypeReg, Size: int64(len(e.body)), Format: tar.FormatPAX}
		if e.dir {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("failed to write the build context: %w", err)
		}
		if _, err := tw.Write(e.body); err != nil {
			return fmt.Errorf("failed to write the build context: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("failed to write the build context: %w", err)
	}
	return nil
}
