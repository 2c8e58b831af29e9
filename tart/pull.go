// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// PullPhase is the step of a pull a progress report is about.
type PullPhase string

// Pull phases, in the order tart goes through them.
const (
	PullStarted  PullPhase = "started"  // "pulling <image>..."
	PullManifest PullPhase = "manifest" // "pulling manifest..."
	PullCached   PullPhase = "cached"   // image already cached
	PullDisk     PullPhase = "disk"     // disk layers, with percentages
	PullNVRAM    PullPhase = "nvram"    // "pulling NVRAM..."
	PullRetry    PullPhase = "retry"    // a transient error, tart retries
	PullWaiting  PullPhase = "waiting"  // another pull holds the registry lock
)

// PullProgress is one progress report parsed from tart pull's output.
type PullProgress struct {
	Image string
	Phase PullPhase
	// Percent of the disk download (0-100), valid in PullDisk.
	Percent int
	// TotalBytes is the compressed disk size tart announced (0 if unknown);
	// Bytes is Percent of it.
	Bytes, TotalBytes uint64
	// Line is tart's output line.
	Line string
}

// String renders a human message such as
// "Pulling image: 42% (1.2 GiB of 28.0 GiB)".
func (p PullProgress) String() string {
	switch p.Phase {
	case PullDisk:
		if p.TotalBytes > 0 {
			return fmt.Sprintf("Pulling image: %d%% (%s of %s)", p.Percent, formatBytes(p.Bytes), formatBytes(p.TotalBytes))
		}
		return fmt.Sprintf("Pulling image: %d%%", p.Percent)
	case PullCached:
		return "Image already cached"
	case PullStarted:
		return "Pulling image " + p.Image
	case PullManifest:
		return "Pulling image manifest"
	case PullNVRAM:
		return "Pulling image NVRAM"
	case PullWaiting:
		return "Waiting for another pull from the same registry"
	default:
		return p.Line
	}
}

var (
	pullPercentRE = regexp.MustCompile(`^(\d{1,3})%$`)
	pullDiskRE    = regexp.MustCompile(`^pulling disk \(([\d.]+) ([KMGT]?B) compressed\)`)
)

// pullParser turns tart pull output lines into PullProgress values.
type pullParser struct {
	image string
	total uint64
	fn    func(PullProgress)
	// diskPercent is the last PullDisk percentage reported, -1 before the
	// first. The "pulling disk (N GB compressed)" line is reported as 0%
	// (so the size shows at once) and tart follows it with a "0%" line: a
	// percentage equal to the last one is not reported again.
	diskPercent int
}

func newPullParser(image string, fn func(PullProgress)) *pullParser {
	return &pullParser{image: image, fn: fn, diskPercent: -1}
}

func (pp *pullParser) line(l string) {
	p := PullProgress{Image: pp.image, Line: l, TotalBytes: pp.total}
	switch {
	case pullPercentRE.MatchString(l):
		n, _ := strconv.Atoi(strings.TrimSuffix(l, "%"))
		p.Phase, p.Percent = PullDisk, min(n, 100)
		p.Bytes = pp.total * uint64(p.Percent) / 100
		if p.Percent == pp.diskPercent {
			return
		}
		pp.diskPercent = p.Percent
	case pullDiskRE.MatchString(l):
		m := pullDiskRE.FindStringSubmatch(l)
		pp.total = parseSize(m[1], m[2])
		p.Phase, p.TotalBytes = PullDisk, pp.total
		pp.diskPercent = 0
	case strings.HasPrefix(l, "pulling manifest"):
		p.Phase = PullManifest
	case strings.HasPrefix(l, "pulling NVRAM"):
		p.Phase = PullNVRAM
	case strings.Contains(l, "image is already cached"):
		p.Phase, p.Percent = PullCached, 100
	case strings.Contains(l, "attempting to re-try"):
		p.Phase = PullRetry
	case strings.HasPrefix(l, "waiting for lock"):
		p.Phase = PullWaiting
	case strings.HasPrefix(l, "pulling "):
		p.Phase = PullStarted
	default:
		return
	}
	if pp.fn != nil {
		pp.fn(p)
	}
}

// parseSize converts tart's "25.3" "GB" (decimal units) to bytes.
func parseSize(num, unit string) uint64 {
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 {
		return 0
	}
	mult := map[string]float64{"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}[unit]
	return uint64(f * mult)
}

// PullOptions configure Pull and EnsureImage.
type PullOptions struct {
	// Insecure allows a plain-HTTP registry.
	Insecure bool
	// Concurrency is tart's network concurrency (0 = tart's default).
	Concurrency int
	// Progress, when set, receives each parsed progress line.
	Progress func(PullProgress)
}

// Pull runs `tart pull <image>` (with CI=1 so progress is plain lines) and
// reports progress. ErrImageNotFound when the registry has no such image.
func (c *Client) Pull(ctx context.Context, image string, o PullOptions) error {
	args := []string{"pull", image}
	if o.Insecure {
		args = append(args, "--insecure")
	}
	if o.Concurrency > 0 {
		args = append(args, "--concurrency", strconv.Itoa(o.Concurrency))
	}
	pp := newPullParser(image, o.Progress)
	lw := &lineWriter{fn: pp.line}
	stderr := &syncBuffer{max: 64 << 10}
	cmd := c.command(args)
	cmd.Stdout, cmd.Stderr = lw, stderr
	c.logger.Info("pulling image", "image", image)
	err := c.finish(ctx, "pull", image, cmd, stderr)
	lw.Flush()
	if err != nil {
		return err
	}
	c.logger.Info("pulled image", "image", image)
	return nil
}

// IsRemoteName reports whether tart treats name as an OCI reference (it
// contains '/') rather than a local VM.
func IsRemoteName(name string) bool { return strings.Contains(name, "/") }

// normalizeRef adds ":latest" to a remote reference without tag or digest.
func normalizeRef(ref string) string {
	if strings.Contains(ref, "@") {
		return ref
	}
	last := ref[strings.LastIndex(ref, "/")+1:]
	if strings.Contains(last, ":") {
		return ref
	}
	return ref + ":latest"
}

// HasImage reports whether image is present locally: a local VM of that
// name, or a remote reference already in tart's OCI cache.
func (c *Client) HasImage(ctx context.Context, image string) (bool, error) {
	vms, err := c.List(ctx)
	if err != nil {
		return false, err
	}
	remote := IsRemoteName(image)
	want := image
	if remote {
		want = normalizeRef(image)
	}
	for _, v := range vms {
		if remote != !v.IsLocal() {
			continue
		}
		if v.Name == want || v.Name == image {
			return true, nil
		}
	}
	return false, nil
}

// EnsureImage makes image available locally: nothing to do when HasImage
// says so, else a Pull with progress. It reports whether it pulled. A
// missing local (non-remote) image is ErrVMNotFound: it cannot be pulled.
func (c *Client) EnsureImage(ctx context.Context, image string, o PullOptions) (pulled bool, err error) {
	ok, err := c.HasImage(ctx, image)
	if err != nil {
		return false, fmt.Errorf("ensure image %s: %w", image, err)
	}
	if ok {
		return false, nil
	}
	if !IsRemoteName(image) {
		return false, newError("clone", image, 2, fmt.Sprintf("the specified VM %q does not exist", image), nil)
	}
	if err := c.Pull(ctx, image, o); err != nil {
		return false, fmt.Errorf("ensure image %s: %w", image, err)
	}
	return true, nil
}
