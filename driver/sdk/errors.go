// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package sdk

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	structspb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/structs"
)

// toStatus maps a driver error onto the gRPC status Nomad's client expects.
// ctx is the RPC's context: only when it has ended may the answer be
// Canceled or DeadlineExceeded. Ordinary failures never become Unavailable or
// Canceled, which the client reads as "the plugin is dying" (and then waits
// 3 s on every error).
func toStatus(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return status.FromContextError(ctxErr).Err()
	}
	var rec *RecoverableError
	switch {
	case errors.As(err, &rec):
		return recoverableStatus(err.Error())
	case errors.Is(err, ErrNotSupported):
		return status.Error(codes.Unimplemented, err.Error())
	case errors.Is(err, ErrTaskNotFound):
		// Nomad cannot recognise this across the wire; the text is what
		// users see in events and logs.
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Aborted, err.Error())
	default:
		return status.Error(codes.Unknown, err.Error())
	}
}

// recoverableStatus builds a status whose first detail is Nomad's
// RecoverableError{recoverable: true}, so the task's local restart policy
// applies instead of failing the task on this node.
func recoverableStatus(msg string) error {
	st := status.New(codes.FailedPrecondition, msg)
	withDetail, err := st.WithDetails(&structspb.RecoverableError{Recoverable: true})
	if err != nil {
		return st.Err() // cannot happen for a registered message; stays a plain error
	}
	return withDetail.Err()
}

// IsRecoverableStatus reports whether a gRPC error carries Nomad's
// RecoverableError{recoverable: true} as its first detail, as the Nomad
// client checks it. Test harnesses use it.
func IsRecoverableStatus(err error) bool {
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	details := st.Details()
	if len(details) == 0 {
		return false
	}
	rec, ok := details[0].(*structspb.RecoverableError)
	return ok && rec.GetRecoverable()
}
