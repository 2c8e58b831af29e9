// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package faketart_test

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/sim/faketart"
)

// kinds maps each key of a JSON object to its JSON kind.
func kinds(m map[string]any) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		switch v.(type) {
		case string:
			out[k] = "string"
		case float64:
			out[k] = "int"
		case bool:
			out[k] = "bool"
		default:
			out[k] = reflect.TypeOf(v).String()
		}
	}
	return out
}

func TestFaketart_ListGet_jsonShape(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Empty list: an empty JSON array; text prints one empty line; -q nothing.
	var empty []any
	must.NoError(t, json.Unmarshal([]byte(e.ok("list", "--format", "json")), &empty))
	must.SliceEmpty(t, empty)
	must.Eq(t, "\n", e.ok("list"))
	must.Eq(t, "", e.ok("list", "-q"))

	e.seedImage(image, "darwin", faketart.ImageOptions{})
	e.seedVM("b-vm", "linux")
	e.seedVM("a-vm", "darwin")
	e.ok("pull", image)
	e.start("b-vm")

	var list []map[string]any
	out := e.ok("list", "--format", "json")
	must.StrContains(t, out, `"Name" : "a-vm"`, must.Sprint("Apple's key separator"))
	must.NoError(t, json.Unmarshal([]byte(out), &list))
	must.Len(t, 4, list)
	wantList := map[string]string{"Source": "string", "Name": "string", "Disk": "int", "Size": "int",
		"Accessed": "string", "Running": "bool", "State": "string"}
	var order []string
	for _, row := range list {
		must.MapEq(t, wantList, kinds(row))
		order = append(order, row["Source"].(string)+" "+row["Name"].(string))
		_, err := time.Parse(time.RFC3339, row["Accessed"].(string))
		must.NoError(t, err)
		must.StrHasSuffix(t, "Z", row["Accessed"].(string))
	}
	must.Eq(t, "local a-vm", order[0])
	must.Eq(t, "local b-vm", order[1])
	must.Eq(t, "OCI "+image, order[2])
	must.StrHasPrefix(t, "OCI ghcr.io/cirruslabs/macos-tahoe-base@sha256:", order[3])
	must.Eq(t, true, list[1]["Running"])
	must.Eq(t, "running", list[1]["State"])
	must.Eq[any](t, float64(20), list[0]["Disk"])

	var get map[string]any
	must.NoError(t, json.Unmarshal([]byte(e.ok("get", "a-vm", "--format", "json")), &get))
	must.MapEq(t, map[string]string{"OS": "string", "CPU": "int", "Memory": "int", "Disk": "int", "DiskFormat": "string",
		"Size": "string", "Display": "string", "Running": "bool", "State": "string"}, kinds(get))
	must.Eq(t, "darwin", get["OS"])
	must.Eq[any](t, float64(8192), get["Memory"])
	must.Eq(t, "1024x768", get["Display"])
	must.RegexMatch(t, regexp.MustCompile(`^\d+\.\d{3}$`), get["Size"].(string))

	text := lines(e.ok("get", "a-vm"))
	must.Len(t, 2, text)
	must.Eq(t, []string{"OS", "CPU", "Memory", "Disk", "DiskFormat", "Size", "Display", "State"}, strings.Fields(text[0]))

	// --source filters; names sorted within each source.
	must.Eq(t, "a-vm\nb-vm\n", e.ok("list", "--source", "local", "-q"))
	oci := lines(e.ok("list", "--source", "oci", "-q"))
	must.True(t, sort.StringsAreSorted(oci))
}

func TestFaketart_Set(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	orig := e.seedVM("mac", "darwin")
	e.ok("set", "mac", "--cpu", "6", "--memory", "16384", "--disk-size", "80", "--display", "1920x1200pt", "--display-refit")
	c := e.config("mac")
	must.Eq(t, 6, c.CPUCount)
	must.Eq(t, uint64(16384)<<20, c.MemorySize)
	must.Eq(t, faketart.Display{Width: 1920, Height: 1200, Unit: "pt"}, c.Display)
	must.NotNil(t, c.DisplayRefit)
	must.Eq(t, orig.MACAddress, c.MACAddress)
	st, err := os.Stat(filepath.Join(e.home, "vms", "mac", "disk.img"))
	must.NoError(t, err)
	must.Eq(t, int64(80_000_000_000), st.Size())

	// Every set clears displayRefit unless given; --random-mac is locally administered.
	e.ok("set", "mac", "--random-mac")
	c = e.config("mac")
	must.Nil(t, c.DisplayRefit)
	must.NotEq(t, orig.MACAddress, c.MACAddress)
	must.RegexMatch(t, regexp.MustCompile(`^[0-9a-f][26ae](:[0-9a-f]{2}){5}$`), c.MACAddress)

	// Memory below the image minimum.
	r := e.tart("set", "mac", "--memory", "1024")
	must.Eq(t, 1, r.code)
	must.StrHasPrefix(t, "VM should have 4096 megabytes of memory at minimum", r.stderr)

	// Unknown config.json keys survive a set.
	path := filepath.Join(e.home, "vms", "mac", "config.json")
	var raw map[string]any
	b, err := os.ReadFile(path)
	must.NoError(t, err)
	must.NoError(t, json.Unmarshal(b, &raw))
	raw["futureKey"] = "kept"
	b, err = json.Marshal(raw)
	must.NoError(t, err)
	must.NoError(t, os.WriteFile(path, b, 0o644))
	e.ok("set", "mac", "--cpu", "4")
	b, err = os.ReadFile(path)
	must.NoError(t, err)
	must.StrContains(t, string(b), `"futureKey": "kept"`)
}

func TestFaketart_IP(t *testing.T) {
	t.Parallel()
	e := newEnv(t).set("FAKETART_BOOT_DELAY", "300ms")
	e.seedVM("vm", "linux")
	e.start("vm")
	// --wait 0 right after start: no lease yet.
	r := e.tart("ip", "vm")
	must.Eq(t, 1, r.code)
	must.Eq(t, "no IP address found\n", r.stderr)

	ip := strings.TrimSpace(e.ok("ip", "vm", "--wait", "10"))
	addr, err := netip.ParseAddr(ip)
	must.NoError(t, err)
	must.True(t, netip.MustParsePrefix("127.64.0.0/24").Contains(addr), must.Sprint("loopback-safe default subnet"))
	must.Eq(t, ip+"\n", e.ok("ip", "vm", "--resolver", "agent"))
	must.Eq(t, ip+"\n", e.ok("ip", "vm", "--resolver", "arp"))

	// The lease file is in bootpd's format.
	leases, err := os.ReadFile(filepath.Join(e.home, ".faketart", "dhcpd_leases"))
	must.NoError(t, err)
	must.StrContains(t, string(leases), "ip_address="+ip+"\n\thw_address=1,"+e.config("vm").MACAddress)

	// After stop, dhcp still answers from the (day-long) lease; arp does not.
	e.ok("stop", "vm")
	e.waitState("vm", "stopped")
	must.Eq(t, ip+"\n", e.ok("ip", "vm"))
	r = e.tart("ip", "vm", "--resolver", "arp")
	must.Eq(t, 1, r.code)

	// The same MAC gets the same address the next boot.
	e.start("vm")
	must.Eq(t, ip+"\n", e.ok("ip", "vm", "--wait", "10"))
}

func TestFaketart_IP_leaseExhaustion(t *testing.T) {
	t.Parallel()
	e := newEnv(t).set("FAKETART_DHCP_POOL", "1")
	e.seedVM("a", "linux")
	e.seedVM("b", "linux")
	e.start("a")
	e.ok("ip", "a", "--wait", "10")
	e.start("b")
	r := e.tart("ip", "b", "--wait", "1")
	must.Eq(t, 1, r.code)
	must.Eq(t, "no IP address found\n", r.stderr)

	e2 := newEnv(t).set("FAKETART_NO_DHCP", "1")
	e2.seedVM("c", "linux")
	e2.start("c")
	must.Eq(t, 1, e2.tart("ip", "c", "--wait", "1").code)
}
