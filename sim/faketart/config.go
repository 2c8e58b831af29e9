// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package faketart

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"
)

// Display is the "display" object of a VM's config.json.
type Display struct {
	Width  int    `json:"width"`
	Height int    `json:"height"`
	Unit   string `json:"unit,omitempty"`
}

// VMConfig is a VM's config.json as tart writes it. Keys
// faketart does not know are kept when it rewrites the file.
type VMConfig struct {
	Version       int     `json:"version"`
	OS            string  `json:"os"`
	Arch          string  `json:"arch"`
	CPUCountMin   int     `json:"cpuCountMin"`
	CPUCount      int     `json:"cpuCount"`
	MemorySizeMin uint64  `json:"memorySizeMin"`
	MemorySize    uint64  `json:"memorySize"`
	MACAddress    string  `json:"macAddress"`
	Display       Display `json:"display"`
	DisplayRefit  *bool   `json:"displayRefit,omitempty"`
	DiskFormat    string  `json:"diskFormat"`
	ECID          string  `json:"ecid,omitempty"`
	HardwareModel string  `json:"hardwareModel,omitempty"`

	extra map[string]json.RawMessage
}

const (
	osDarwin = "darwin"
	osLinux  = "linux"
	gib      = 1 << 30
	mib      = 1 << 20
	gb       = 1_000_000_000
)

// DefaultConfig returns the config.json of a fresh VM of the given guest OS
// ("darwin" or "linux"), with a random locally administered MAC.
func DefaultConfig(guestOS string) VMConfig {
	c := VMConfig{
		Version:    1,
		OS:         guestOS,
		Arch:       "arm64",
		MACAddress: RandomMAC(),
		Display:    Display{Width: 1024, Height: 768},
		DiskFormat: "raw",
	}
	if guestOS == osDarwin {
		c.CPUCountMin, c.CPUCount = 4, 4
		c.MemorySizeMin, c.MemorySize = 4*gib, 8*gib
		c.ECID = randomB64(8)
		c.HardwareModel = base64.StdEncoding.EncodeToString([]byte(`{"DataRepresentationVersion":1,"MinimumSupportedOS":[14,0,0],"PlatformVersion":2}`))
	} else {
		c.OS = osLinux
		c.CPUCountMin, c.CPUCount = 1, 4
		c.MemorySizeMin, c.MemorySize = 512*mib, 4*gib
	}
	return c
}

func randomB64(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// RandomMAC returns a random unicast, locally administered MAC address in
// tart's lowercase form.
func RandomMAC() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	b[0] = (b[0] & 0xfc) | 0x02
	return formatMAC(b)
}

func formatMAC(b []byte) string {
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02x", x)
	}
	return strings.Join(parts, ":")
}

// normalizeMAC lower-cases a MAC and restores leading zeros of octets (bootpd
// drops them), so two spellings of one address compare equal.
func normalizeMAC(s string) string {
	parts := strings.Split(strings.ToLower(strings.TrimSpace(s)), ":")
	for i, p := range parts {
		if len(p) == 1 {
			parts[i] = "0" + p
		}
	}
	return strings.Join(parts, ":")
}

// UnmarshalJSON keeps unknown keys so a rewrite does not drop them.
func (c *VMConfig) UnmarshalJSON(b []byte) error {
	type plain VMConfig
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	for _, k := range []string{"version", "os", "arch", "cpuCountMin", "cpuCount", "memorySizeMin", "memorySize",
		"macAddress", "display", "displayRefit", "diskFormat", "ecid", "hardwareModel"} {
		delete(all, k)
	}
	*c = VMConfig(p)
	c.extra = all
	return nil
}

// MarshalJSON writes the known keys plus any unknown ones read earlier.
func (c VMConfig) MarshalJSON() ([]byte, error) {
	type plain VMConfig
	b, err := json.Marshal(plain(c))
	if err != nil {
		return nil, err
	}
	if len(c.extra) == 0 {
		return b, nil
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, err
	}
	for k, v := range c.extra {
		if _, known := all[k]; !known {
			all[k] = v
		}
	}
	return json.Marshal(all)
}

// readConfig reads config.json. Writers rewrite it in place, so a reader
// racing a writer can see a short file: retry briefly before failing.
func readConfig(path string) (VMConfig, error) {
	var c VMConfig
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		if attempt > 0 {
			time.Sleep(5 * time.Millisecond)
		}
		var b []byte
		if b, err = os.ReadFile(path); err != nil {
			return c, fmt.Errorf("read VM config %s: %w", path, err)
		}
		if err = json.Unmarshal(b, &c); err == nil {
			return c, nil
		}
	}
	return c, fmt.Errorf("parse VM config %s: %w", path, err)
}

// writeConfigInPlace rewrites config.json without replacing the file: a
// running VM's lock lives on this inode, and tart writes it in place too.
func writeConfigInPlace(path string, c VMConfig) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("encode VM config: %w", err)
	}
	b = append(b, '\n')
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("open VM config %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return fmt.Errorf("write VM config %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close VM config %s: %w", path, err)
	}
	return nil
}
