// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package harness

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"
)

// logStream plays Nomad's log collector (logmon) for one FIFO: it creates the
// FIFO, keeps its read side open, and collects everything written to it into
// memory and into a file next to it (<task>.stdout.0 like logmon's rotated
// files). The driver opens the write side.
//
// Locking: mu guards every field below it.
type logStream struct {
	fifo string
	file *os.File // copy of the output, as `nomad alloc logs` would read it

	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	buf     bytes.Buffer
	writers int           // writer sessions that connected so far
	closed  int           // writer sessions that ended (EOF)
	reader  *os.File      // current read side, closed by close() to unblock a read
	err     error         // first unexpected read error
	changed chan struct{} // closed and replaced whenever anything above changes
}

// newLogStream creates the FIFO at fifoPath (mode 0600, as logmon does) and
// starts reading it. copyPath receives a copy of the output.
func newLogStream(fifoPath, copyPath string) (*logStream, error) {
	if err := syscall.Mkfifo(fifoPath, 0o600); err != nil {
		return nil, fmt.Errorf("create log fifo %s: %w", fifoPath, err)
	}
	f, err := os.OpenFile(copyPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create log file %s: %w", copyPath, err)
	}
	s := &logStream{
		fifo:    fifoPath,
		file:    f,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		changed: make(chan struct{}),
	}
	go s.run()
	return s, nil
}

// run owns the read side. Each iteration waits for a writer (open blocks until
// one connects), reads until every writer has closed, and starts over, so a
// driver that opens the FIFO again (e.g. a restarted plugin) is still heard.
func (s *logStream) run() {
	defer close(s.done)
	for {
		f, err := os.OpenFile(s.fifo, os.O_RDONLY, 0)
		if err != nil {
			s.fail(fmt.Errorf("open log fifo %s for reading: %w", s.fifo, err))
			return
		}
		select {
		case <-s.stop:
			_ = f.Close()
			return
		default:
		}
		s.update(func() { s.reader = f; s.writers++ })
		err = s.copy(f)
		_ = f.Close()
		select {
		case <-s.stop:
			return
		default:
		}
		if err != nil {
			s.fail(fmt.Errorf("read log fifo %s: %w", s.fifo, err))
			return
		}
		s.update(func() { s.reader = nil; s.closed++ })
	}
}

func (s *logStream) copy(f *os.File) error {
	chunk := make([]byte, 32*1024)
	for {
		n, err := f.Read(chunk)
		if n > 0 {
			data := chunk[:n]
			_, _ = s.file.Write(data)
			s.update(func() { s.buf.Write(data) })
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (s *logStream) fail(err error) {
	s.update(func() {
		if s.err == nil {
			s.err = err
		}
	})
}

// update runs fn under the lock and wakes every waiter.
func (s *logStream) update(fn func()) {
	s.mu.Lock()
	fn()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// snapshot returns the collected text, whether every writer that connected
// has closed again, a channel closed on the next change, and the first
// read error.
func (s *logStream) snapshot() (text string, finished bool, changed <-chan struct{}, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String(), s.writers > 0 && s.writers == s.closed, s.changed, s.err
}

// waitFor blocks until cond holds for the collected text (and the finished
// flag), or the deadline passes.
func (s *logStream) waitFor(deadline time.Time, cond func(text string, finished bool) bool) (string, bool) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		text, finished, changed, _ := s.snapshot()
		if cond(text, finished) {
			return text, true
		}
		select {
		case <-changed:
		case <-timer.C:
			return text, false
		}
	}
}

// close stops the reader. A reader blocked in open is released by briefly
// opening the write side ourselves; one blocked in read by closing its file.
// Both are retried until run has returned, because run may be between
// steps when close starts.
func (s *logStream) close() {
	select {
	case <-s.stop:
		return
	default:
	}
	close(s.stop)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	giveUp := time.After(5 * time.Second)
	for {
		s.mu.Lock()
		if s.reader != nil {
			_ = s.reader.Close()
		}
		s.mu.Unlock()
		// O_NONBLOCK: fails with ENXIO instead of blocking when no reader
		// is waiting in open.
		if w, err := os.OpenFile(s.fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			_ = w.Close()
		}
		select {
		case <-s.done:
			_ = s.file.Close()
			return
		case <-tick.C:
		case <-giveUp:
			// Leave the goroutine behind rather than hang the test's cleanup.
			_ = s.file.Close()
			return
		}
	}
}

// taskLogs are the two collectors of one task; both nil when the task has
// no log collection.
type taskLogs struct {
	stdout, stderr *logStream
}

func newTaskLogs(logDir, task string) (*taskLogs, error) {
	out, err := newLogStream(
		fmt.Sprintf("%s/.%s.stdout.fifo", logDir, task),
		fmt.Sprintf("%s/%s.stdout.0", logDir, task))
	if err != nil {
		return nil, err
	}
	errs, err := newLogStream(
		fmt.Sprintf("%s/.%s.stderr.fifo", logDir, task),
		fmt.Sprintf("%s/%s.stderr.0", logDir, task))
	if err != nil {
		out.close()
		return nil, err
	}
	return &taskLogs{stdout: out, stderr: errs}, nil
}

func (l *taskLogs) close() {
	if l == nil {
		return
	}
	if l.stdout != nil {
		l.stdout.close()
	}
	if l.stderr != nil {
		l.stderr.close()
	}
}
