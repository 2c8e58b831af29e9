// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package actionssim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// This file holds message sessions and the message queue (reference 2.3
// (7)-(12), 6.3 items 4-10).

func (s *Simulator) sortedScaleSetsLocked() []*scaleSet {
	out := make([]*scaleSet, 0, len(s.scaleSets))
	for _, ss := range s.scaleSets {
		out = append(out, ss)
	}
	slices.SortFunc(out, func(a, b *scaleSet) int { return a.id - b.id })
	return out
}

// sessionExpiredLocked reports whether a session has been idle too long.
func (s *Simulator) sessionExpiredLocked(se *session, now time.Time) bool {
	return se.polls == 0 && now.Sub(se.lastActive) > s.opts.SessionIdleTimeout
}

// wireSessionLocked builds the session response with a fresh message-queue
// token. It records the statistics as sent.
func (s *Simulator) wireSessionLocked(r *http.Request, ss *scaleSet, now time.Time) (wireSession, error) {
	tok, err := s.issueTokenLocked("mq", ss.tenant.id, ss.session.id, s.opts.MessageQueueTokenLifetime, now)
	if err != nil {
		return wireSession{}, err
	}
	st := s.statsLocked(ss)
	ss.lastStats = st
	wss := s.wireScaleSetLocked(ss, baseURL(r))
	return wireSession{
		SessionID: ss.session.id, OwnerName: ss.session.owner, RunnerScaleSet: &wss,
		MessageQueueURL:         baseURL(r) + "/_broker/message?sessionId=" + url.QueryEscape(ss.session.id),
		MessageQueueAccessToken: tok, Statistics: &st,
	}, nil
}

func (s *Simulator) handleCreateSession(w http.ResponseWriter, r *http.Request, t *tenant) {
	var in wireSession
	if err := decodeJSON(r, &in); err != nil {
		s.writeException(w, http.StatusBadRequest, typeBadRequest, err.Error())
		return
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.scaleSetFromPathLocked(w, r, t)
	if ss == nil {
		return
	}
	if ss.session != nil && !s.sessionExpiredLocked(ss.session, now) {
		s.writeException(w, http.StatusConflict, typeSessionConflict,
			fmt.Sprintf("The runner scale set %s already has an active session for owner %s.", ss.name, ss.session.owner))
		return
	}
	ss.session = &session{id: newUUID(), owner: in.OwnerName, lastActive: now}
	out, err := s.wireSessionLocked(r, ss, now)
	if err != nil {
		s.writeException(w, http.StatusInternalServerError, typeBadRequest, "failed to issue token")
		return
	}
	s.log.Info("created message session", "scale_set_id", ss.id, "owner", in.OwnerName)
	s.changedLocked()
	s.writeServiceJSON(w, http.StatusOK, out)
}

// sessionFromPathLocked finds the scale set and its session named by the
// path, writing a 404 RunnerAdminException when the session is unknown.
func (s *Simulator) sessionFromPathLocked(w http.ResponseWriter, r *http.Request, t *tenant) *scaleSet {
	ss := s.scaleSetFromPathLocked(w, r, t)
	if ss == nil {
		return nil
	}
	sid := r.PathValue("sid")
	if ss.session == nil || ss.session.id != sid {
		s.writeException(w, http.StatusNotFound, typeRunnerAdmin,
			fmt.Sprintf("The message session %s for runner scale set %d was not found.", sid, ss.id))
		return nil
	}
	return ss
}

func (s *Simulator) handleRefreshSession(w http.ResponseWriter, r *http.Request, t *tenant) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessionFromPathLocked(w, r, t)
	if ss == nil {
		return
	}
	ss.session.lastActive = now
	out, err := s.wireSessionLocked(r, ss, now)
	if err != nil {
		s.writeException(w, http.StatusInternalServerError, typeBadRequest, "failed to issue token")
		return
	}
	s.log.Info("refreshed message session", "scale_set_id", ss.id)
	s.writeServiceJSON(w, http.StatusOK, out)
}

func (s *Simulator) handleDeleteSession(w http.ResponseWriter, r *http.Request, t *tenant) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessionFromPathLocked(w, r, t)
	if ss == nil {
		return
	}
	ss.session = nil
	s.log.Info("deleted message session", "scale_set_id", ss.id)
	s.changedLocked()
	w.WriteHeader(http.StatusNoContent)
}

// DropSession makes the service forget the scale set's session, as the
// real service sometimes does: the listener's next poll gets 401, its
// refresh gets 404 and the official listener stops. It reports whether
// there was a session.
func (s *Simulator) DropSession(scaleSetID int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.scaleSets[scaleSetID]
	if !ok || ss.session == nil {
		return false
	}
	ss.session = nil
	s.changedLocked()
	return true
}

// Restart plays a restart of the Actions service that loses what it holds
// in memory: every message session, and every token it issued (admin and
// message-queue tokens are signed with a key that does not survive). What
// it keeps in its database survives: scale sets, runner registrations and
// jobs, and their events not yet delivered. Afterwards a listener's poll
// gets 401 and its session refresh 401 (its admin token is no longer
// valid), and so does every admin call until the client fetches a new
// registration token and admin token.
func (s *Simulator) Restart() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ss := range s.scaleSets {
		ss.session = nil
	}
	s.adminRevoked = s.nextSerial
	s.mqRevoked = s.nextSerial
	s.log.Info("restarted: sessions and tokens lost")
	s.changedLocked()
}

// mqAuthLocked checks a message-queue token and returns the scale set whose
// live session it belongs to. Callers hold s.mu.
func (s *Simulator) mqAuthLocked(r *http.Request, now time.Time) (*scaleSet, bool) {
	tok, _ := bearer(r, "Bearer")
	c, err := s.checkTokenLocked(tok, "mq", s.mqRevoked, now)
	if err != nil {
		return nil, false
	}
	if sid := r.URL.Query().Get("sessionId"); sid != "" && sid != c.Session {
		return nil, false
	}
	for _, ss := range s.scaleSets {
		if ss.session != nil && ss.session.id == c.Session {
			return ss, true
		}
	}
	return nil, false
}

func (s *Simulator) writeMQUnauthorized(w http.ResponseWriter) {
	s.writeException(w, http.StatusUnauthorized, typeUnauthorized, "The message queue access token is invalid or has expired.")
}

func (s *Simulator) handleGetMessage(w http.ResponseWriter, r *http.Request) {
	lastID, _ := strconv.ParseInt(r.URL.Query().Get("lastMessageId"), 10, 64)
	now := time.Now()
	s.mu.Lock()
	ss, ok := s.mqAuthLocked(r, now)
	if !ok {
		s.mu.Unlock()
		s.writeMQUnauthorized(w)
		return
	}
	se := ss.session
	if v := r.Header.Get("X-ScaleSetMaxCapacity"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 && n != ss.maxCapacity {
			ss.maxCapacity = n
			s.dispatchLocked(now)
			s.changedLocked()
		}
	}
	se.polls++
	se.lastActive = now
	defer func() {
		se.polls--
		se.lastActive = time.Now()
		s.mu.Unlock()
	}()

	timer := time.NewTimer(s.opts.LongPollTimeout)
	defer timer.Stop()
	for {
		if ss.session != se {
			// Session deleted or dropped while we waited.
			s.writeMQUnauthorized(w)
			return
		}
		if body, ok := s.nextMessageLocked(ss, lastID); ok {
			s.writeServiceRaw(w, http.StatusOK, body)
			return
		}
		ch := s.notify
		s.mu.Unlock()
		select {
		case <-ch:
			s.mu.Lock()
		case <-timer.C:
			s.mu.Lock()
			w.WriteHeader(http.StatusAccepted)
			return
		case <-r.Context().Done():
			s.mu.Lock()
			return
		case <-s.stop:
			s.mu.Lock()
			w.WriteHeader(http.StatusAccepted)
			return
		}
	}
}

// nextMessageLocked returns the oldest unacknowledged message with an id
// above lastID, cutting a new one from pending events (or a statistics
// change) when there is none. Callers hold s.mu.
func (s *Simulator) nextMessageLocked(ss *scaleSet, lastID int64) ([]byte, bool) {
	for _, m := range ss.queue {
		if m.id > lastID {
			return m.body, true
		}
	}
	st := s.statsLocked(ss)
	if len(ss.pending) == 0 && (s.opts.NoStatisticsMessages || st == ss.lastStats) {
		return nil, false
	}
	n := min(len(ss.pending), s.opts.MessageBatchSize)
	batch := ss.pending[:n]
	ss.pending = slices.Clone(ss.pending[n:])
	s.nextMessage++
	env := wireMessage{MessageID: s.nextMessage, MessageType: "RunnerScaleSetJobMessages", Statistics: &st}
	if n > 0 {
		inner, err := json.Marshal(batch)
		if err != nil {
			return nil, false
		}
		env.Body = string(inner)
	}
	body, err := json.Marshal(env)
	if err != nil {
		return nil, false
	}
	if s.opts.ByteOrderMark {
		body = append([]byte("\xef\xbb\xbf"), body...)
	}
	ss.lastStats = st
	ss.queue = append(ss.queue, queuedMessage{id: env.MessageID, body: body})
	return body, true
}

func (s *Simulator) handleDeleteMessage(w http.ResponseWriter, r *http.Request) {
	mid, err := strconv.ParseInt(r.PathValue("mid"), 10, 64)
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.mqAuthLocked(r, time.Now())
	if !ok {
		s.writeMQUnauthorized(w)
		return
	}
	if err != nil {
		s.writeException(w, http.StatusBadRequest, typeBadRequest, fmt.Sprintf("invalid message id %q", r.PathValue("mid")))
		return
	}
	// Deleting an unknown id is harmless (204), so re-acknowledging is too.
	ss.queue = slices.DeleteFunc(ss.queue, func(m queuedMessage) bool { return m.id == mid })
	ss.session.lastActive = time.Now()
	s.changedLocked()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Simulator) handleAcquireJobs(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("api-version") == "" {
		s.writeException(w, http.StatusBadRequest, typeBadRequest, "The api-version query parameter is required.")
		return
	}
	var ids []int64
	if err := decodeJSON(r, &ids); err != nil {
		s.writeException(w, http.StatusBadRequest, typeBadRequest, err.Error())
		return
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.mqAuthLocked(r, now)
	if !ok || strconv.Itoa(ss.id) != r.PathValue("id") || strconv.Itoa(ss.tenant.id) != r.PathValue("tenant") {
		s.writeMQUnauthorized(w)
		return
	}
	out := wireList[int64]{Value: []int64{}}
	for _, j := range s.jobs {
		if j.ScaleSetID == ss.id && j.State == JobAvailable && slices.Contains(ids, j.RunnerRequestID) {
			j.State = JobAcquired
			out.Value = append(out.Value, j.RunnerRequestID)
		}
	}
	out.Count = len(out.Value)
	s.dispatchLocked(now)
	s.changedLocked()
	s.writeServiceJSON(w, http.StatusOK, out)
}
