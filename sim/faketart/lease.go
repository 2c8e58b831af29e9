// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package faketart

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// lease is one entry of the fake DHCP server's lease file, in the format of
// macOS bootpd's /var/db/dhcpd_leases.
type lease struct {
	name   string
	ip     string
	mac    string
	expiry time.Time
}

func (a *app) leasesPath() string {
	if a.knobs.leasesFile != "" {
		return a.knobs.leasesFile
	}
	return filepath.Join(a.home.fakeDir(), "dhcpd_leases")
}

func parseLeases(b []byte) []lease {
	var out []lease
	var cur *lease
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "{":
			cur = &lease{}
		case line == "}":
			if cur != nil {
				out = append(out, *cur)
			}
			cur = nil
		case cur != nil:
			k, v, _ := strings.Cut(line, "=")
			switch k {
			case "name":
				cur.name = v
			case "ip_address":
				cur.ip = v
			case "hw_address":
				_, mac, _ := strings.Cut(v, ",")
				cur.mac = normalizeMAC(mac)
			case "lease":
				n, err := strconv.ParseInt(strings.TrimPrefix(v, "0x"), 16, 64)
				if err == nil {
					cur.expiry = time.Unix(n, 0)
				}
			}
		}
	}
	return out
}

func formatLeases(ls []lease) []byte {
	var b bytes.Buffer
	for _, l := range ls {
		fmt.Fprintf(&b, "{\n\tname=%s\n\tip_address=%s\n\thw_address=1,%s\n\tidentifier=1,%s\n\tlease=0x%x\n}\n",
			l.name, l.ip, l.mac, l.mac, l.expiry.Unix())
	}
	return b.Bytes()
}

// withLeases runs fn on the lease file under an flock and writes back what
// fn returns when it returns write=true.
func (a *app) withLeases(fn func([]lease) ([]lease, bool)) error {
	path := a.leasesPath()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create lease dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open lease file %s: %w", path, err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock lease file %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat lease file: %w", err)
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil && st.Size() > 0 {
		return fmt.Errorf("read lease file: %w", err)
	}
	out, write := fn(parseLeases(b))
	if !write {
		return nil
	}
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("truncate lease file: %w", err)
	}
	if _, err := f.WriteAt(formatLeases(out), 0); err != nil {
		return fmt.Errorf("write lease file: %w", err)
	}
	return nil
}

// acquireLease gives mac an address, as bootpd would: its previous address
// if it has one, else a free one starting at a slot derived from the MAC.
// With the pool full of unexpired leases it returns "" (lease exhaustion).
func (a *app) acquireLease(name, mac string) (string, error) {
	mac = normalizeMAC(mac)
	pfx, err := netip.ParsePrefix(a.knobs.ipSubnet)
	if err != nil || !pfx.Addr().Is4() {
		return "", fmt.Errorf("FAKETART_IP_SUBNET=%q is not an IPv4 CIDR", a.knobs.ipSubnet)
	}
	hostBits := 32 - pfx.Bits()
	pool := a.knobs.dhcpPool
	if maxPool := (1 << hostBits) - 3; pool > maxPool { // network, gateway .1, broadcast
		pool = maxPool
	}
	base := binary.BigEndian.Uint32(pfx.Masked().Addr().AsSlice())
	addr := func(i int) string {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], base+2+uint32(i)) //nolint:gosec // bounded by pool
		return netip.AddrFrom4(b).String()
	}
	sum := sha256.Sum256([]byte(mac))
	start := int(binary.BigEndian.Uint32(sum[:4]) % uint32(max(pool, 1))) //nolint:gosec // pool > 0
	now := time.Now()
	var got string
	err = a.withLeases(func(ls []lease) ([]lease, bool) {
		taken := map[string]bool{}
		var keep []lease
		for _, l := range ls {
			if l.mac == mac {
				if got == "" {
					got = l.ip
				}
				continue
			}
			keep = append(keep, l)
			if l.expiry.After(now) {
				taken[l.ip] = true
			}
		}
		if got != "" && taken[got] {
			got = ""
		}
		for i := 0; got == "" && i < pool; i++ {
			if c := addr((start + i) % pool); !taken[c] {
				got = c
			}
		}
		if got == "" {
			return nil, false
		}
		// bootpd reuses the slot of expired leases; drop them for that IP.
		var out []lease
		for _, l := range keep {
			if l.ip != got {
				out = append(out, l)
			}
		}
		out = append(out, lease{name: name, ip: got, mac: mac, expiry: now.Add(a.knobs.leaseTime)})
		return out, true
	})
	return got, err
}

// lookupLease returns the newest unexpired lease address of mac, or "".
func (a *app) lookupLease(mac string) string {
	f, err := os.Open(a.leasesPath())
	if err != nil {
		return ""
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
		return ""
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return ""
	}
	mac = normalizeMAC(mac)
	var best lease
	for _, l := range parseLeases(b) {
		if l.mac == mac && l.expiry.After(time.Now()) && l.expiry.After(best.expiry) {
			best = l
		}
	}
	return best.ip
}
