package origin

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestProbe(t *testing.T) {
	content := randomBytes(100000, 7)
	tests := []struct {
		name         string
		content      []byte
		setup        func(o *testOrigin)
		wantLength   int64
		wantRanges   bool
		wantRequests int64
		wantStatus   int // StatusError code expected, 0 for success
	}{
		{name: "HEAD", wantLength: 100000, wantRanges: true, wantRequests: 1},
		{name: "HEAD not allowed", setup: func(o *testOrigin) { o.noHead = true }, wantLength: 100000, wantRanges: true, wantRequests: 2},
		{name: "no ranges", setup: func(o *testOrigin) { o.noRanges = true }, wantLength: 100000, wantRequests: 1},
		{name: "no ranges, HEAD not allowed", setup: func(o *testOrigin) { o.noRanges, o.noHead = true, true }, wantLength: 100000, wantRequests: 2},
		{name: "no length", setup: func(o *testOrigin) { o.noRanges, o.chunked = true, true }, wantLength: -1, wantRequests: 2},
		{name: "empty", content: []byte{}, wantLength: 0, wantRanges: true, wantRequests: 1},
		{name: "empty, HEAD not allowed", content: []byte{}, setup: func(o *testOrigin) { o.noHead = true }, wantLength: 0, wantRanges: false, wantRequests: 2},
		{name: "500 twice then OK", setup: func(o *testOrigin) { o.fail500 = 2 }, wantLength: 100000, wantRanges: true, wantRequests: 3},
		{name: "404 is not retried", setup: func(o *testOrigin) { o.notFound = true }, wantStatus: 404, wantRequests: 1},
		{name: "500 forever gives up", setup: func(o *testOrigin) { o.fail500 = -1 }, wantStatus: 500, wantRequests: 1 + 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := content
			if tt.content != nil {
				body = tt.content
			}
			o := newOrigin(t, body, tt.setup)
			c := testClient(t, nil, WithRetries(3))
			info, err := c.Probe(context.Background(), o.url(), http.Header{"Authorization": {"Bearer tok"}})
			if got := o.requests.Load(); got != tt.wantRequests {
				t.Errorf("%d requests, want %d", got, tt.wantRequests)
			}
			if tt.wantStatus != 0 {
				var se *StatusError
				if !errors.As(err, &se) || se.Code != tt.wantStatus {
					t.Fatalf("Probe error = %v, want StatusError %d", err, tt.wantStatus)
				}
				if IsTemporary(err) != (tt.wantStatus >= 500) {
					t.Errorf("IsTemporary(%v) = %v", err, IsTemporary(err))
				}
				return
			}
			if err != nil {
				t.Fatalf("Probe: %v", err)
			}
			if info.Length != tt.wantLength || info.AcceptRanges != tt.wantRanges {
				t.Errorf("Probe = %+v, want length %d ranges %v", info, tt.wantLength, tt.wantRanges)
			}
			if info.ETag != etagOf(body) || info.LastModified == "" || info.NotModified {
				t.Errorf("Probe validators = %+v, want ETag %s", info, etagOf(body))
			}
			for _, h := range o.headers() {
				if h.Get("Authorization") != "Bearer tok" {
					t.Errorf("request lacks the caller's Authorization header")
				}
			}
		})
	}
}

func TestValidate(t *testing.T) {
	content := randomBytes(5000, 8)
	tests := []struct {
		name            string
		setup           func(o *testOrigin)
		change          bool
		useETag, useLM  bool
		wantNotModified bool
	}{
		{name: "unchanged by ETag", useETag: true, wantNotModified: true},
		{name: "unchanged by Last-Modified", useLM: true, wantNotModified: true},
		{name: "unchanged by both", useETag: true, useLM: true, wantNotModified: true},
		{name: "unchanged, HEAD not allowed", setup: func(o *testOrigin) { o.noHead = true }, useETag: true, wantNotModified: true},
		{name: "changed ETag", change: true, useETag: true},
		{name: "changed Last-Modified", change: true, useLM: true},
		{name: "changed, HEAD not allowed", setup: func(o *testOrigin) { o.noHead = true }, change: true, useETag: true},
		{name: "no validators", useETag: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := newOrigin(t, content, tt.setup)
			c := testClient(t, nil)
			ctx := context.Background()
			first, err := c.Probe(ctx, o.url(), nil)
			if err != nil {
				t.Fatal(err)
			}
			want := content
			if tt.change {
				want = randomBytes(6000, 9)
				o.set(func(o *testOrigin) { o.changeTo, o.changeAt = want, 0 })
			}
			var etag, lm string
			if tt.useETag {
				etag = first.ETag
			}
			if tt.useLM {
				lm = first.LastModified
			}
			info, err := c.Validate(ctx, o.url(), nil, etag, lm)
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if info.NotModified != tt.wantNotModified {
				t.Fatalf("Validate = %+v, want NotModified %v", info, tt.wantNotModified)
			}
			if info.NotModified {
				if info.ETag != etag || info.LastModified != lm {
					t.Errorf("NotModified info = %+v, want validators as given", info)
				}
				return
			}
			if info.ETag != etagOf(want) || info.Length != int64(len(want)) {
				t.Errorf("fresh info = %+v, want ETag %s length %d", info, etagOf(want), len(want))
			}
		})
	}
}

// An origin that accepts connections but never answers fails the probe
// within the probe budget, retries included, with an error saying so.
func TestProbeBudget(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() }) // held open, never answered
		}
	}()
	c := testClient(t, nil, WithProbeBudget(300*time.Millisecond), WithRetries(100))
	_, err = c.Probe(context.Background(), "http://"+ln.Addr().String()+"/f?sig=s3cr3t", nil)
	if err == nil || !strings.Contains(err.Error(), "no answer within 300ms") {
		t.Fatalf("Probe error %v, want one naming the budget", err)
	}
	if strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("error %q shows the query", err)
	}
}

// TestProbeRange: one ranged GET, no HEAD first, with the same answer as
// Probe's.
func TestProbeRange(t *testing.T) {
	content := randomBytes(100000, 12)
	o := newOrigin(t, content, nil)
	c := testClient(t, nil)
	info, err := c.ProbeRange(context.Background(), o.url(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.Length != int64(len(content)) || !info.AcceptRanges {
		t.Errorf("length %d, ranges %v; want %d, true", info.Length, info.AcceptRanges, len(content))
	}
	if n := o.requests.Load(); n != 1 || o.gets.Load() != 1 {
		t.Errorf("%d requests (%d GETs), want one GET", n, o.gets.Load())
	}
}
