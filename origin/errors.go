package origin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
)

// ErrNoRanges means the origin answered a range request with the whole body.
var ErrNoRanges = errors.New("origin does not support range requests")

// ErrChanged means the origin's content is not the content being downloaded
// any more: its length differs from the layout's, or its validators changed
// (including a 200 answer to a request carrying If-Range).
var ErrChanged = errors.New("origin content changed during download")

// StatusError is an origin's non-success HTTP status.
type StatusError struct {
	Code   int
	Status string // as received, e.g. "404 Not Found"
	URL    string // redacted with manifest.RedactURL
}

// Error implements error.
func (e *StatusError) Error() string {
	status := e.Status
	if status == "" {
		status = strings.TrimSpace(strconv.Itoa(e.Code) + " " + http.StatusText(e.Code))
	}
	return fmt.Sprintf("origin returned %s for %s", status, e.URL)
}

// Temporary reports whether the status is worth retrying: 5xx, 408 and 429.
func (e *StatusError) Temporary() bool {
	return e.Code >= 500 || e.Code == http.StatusRequestTimeout || e.Code == http.StatusTooManyRequests
}

// permanentError marks an error that must not be retried whatever it wraps
// (a failed sink write, a resume that cannot be done safely).
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsTemporary reports whether err is worth retrying: a temporary
// StatusError, a network error (refused or reset connections, timeouts,
// DNS failures other than "no such host"), or a body that ended early
// (unexpected EOF). Context cancellation and deadlines are not temporary,
// nor are ErrNoRanges, ErrChanged and TLS certificate errors.
func IsTemporary(err error) bool {
	if err == nil {
		return false
	}
	var pe *permanentError
	if errors.As(err, &pe) {
		return false
	}
	if isContextErr(err) {
		return false
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Temporary()
	}
	if errors.Is(err, ErrNoRanges) || errors.Is(err, ErrChanged) {
		return false
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return true
	}
	var (
		certErr      *tls.CertificateVerificationError
		unknownAuth  x509.UnknownAuthorityError
		hostnameErr  x509.HostnameError
		certInvalid  x509.CertificateInvalidError
		recordHdrErr tls.RecordHeaderError
	)
	if errors.As(err, &certErr) || errors.As(err, &unknownAuth) || errors.As(err, &hostnameErr) ||
		errors.As(err, &certInvalid) || errors.As(err, &recordHdrErr) {
		return false
	}
	for _, errno := range []syscall.Errno{syscall.ECONNRESET, syscall.ECONNREFUSED, syscall.ECONNABORTED,
		syscall.EPIPE, syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH} {
		if errors.Is(err, errno) {
			return true
		}
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return !dnsErr.IsNotFound
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return false
}

// isContextErr reports whether err's chain holds context.Canceled or
// context.DeadlineExceeded itself. It compares identities rather than using
// errors.Is because net/http's own timeouts (response header timeout) claim to
// be context.DeadlineExceeded yet are worth retrying.
func isContextErr(err error) bool {
	for err != nil {
		if err == context.Canceled || err == context.DeadlineExceeded {
			return true
		}
		switch x := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range x.Unwrap() {
				if isContextErr(e) {
					return true
				}
			}
			return false
		case interface{ Unwrap() error }:
			err = x.Unwrap()
		default:
			return false
		}
	}
	return false
}
