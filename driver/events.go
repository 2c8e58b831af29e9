// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

import (
	"context"
	"sync"
	"time"

	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
)

// eventBufferSize bounds events queued per TaskEvents stream; a stream that
// falls behind loses the newest events rather than blocking a StartTask.
const eventBufferSize = 256

// eventHub fans task events out to every open TaskEvents stream.
type eventHub struct {
	mu   sync.Mutex
	subs map[chan *sdk.TaskEvent]struct{}
}

func newEventHub() *eventHub { return &eventHub{subs: map[chan *sdk.TaskEvent]struct{}{}} }

// subscribe returns a channel of events that is closed when ctx ends. The
// goroutine is owned by ctx.
func (e *eventHub) subscribe(ctx context.Context) <-chan *sdk.TaskEvent {
	ch := make(chan *sdk.TaskEvent, eventBufferSize)
	e.mu.Lock()
	e.subs[ch] = struct{}{}
	e.mu.Unlock()
	go func() {
		<-ctx.Done()
		e.mu.Lock()
		delete(e.subs, ch)
		close(ch)
		e.mu.Unlock()
	}()
	return ch
}

// emit sends a task event to every stream without blocking.
func (e *eventHub) emit(cfg *sdk.TaskConfig, msg string, annotations map[string]string) {
	ev := &sdk.TaskEvent{TaskID: cfg.ID, AllocID: cfg.AllocID, TaskName: cfg.Name, Timestamp: time.Now(),
		Message: msg, Annotations: annotations}
	e.mu.Lock()
	defer e.mu.Unlock()
	for ch := range e.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}
