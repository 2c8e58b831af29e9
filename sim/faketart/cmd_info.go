// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package faketart

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"text/tabwriter"
	"time"
)

// appleJSON encodes v like Apple's JSONEncoder with .prettyPrinted and
// .sortedKeys: two-space indent and "key" : value.
func appleJSON(v any) (string, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode JSON output: %w", err)
	}
	return appleKeySep.ReplaceAllString(string(b), `$1 : `), nil
}

var appleKeySep = regexp.MustCompile(`(?m)^(\s*"[^"\n]*"): `)

func (a *app) formatValue(spec *commandSpec, p *parsedArgs) (string, error) {
	f, ok := p.value("format")
	if !ok {
		return "text", nil
	}
	if f != "text" && f != "json" {
		return "", usageErr(spec.name, "The value '%s' is invalid for '--format <format>'", f)
	}
	return f, nil
}

func (a *app) cmdGet(spec *commandSpec, p *parsedArgs) error {
	format, err := a.formatValue(spec, p)
	if err != nil {
		return err
	}
	name := p.pos[0]
	dir, err := a.home.openLocal(name)
	if err != nil {
		return err
	}
	cfg, err := readConfig(dir + "/" + fileConfig)
	if err != nil {
		return err
	}
	st, _ := a.state(dir)
	apparent, allocated := vmSizes(dir)
	display := fmt.Sprintf("%dx%d%s", cfg.Display.Width, cfg.Display.Height, cfg.Display.Unit)
	diskFormat := cfg.DiskFormat
	if diskFormat == "" {
		diskFormat = "raw"
	}
	size := fmt.Sprintf("%.3f", float64(allocated)/gb)
	if format == "json" {
		out, err := appleJSON(map[string]any{
			"OS": cfg.OS, "CPU": cfg.CPUCount, "Memory": cfg.MemorySize / mib,
			"Disk": apparent / gb, "DiskFormat": diskFormat, "Size": size, "Display": display,
			"Running": st == stateRunning, "State": string(st),
		})
		if err != nil {
			return err
		}
		a.out("%s", out)
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "OS\tCPU\tMemory\tDisk\tDiskFormat\tSize\tDisplay\tState")
	fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", cfg.OS, cfg.CPUCount, cfg.MemorySize/mib, apparent/gb,
		diskFormat, size, display, st)
	return tw.Flush()
}

// listEntry is one row of `tart list`.
type listEntry struct {
	Source   string `json:"Source"`
	Name     string `json:"Name"`
	Disk     int64  `json:"Disk"`
	Size     int64  `json:"Size"`
	Accessed string `json:"Accessed"`
	Running  bool   `json:"Running"`
	State    string `json:"State"`

	accessed time.Time
}

func (a *app) cmdList(spec *commandSpec, p *parsedArgs) error {
	format, err := a.formatValue(spec, p)
	if err != nil {
		return err
	}
	source, hasSource := p.value("source")
	if hasSource && source != "local" && source != "oci" {
		return usageErr(spec.name, "'%s' is not a valid <source>", source)
	}
	var entries []listEntry
	if !hasSource || source == "local" {
		names, err := a.home.localVMNames()
		if err != nil {
			return err
		}
		for _, n := range names {
			dir := a.home.vmDir(n)
			st, _ := a.state(dir)
			apparent, allocated := vmSizes(dir)
			at := accessTime(dir)
			entries = append(entries, listEntry{Source: "local", Name: n, Disk: apparent / gb, Size: allocated / gb,
				Accessed: at.UTC().Format(time.RFC3339), Running: st == stateRunning, State: string(st), accessed: at})
		}
	}
	if !hasSource || source == "oci" {
		oci, err := a.home.ociEntries()
		if err != nil {
			return err
		}
		for _, e := range oci {
			apparent, allocated := vmSizes(e.dir)
			at := accessTime(e.dir)
			entries = append(entries, listEntry{Source: "OCI", Name: e.name, Disk: apparent / gb, Size: allocated / gb,
				Accessed: at.UTC().Format(time.RFC3339), State: string(stateStopped), accessed: at})
		}
	}
	switch {
	case p.has("quiet"):
		for _, e := range entries {
			a.out("%s", e.Name)
		}
	case format == "json":
		rows := make([]map[string]any, 0, len(entries))
		for _, e := range entries {
			rows = append(rows, map[string]any{"Source": e.Source, "Name": e.Name, "Disk": e.Disk, "Size": e.Size,
				"Accessed": e.Accessed, "Running": e.Running, "State": e.State})
		}
		out, err := appleJSON(rows)
		if err != nil {
			return err
		}
		if len(entries) == 0 {
			out = "[\n\n]"
		}
		a.out("%s", out)
	case len(entries) == 0:
		a.out("")
	default:
		tw := tabwriter.NewWriter(a.stdout, 0, 0, 1, ' ', 0)
		fmt.Fprintln(tw, "Source\tName\tDisk\tSize\tAccessed\tState")
		for _, e := range entries {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", e.Source, e.Name, e.Disk, e.Size, humanAgo(e.accessed), e.State)
		}
		return tw.Flush()
	}
	return nil
}

// humanAgo renders a time like "3 minutes ago".
func humanAgo(t time.Time) string {
	d := time.Since(t)
	unit := func(n int64, s string) string {
		if n == 1 {
			return fmt.Sprintf("1 %s ago", s)
		}
		return fmt.Sprintf("%d %ss ago", n, s)
	}
	switch {
	case d < 5*time.Second:
		return "just now"
	case d < time.Minute:
		return unit(int64(d/time.Second), "second")
	case d < time.Hour:
		return unit(int64(d/time.Minute), "minute")
	case d < 24*time.Hour:
		return unit(int64(d/time.Hour), "hour")
	}
	return unit(int64(d/(24*time.Hour)), "day")
}

// sortedKeys is a helper for deterministic iteration.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
