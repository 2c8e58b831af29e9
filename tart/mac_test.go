// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/shoenig/test/must"
)

func TestClient_SetMACAddress(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	c := NewClient(WithHome(home))
	dir := filepath.Join(home, "vms", "vm1")
	must.NoError(t, os.MkdirAll(dir, 0o755))
	orig := `{"version":1,"os":"darwin","arch":"arm64","cpuCount":4,"memorySize":8589934592,"macAddress":"7e:12:34:56:78:9a","display":{"width":1024,"height":768},"ecid":"AAAA"}`
	must.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), []byte(orig), 0o644))

	must.NoError(t, c.setMACAddress("vm1", "2A:0:0:0:0:1"))
	mac, err := c.macAddress("vm1")
	must.NoError(t, err)
	must.Eq(t, "2a:00:00:00:00:01", mac)

	var before, after map[string]any
	must.NoError(t, json.Unmarshal([]byte(orig), &before))
	b, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	must.NoError(t, json.Unmarshal(b, &after))
	before["macAddress"] = "2a:00:00:00:00:01"
	must.Eq(t, before, after)
	fi, _ := os.Stat(filepath.Join(dir, "config.json"))
	must.Eq(t, os.FileMode(0o644), fi.Mode().Perm())
	entries, _ := os.ReadDir(dir)
	must.Len(t, 1, entries) // no temp file left

	must.ErrorContains(t, c.setMACAddress("vm1", "nope"), "invalid mac")
	must.Error(t, c.setMACAddress("missing", "2a:00:00:00:00:01"))
	_, err = c.macAddress("missing")
	must.Error(t, err)
}
