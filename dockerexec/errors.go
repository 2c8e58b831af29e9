// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package dockerexec

import (
	"errors"
	"fmt"
	"strings"

	"github.com/docker/docker/client"
)

// Sentinel errors, for errors.Is.
var (
	// ErrInvalidInput: a bad runner name, empty JIT config or container ID.
	ErrInvalidInput = errors.New("invalid input")
	// ErrEngineUnreachable: the Docker engine did not answer.
	ErrEngineUnreachable = errors.New("docker engine unreachable")
	// ErrImageUnavailable: the runner image is missing and could not be
	// pulled (or pull_policy is never).
	ErrImageUnavailable = errors.New("runner image unavailable")
	// ErrShutdown: the executor was shut down and starts no more runners.
	ErrShutdown = errors.New("executor shut down")
)

// wrap adds what was being done to err, and says so plainly when the engine
// could not be reached at all, because "connection refused" on a socket path
// is the one failure an operator sees first on a fresh host.
func (e *Executor) wrap(err error, format string, args ...any) error {
	doing := fmt.Sprintf(format, args...)
	if client.IsErrConnectionFailed(err) {
		return fmt.Errorf("dockerexec: %s: %w: nothing answers at %s (is dockerd running and DOCKER_HOST set?): %w",
			doing, ErrEngineUnreachable, e.api.DaemonHost(), err)
	}
	return fmt.Errorf("dockerexec: %s: %w", doing, err)
}

// redactedError stands in for an error whose text contained the JIT config.
// It keeps errors.Is working for classification but deliberately has no
// Unwrap, so the secret cannot be reached through the chain.
type redactedError struct {
	msg   string
	inner error
}

func (r *redactedError) Error() string { return r.msg }

func (r *redactedError) Is(target error) bool { return errors.Is(r.inner, target) }

// redact removes secret from err's text. The engine does not echo container
// environment or copied content in its errors today; this guards against a
// future one that does, since a JIT config in a log line is a usable
// credential.
func redact(err error, secret string) error {
	if err == nil || secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return &redactedError{msg: strings.ReplaceAll(err.Error(), secret, "[REDACTED]"), inner: err}
}
