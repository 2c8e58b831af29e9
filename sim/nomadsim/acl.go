// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadsim

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"
)

// ACLToken is what one secret ID may do when ACLs are enabled.
type ACLToken struct {
	// Management tokens may do everything.
	Management bool
	// Namespaces maps a namespace (or "*") to its capabilities, e.g.
	// "dispatch-job", "read-job", "list-jobs", "purge-job", "submit-job".
	Namespaces map[string][]string
}

func (t ACLToken) allows(ns string, caps ...string) bool {
	if t.Management {
		return true
	}
	for _, key := range []string{ns, allNamespaces} {
		for _, have := range t.Namespaces[key] {
			for _, want := range caps {
				if have == want {
					return true
				}
			}
		}
	}
	return false
}

// parseToken reads X-Nomad-Token, then "Authorization: Bearer <token>".
func parseToken(r *http.Request) string {
	if t := r.Header.Get("X-Nomad-Token"); t != "" {
		return strings.TrimSpace(t)
	}
	parts := strings.Split(r.Header.Get("Authorization"), " ")
	if len(parts) > 1 && strings.EqualFold(parts[0], "bearer") {
		return strings.TrimSpace(strings.Split(strings.TrimSpace(strings.Join(parts[1:], " ")), " ")[0])
	}
	return ""
}

func (s *Server) aclEnabled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acl != nil
}

// accessorID is the token's accessor ID: a UUID derived from the secret
// (the double keeps no accessor table).
func accessorID(secret string) string {
	h := sha256.Sum256([]byte("accessor:" + secret))
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// allow reports whether token may use any of caps in namespace.
func (s *Server) allow(token, ns string, caps ...string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.acl == nil {
		return true
	}
	t, ok := s.acl[token]
	return ok && t.allows(ns, caps...)
}
