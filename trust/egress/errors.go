package egress

import (
	"errors"
	"fmt"
)

// ErrUnavailable is the one error every refused or unreachable origin reports
// to callers: refused by policy, connection refused, timed out, name not
// found, and anything passed through Conceal. Errors from this package wrap
// it (errors.Is(err, ErrUnavailable) holds) and their Error() is exactly
// ErrUnavailable.Error(), so an answer sent to a remote party cannot be used
// to tell a closed port from a filtered one or from a policy refusal.
//
// The real reason is for the local log only: read it with Reason. The
// underlying network error is deliberately not reachable through
// errors.Unwrap/As, so code that classifies errors (retry decisions, for
// instance) treats every cause alike.
var ErrUnavailable = errors.New("origin unavailable")

// unavailableError is an ErrUnavailable carrying the local reason.
type unavailableError struct {
	reason string
}

func (e *unavailableError) Error() string { return ErrUnavailable.Error() }
func (e *unavailableError) Unwrap() error { return ErrUnavailable }

func unavailable(format string, args ...any) error {
	return &unavailableError{reason: fmt.Sprintf(format, args...)}
}

// Reason returns the local, loggable reason behind err: why the policy
// refused the origin, or the network error that made it unreachable. For an
// error that carries no such reason it returns err.Error(), and "" for nil.
// Never send it to the party that caused the fetch.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	var ue *unavailableError
	if errors.As(err, &ue) {
		return ue.reason
	}
	return err.Error()
}

// Conceal returns err as an ErrUnavailable error whose Error() is exactly
// ErrUnavailable's: the error from this package that err wraps (dropping any
// wrapping such as *url.Error, whose text names the URL), or else a new one
// whose Reason is err's text. It returns nil for nil. Callers answering a
// remote party use it on every failure of a remotely caused fetch that is not
// an HTTP status from the origin (a TLS handshake failure or a malformed
// response also reveals what listens on a port).
func Conceal(err error) error {
	if err == nil {
		return nil
	}
	var ue *unavailableError
	if errors.As(err, &ue) {
		return ue
	}
	return &unavailableError{reason: err.Error()}
}
