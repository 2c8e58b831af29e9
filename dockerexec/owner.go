// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package dockerexec

import (
	"archive/tar"
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
)

// owner is the numeric user and group that the JIT config file belongs to.
type owner struct{ uid, gid int }

// jitOwner returns the uid and gid of the container's user, resolved once
// per Executor. The engine cannot do this for us: its CopyUIDGID option
// looks user names up in the host's user database, not the container's.
// So the names are resolved against the image's own /etc/passwd and
// /etc/group, read from the created container, and the archive carries
// numbers.
func (e *Executor) jitOwner(ctx context.Context, containerID string) (owner, error) {
	e.ownerMu.Lock()
	defer e.ownerMu.Unlock()
	if e.owner != nil {
		return *e.owner, nil
	}
	user := e.cfg.User
	if user == "" {
		info, err := e.api.ContainerInspect(ctx, containerID)
		if err != nil {
			return owner{}, e.wrap(err, "inspect container %s for its user", shortID(containerID))
		}
		if info.Config != nil {
			user = info.Config.User // the image's USER, merged in by create
		}
	}
	o, err := e.lookupOwner(ctx, containerID, user)
	if err != nil {
		return owner{}, err
	}
	e.owner = &o
	return o, nil
}

func (e *Executor) lookupOwner(ctx context.Context, containerID, user string) (owner, error) {
	name, group, hasGroup := strings.Cut(user, ":")
	var o owner
	if name != "" {
		if uid, err := strconv.Atoi(name); err == nil {
			o.uid = uid
			// A numeric user takes its group from passwd when listed there.
			if entry, _ := e.findEntry(ctx, containerID, "/etc/passwd", 2, name); entry != nil {
				o.gid, _ = strconv.Atoi(entry[3])
			}
		} else {
			entry, err := e.findEntry(ctx, containerID, "/etc/passwd", 0, name)
			if err != nil {
				return owner{}, err
			}
			if entry == nil {
				return owner{}, fmt.Errorf("dockerexec: user %q is not in the image's /etc/passwd (set user to a numeric uid[:gid])", name)
			}
			o.uid, _ = strconv.Atoi(entry[2])
			o.gid, _ = strconv.Atoi(entry[3])
		}
	}
	if hasGroup && group != "" {
		if gid, err := strconv.Atoi(group); err == nil {
			o.gid = gid
		} else {
			entry, err := e.findEntry(ctx, containerID, "/etc/group", 0, group)
			if err != nil {
				return owner{}, err
			}
			if entry == nil {
				return owner{}, fmt.Errorf("dockerexec: group %q is not in the image's /etc/group (set user to a numeric uid[:gid])", group)
			}
			o.gid, _ = strconv.Atoi(entry[2])
		}
	}
	return o, nil
}

// findEntry returns the fields of the first line of a colon-separated
// database file in the container whose field at index key equals value; nil
// when none does or the file does not exist.
func (e *Executor) findEntry(ctx context.Context, containerID, file string, key int, value string) ([]string, error) {
	rc, _, err := e.api.CopyFromContainer(ctx, containerID, file)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil, nil
		}
		return nil, e.wrap(err, "read %s from container %s", file, shortID(containerID))
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	if _, err := tr.Next(); err != nil {
		return nil, fmt.Errorf("dockerexec: read %s from container %s: %w", file, shortID(containerID), err)
	}
	sc := bufio.NewScanner(io.LimitReader(tr, 4<<20))
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) > 3 && fields[key] == value {
			return fields, nil
		}
	}
	return nil, sc.Err()
}
