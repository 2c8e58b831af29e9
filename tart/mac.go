// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tartnomad/nomad-driver-tart/internal/atomicfile"
)

// slotMAC returns the MAC address of slot index on a host with seed: the
// first six bytes of sha256(seed + "|" + index), made a locally
// administered unicast address (second-lowest bit of the first octet set,
// lowest cleared). The same seed and index always give the same MAC, so a
// slot's VMs reuse one DHCP lease.
func slotMAC(seed string, index int) string {
	sum := sha256.Sum256([]byte(seed + "|" + strconv.Itoa(index)))
	b := sum[:6]
	b[0] = (b[0] | 0x02) &^ 0x01
	return net.HardwareAddr(b).String()
}

// normalizeMAC parses a six-octet MAC ("aa:bb:..", octets of one or two
// hex digits, as bootpd writes them) and returns it lowercase, zero padded.
func normalizeMAC(s string) (string, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 6 {
		return "", fmt.Errorf("invalid mac address %q", s)
	}
	hw := make(net.HardwareAddr, 6)
	for i, p := range parts {
		if len(p) == 0 || len(p) > 2 {
			return "", fmt.Errorf("invalid mac address %q", s)
		}
		v, err := strconv.ParseUint(p, 16, 8)
		if err != nil {
			return "", fmt.Errorf("invalid mac address %q", s)
		}
		hw[i] = byte(v)
	}
	return hw.String(), nil
}

// macAddress returns the macAddress stored in the VM's config.json.
func (c *Client) macAddress(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(c.VMDir(name), "config.json"))
	if err != nil {
		return "", fmt.Errorf("read config of vm %s: %w", name, err)
	}
	var cfg struct {
		MACAddress string `json:"macAddress"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return "", fmt.Errorf("decode config of vm %s: %w", name, err)
	}
	return cfg.MACAddress, nil
}

// setMACAddress writes mac into the stopped VM's config.json (tart has no
// flag for a chosen MAC; tart re-reads the file at the next run). Other keys
// are kept as they are. The file is replaced atomically.
func (c *Client) setMACAddress(name, mac string) error {
	norm, err := normalizeMAC(mac)
	if err != nil {
		return fmt.Errorf("set mac of vm %s: %w", name, err)
	}
	path := filepath.Join(c.VMDir(name), "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("set mac of vm %s: read config: %w", name, err)
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("set mac of vm %s: decode config: %w", name, err)
	}
	cfg["macAddress"], _ = json.Marshal(norm)
	out, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("set mac of vm %s: encode config: %w", name, err)
	}
	// Keep the mode tart gave the file. Replaced whole, so tart (or
	// another pool at Start) reads the old config or the new, never half.
	perm := os.FileMode(0o600)
	if fi, err := os.Stat(path); err == nil {
		perm = fi.Mode().Perm()
	}
	if err := atomicfile.Write(path, out, perm); err != nil {
		return fmt.Errorf("set mac of vm %s: write config: %w", name, err)
	}
	return nil
}
