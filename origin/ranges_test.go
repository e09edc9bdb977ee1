package origin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// rangeHandler answers every request with a fixed response.
func rangeHandler(status int, header map[string]string, body []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}
}

func TestFetchPieceErrors(t *testing.T) {
	layout := newSink(4000, 1000).layout
	piece1 := bytes.Repeat([]byte{'x'}, 1000)
	tests := []struct {
		name      string
		handler   http.HandlerFunc
		info      Info
		piece     int
		wantIs    error
		wantText  string
		wantCalls int
	}{
		{name: "wrong Content-Range", handler: rangeHandler(206, map[string]string{"Content-Range": "bytes 0-999/4000"}, piece1),
			piece: 1, wantText: "answered range 0-999", wantCalls: 1},
		{name: "malformed Content-Range", handler: rangeHandler(206, map[string]string{"Content-Range": "pages 1-2"}, piece1),
			piece: 1, wantText: "malformed Content-Range", wantCalls: 1},
		{name: "different total", handler: rangeHandler(206, map[string]string{"Content-Range": "bytes 1000-1999/5000"}, piece1),
			piece: 1, wantIs: ErrChanged, wantCalls: 1},
		{name: "cut body is retried", handler: rangeHandler(206, map[string]string{"Content-Range": "bytes 1000-1999/4000", "Content-Length": "1000"}, nil),
			piece: 1, wantIs: io.ErrUnexpectedEOF, wantCalls: 1 + 2},
		{name: "Content-Length disagrees with range", handler: rangeHandler(206, map[string]string{"Content-Range": "bytes 1000-1999/4000"}, append(piece1, 'y')),
			piece: 1, wantText: "origin sent 1001 bytes for range 1000-1999", wantCalls: 1},
		{name: "long chunked body", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Range", "bytes 1000-1999/4000")
			w.WriteHeader(206)
			_, _ = w.Write(piece1)
			w.(http.Flusher).Flush()
			_, _ = w.Write([]byte("y"))
		}, piece: 1, wantText: "more than the 1000 bytes", wantCalls: 1},
		{name: "short chunked body is retried", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Range", "bytes 1000-1999/4000")
			w.WriteHeader(206)
			w.(http.Flusher).Flush()
		}, piece: 1, wantIs: io.ErrUnexpectedEOF, wantCalls: 1 + 2},
		{name: "200 means no ranges", handler: rangeHandler(200, nil, bytes.Repeat([]byte{'x'}, 4000)),
			piece: 1, wantIs: ErrNoRanges, wantCalls: 1},
		{name: "200 to If-Range means changed", handler: rangeHandler(200, map[string]string{"ETag": `"new"`}, bytes.Repeat([]byte{'x'}, 4000)),
			info: Info{ETag: `"old"`}, piece: 1, wantIs: ErrChanged, wantCalls: 1},
		{name: "200 with another length means changed", handler: rangeHandler(200, map[string]string{"Content-Length": "3000"}, bytes.Repeat([]byte{'x'}, 3000)),
			piece: 1, wantIs: ErrChanged, wantCalls: 1},
		{name: "416 with another length", handler: rangeHandler(416, map[string]string{"Content-Range": "bytes */500"}, nil),
			piece: 1, wantIs: ErrChanged, wantCalls: 1},
		{name: "403", handler: rangeHandler(403, nil, nil), piece: 1, wantText: "origin returned 403 Forbidden for", wantCalls: 1},
		{name: "no such piece", handler: rangeHandler(200, nil, nil), piece: 4, wantText: "no such piece", wantCalls: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			calls := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				calls++
				mu.Unlock()
				tt.handler(w, r)
			}))
			defer srv.Close()
			c := testClient(t, nil, WithRetries(2))
			_, err := c.FetchPiece(context.Background(), srv.URL+"/f", nil, tt.info, layout, tt.piece, FillOptions{})
			if err == nil {
				t.Fatal("FetchPiece succeeded")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error = %v, want %v", err, tt.wantIs)
			}
			if tt.wantText != "" && !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error = %v, want it to mention %q", err, tt.wantText)
			}
			if tt.piece < 4 && !strings.Contains(err.Error(), fmt.Sprintf("fetch piece %d of %s/f", tt.piece, srv.URL)) {
				t.Errorf("error %q does not say what was being done", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if calls != tt.wantCalls {
				t.Errorf("%d requests, want %d", calls, tt.wantCalls)
			}
		})
	}
}

func TestFetchPieceRequest(t *testing.T) {
	content := randomBytes(10000, 10)
	o := newOrigin(t, content, nil)
	c := testClient(t, nil)
	info, err := c.Probe(context.Background(), o.url(), nil)
	if err != nil {
		t.Fatal(err)
	}
	layout := newSink(10000, 4096).layout
	got, err := c.FetchPiece(context.Background(), o.url(), http.Header{"X-Token": {"t"}}, info, layout, 2, FillOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, content[8192:]) {
		t.Fatal("wrong bytes")
	}
	hs := o.headers()
	h := hs[len(hs)-1]
	if h.Get("Range") != "bytes=8192-9999" || h.Get("If-Range") != info.ETag || h.Get("X-Token") != "t" {
		t.Errorf("request headers = %v", h)
	}
}

// TestFetchRange: any range of the content, retried and checked like a
// piece; ranges outside the content are refused before any request.
func TestFetchRange(t *testing.T) {
	content := randomBytes(testLength, 9)
	o := newOrigin(t, content, nil)
	c := testClient(t, nil)
	info, err := c.Probe(context.Background(), o.url(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		off, n int64
		ok     bool
	}{
		{"first byte", 0, 1, true},
		{"across pieces", testPieceSize - 10, 100, true},
		{"last bytes", testLength - 7, 7, true},
		{"whole", 0, testLength, true},
		{"past the end", testLength - 7, 8, false},
		{"negative offset", -1, 4, false},
		{"empty", 5, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gets := o.gets.Load()
			dst := make([]byte, tt.n)
			err := c.FetchRange(context.Background(), o.url(), nil, info, tt.off, dst, FillOptions{})
			if !tt.ok {
				if err == nil || o.gets.Load() != gets {
					t.Fatalf("err %v after %d requests; want an error and none", err, o.gets.Load()-gets)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dst, content[tt.off:tt.off+tt.n]) {
				t.Error("bytes differ from the content's")
			}
		})
	}
}

// TestStreamRange: a long range arrives block by block in order, each
// block handed on as soon as it is in; a cut resumes after the bytes
// already received, within the block; an error from emit ends the stream
// at once, returned as it is.
func TestStreamRange(t *testing.T) {
	content := randomBytes(testLength, 11)
	const block = 3000
	off, size := int64(testPieceSize-17), int64(5*block+123)
	errStop := errors.New("store full")
	tests := []struct {
		name      string
		arm       func(o *testOrigin)
		stopAfter int // emit fails at this block (0: never)
		gets      int64
		blocks    int
		wantErr   error
	}{
		{"whole range", nil, 0, 1, 6, nil},
		{"cut halfway resumes", func(o *testOrigin) { o.cutOnce = true }, 0, 2, 6, nil},
		{"emit error stops", nil, 2, 1, 2, errStop},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newOrigin(t, content, nil)
			c := testClient(t, nil)
			info, err := c.Probe(context.Background(), o.url(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.arm != nil {
				o.set(tt.arm)
			}
			gets := o.gets.Load()
			var got []byte
			var sizes []int
			emit := func(b []byte) error {
				sizes = append(sizes, len(b))
				if len(sizes) == tt.stopAfter {
					return errStop
				}
				got = append(got, b...)
				return nil
			}
			err = c.StreamRange(context.Background(), o.url(), nil, info, off, size, make([]byte, block), emit, FillOptions{})
			if err != tt.wantErr {
				t.Fatalf("StreamRange: %v, want %v", err, tt.wantErr)
			}
			if n := o.gets.Load() - gets; n != tt.gets {
				t.Errorf("%d GETs, want %d", n, tt.gets)
			}
			if len(sizes) != tt.blocks {
				t.Fatalf("%d blocks %v, want %d", len(sizes), sizes, tt.blocks)
			}
			for i, n := range sizes {
				if want := int(min(block, size-int64(i*block))); n != want {
					t.Errorf("block %d has %d bytes, want %d", i, n, want)
				}
			}
			if want := content[off : off+int64(len(got))]; !bytes.Equal(got, want) {
				t.Error("streamed bytes differ from the content's")
			}
			if tt.wantErr == nil && int64(len(got)) != size {
				t.Errorf("streamed %d bytes, want %d", len(got), size)
			}
			if tt.name == "cut halfway resumes" {
				o.mu.Lock()
				last := o.reqHeader[len(o.reqHeader)-1].Get("Range")
				o.mu.Unlock()
				var from, to int64
				if _, err := fmt.Sscanf(last, "bytes=%d-%d", &from, &to); err != nil || from <= off || to != off+size-1 {
					t.Errorf("resumed with Range %q; want one starting past %d and ending at %d", last, off, off+size-1)
				}
			}
		})
	}
}
