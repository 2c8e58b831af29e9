// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadsim

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// codedError is an error with an HTTP status, like Nomad's CodedError.
type codedError struct {
	code int
	msg  string
}

func (e *codedError) Error() string { return e.msg }

func coded(code int, format string, a ...any) error {
	return &codedError{code: code, msg: fmt.Sprintf(format, a...)}
}

var errDenied = coded(http.StatusForbidden, errPermissionDenied)

type handlerFn func(w http.ResponseWriter, r *http.Request) (any, error)

// wrap writes a handler's result the way Nomad's HTTP server does: JSON on
// success, a plain-text body with the status code on error (500 for
// errors without a code).
//
// A client that accepts gzip (Go's http.Transport asks by default) gets
// every body gzipped, as Nomad's gzip handler does, and then an error has
// no Content-Type (the handler skips the sniffing net/http would do).
func (s *Server) wrap(h handlerFn) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Vary", "Accept-Encoding")
		gz := strings.Contains(r.Header.Get("Accept-Encoding"), "gzip")
		obj, err := h(w, r)
		if err != nil {
			code := http.StatusInternalServerError
			var ce *codedError
			if errors.As(err, &ce) {
				code = ce.code
			}
			writeBody(w, code, "", []byte(err.Error()), gz)
			return
		}
		if obj == nil {
			return
		}
		body, err := json.Marshal(obj)
		if err != nil {
			writeBody(w, http.StatusInternalServerError, "", []byte(err.Error()), gz)
			return
		}
		writeBody(w, http.StatusOK, "application/json", body, gz)
	}
}

// writeBody writes a response; ctype "" is an error's plain text.
func writeBody(w http.ResponseWriter, code int, ctype string, body []byte, gz bool) {
	if !gz {
		if ctype == "" {
			ctype = plainContentType
		}
		w.Header().Set("Content-Type", ctype)
		w.WriteHeader(code)
		_, _ = w.Write(body)
		return
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(body)
	_ = zw.Close()
	if ctype != "" {
		w.Header().Set("Content-Type", ctype)
	}
	w.Header().Set("Content-Encoding", "gzip")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

func (s *Server) count(r *http.Request, route string) {
	s.mu.Lock()
	s.requests[r.Method+" "+route]++
	s.mu.Unlock()
}

// queryOptions are the parsed common query parameters.
type queryOptions struct {
	namespace string
	prefix    string
	token     string
	minIndex  uint64
	wait      time.Duration
}

// parseQuery reads ?namespace, ?prefix, ?index, ?wait, ?stale, ?per_page
// and the token as Nomad's parse() does.
func parseQuery(r *http.Request) (queryOptions, error) {
	q := r.URL.Query()
	o := queryOptions{namespace: q.Get("namespace"), prefix: q.Get("prefix"), token: parseToken(r)}
	if o.namespace == "" {
		o.namespace = defaultNamespace
	}
	if v, ok := q["stale"]; ok && len(v) > 0 && v[0] != "" {
		if _, err := strconv.ParseBool(v[0]); err != nil {
			return o, coded(http.StatusBadRequest, "Expect `true` or `false` for `stale` query string parameter")
		}
	}
	if v := q.Get("per_page"); v != "" {
		if _, err := strconv.ParseInt(v, 10, 32); err != nil {
			return o, coded(http.StatusBadRequest, "Expect a number for `per_page` query string parameter")
		}
		return o, coded(http.StatusBadRequest, "nomadsim: per_page pagination is not implemented")
	}
	if q.Get("filter") != "" {
		return o, coded(http.StatusBadRequest, "nomadsim: filter expressions are not implemented")
	}
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return o, coded(http.StatusBadRequest, "Invalid wait time")
		}
		o.wait = d
	}
	if v := q.Get("index"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return o, coded(http.StatusBadRequest, "Invalid index")
		}
		o.minIndex = n
	}
	return o, nil
}

// blockingQuery runs run under the lock until its index is above
// o.minIndex or the wait ends, like Nomad's blockingRPC: without ?index it
// answers at once; with it, it waits up to ?wait (default and maximum
// 300s) plus up to wait/16 of jitter, and on timeout answers with the
// current (unchanged) result.
func (s *Server) blockingQuery(ctx context.Context, w http.ResponseWriter, o queryOptions, run func() (any, uint64)) any {
	var timeout <-chan time.Time
	if o.minIndex > 0 {
		wait := o.wait
		if wait <= 0 || wait > MaxBlockingQueryTime {
			wait = MaxBlockingQueryTime
		}
		if j := int64(wait / jitterFraction); j > 0 {
			wait += time.Duration(rand.Int64N(j))
		}
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	counted := false
	defer func() {
		if counted {
			s.mu.Lock()
			s.blocking--
			s.mu.Unlock()
		}
	}()
	for {
		s.mu.Lock()
		obj, idx := run()
		changed := s.changed
		if o.minIndex == 0 || idx > o.minIndex {
			s.mu.Unlock()
			setMeta(w, idx)
			return obj
		}
		if !counted {
			s.blocking++
			counted = true
			s.poke()
			changed = s.changed
		}
		s.mu.Unlock()
		select {
		case <-changed:
		case <-timeout:
			setMeta(w, idx)
			return obj
		case <-ctx.Done():
			setMeta(w, idx)
			return obj
		case <-s.ctx.Done():
			setMeta(w, idx)
			return obj
		}
	}
}

// poke wakes WaitUntil callers and blocking queries, which re-check and
// wait again. commit calls it after each write; alone it wakes them
// without one. Caller holds mu.
func (s *Server) poke() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// setMeta writes the query meta headers of a leader that answers itself.
func setMeta(w http.ResponseWriter, index uint64) {
	w.Header().Set("X-Nomad-Index", strconv.FormatUint(index, 10))
	w.Header().Set("X-Nomad-LastContact", "0")
	w.Header().Set("X-Nomad-KnownLeader", "true")
}

func setIndex(w http.ResponseWriter, index uint64) {
	w.Header().Set("X-Nomad-Index", strconv.FormatUint(index, 10))
}
