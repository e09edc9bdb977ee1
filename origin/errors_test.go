package origin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"syscall"
	"testing"
	"time"
)

func TestStatusError(t *testing.T) {
	e := &StatusError{Code: 404, Status: "404 Not Found", URL: "http://host/path"}
	if got, want := e.Error(), "origin returned 404 Not Found for http://host/path"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got := (&StatusError{Code: 503, URL: "u"}).Error(); got != "origin returned 503 Service Unavailable for u" {
		t.Errorf("Error() without Status = %q", got)
	}
	for code, want := range map[int]bool{400: false, 403: false, 404: false, 408: true, 429: true, 500: true, 502: true, 503: true} {
		if got := (&StatusError{Code: code}).Temporary(); got != want {
			t.Errorf("Temporary(%d) = %v, want %v", code, got, want)
		}
	}
}

func TestIsTemporary(t *testing.T) {
	// A real response header timeout: net/http's error matches
	// context.DeadlineExceeded through Is, yet must be retried.
	stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer stall.Close()
	hc := &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: 50 * time.Millisecond}}
	_, headerTimeout := hc.Get(stall.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, stall.URL, nil)
	_, ctxDeadline := http.DefaultClient.Do(req)

	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"500", &StatusError{Code: 500}, true},
		{"wrapped 503", fmt.Errorf("x: %w", &StatusError{Code: 503}), true},
		{"404", &StatusError{Code: 404}, false},
		{"unexpected EOF", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{"connection reset", &net.OpError{Op: "read", Err: syscall.ECONNRESET}, true},
		{"connection refused", &url.Error{Op: "Get", URL: "u", Err: &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}}, true},
		{"no such host", &net.DNSError{Err: "no such host", IsNotFound: true}, false},
		{"DNS timeout", &net.DNSError{Err: "timeout", IsTimeout: true}, true},
		{"canceled", fmt.Errorf("x: %w", context.Canceled), false},
		{"deadline", &url.Error{Op: "Get", URL: "u", Err: context.DeadlineExceeded}, false},
		{"real ctx deadline", ctxDeadline, false},
		{"response header timeout", headerTimeout, true},
		{"no ranges", ErrNoRanges, false},
		{"changed", fmt.Errorf("x: %w", ErrChanged), false},
		{"permanent wrapper", permanent(io.ErrUnexpectedEOF), false},
		{"other", errors.New("boom"), false},
	}
	for _, tt := range tests {
		if got := IsTemporary(tt.err); got != tt.want {
			t.Errorf("%s: IsTemporary(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}
