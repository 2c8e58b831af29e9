// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package faketart

import (
	"os"
	"sort"
	"time"
)

// pruneItem is a cache entry or VM that prune may delete.
type pruneItem struct {
	dir      string
	links    []string // tag symlinks pointing at dir
	accessed time.Time
	size     int64
}

func (a *app) cmdPrune(spec *commandSpec, p *parsedArgs) error {
	entries := "caches"
	if v, ok := p.value("entries"); ok {
		if v != "caches" && v != "vms" {
			return usageErr(spec.name, "The value '%s' is invalid for '--entries <entries>'", v)
		}
		entries = v
	}
	olderThan, err := spec.intValue(p, "older-than", -1, 0, 1<<31)
	if err != nil {
		return err
	}
	budget, err := spec.intValue(p, "space-budget", -1, 0, 1<<31)
	if err != nil {
		return err
	}
	if b, err := spec.intValue(p, "cache-budget", -1, 0, 1<<31); err != nil {
		return err
	} else if budget < 0 {
		budget = b
	}
	if olderThan < 0 && budget < 0 && !p.has("gc") {
		return usageErr(spec.name, "at least one pruning criteria must be specified")
	}
	items, err := a.pruneCandidates(entries)
	if err != nil {
		return err
	}
	// Most recently accessed first: the space budget keeps a prefix.
	sort.Slice(items, func(i, j int) bool { return items[i].accessed.After(items[j].accessed) })
	var used int64
	for _, it := range items {
		drop := olderThan >= 0 && time.Since(it.accessed) > time.Duration(olderThan)*24*time.Hour
		if budget >= 0 {
			if used+it.size > budget*gb {
				drop = true
			} else if !drop {
				used += it.size
			}
		}
		if drop {
			for _, l := range it.links {
				_ = os.Remove(l)
			}
			if err := os.RemoveAll(it.dir); err != nil {
				return prefixedErr("failed to prune %s: %v", it.dir, err)
			}
		}
	}
	return nil
}

func (a *app) pruneCandidates(entries string) ([]pruneItem, error) {
	var items []pruneItem
	if entries == "vms" {
		names, err := a.home.localVMNames()
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			d := a.home.vmDir(n)
			if st, _ := a.state(d); st == stateRunning {
				continue
			}
			_, alloc := vmSizes(d)
			items = append(items, pruneItem{dir: d, accessed: accessTime(d), size: alloc})
		}
		return items, nil
	}
	oci, err := a.home.ociEntries()
	if err != nil {
		return nil, err
	}
	byDir := map[string]*pruneItem{}
	for _, e := range oci {
		it, ok := byDir[e.dir]
		if !ok {
			_, alloc := vmSizes(e.dir)
			it = &pruneItem{dir: e.dir, accessed: accessTime(e.dir), size: alloc}
			byDir[e.dir] = it
		}
		if e.ref.tag != "" {
			it.links = append(it.links, e.path)
		}
	}
	for _, k := range sortedKeys(byDir) {
		items = append(items, *byDir[k])
	}
	return items, nil
}
