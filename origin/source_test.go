package origin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

const (
	testLength    = 1<<20 + 12345 // 17 pieces of 64 KiB, the last one short
	testPieceSize = 64 << 10
)

func TestFill(t *testing.T) {
	content := randomBytes(testLength, 1)
	changed := randomBytes(testLength, 2)
	half := int64(testLength / 2)
	exact := func(want int64) func(int64) error {
		return func(got int64) error {
			if got != want {
				return fmt.Errorf("read %d bytes from origin, want exactly %d", got, want)
			}
			return nil
		}
	}
	tests := []struct {
		name    string
		origin  func(o *testOrigin) // before the probe
		arm     func(o *testOrigin) // after the probe, before Fill
		info    func(Info) Info     // adjusts the probed Info
		have    []int               // pieces the sink starts with
		opt     FillOptions
		wantErr error
		bytes   func(int64) error
		check   func(t *testing.T, o *testOrigin, s *memSink)
	}{
		{name: "ranges", bytes: exact(testLength)},
		{name: "ranges one worker", opt: FillOptions{Concurrency: 1}, bytes: exact(testLength)},
		{name: "ranges many workers", opt: FillOptions{Concurrency: 32}, bytes: exact(testLength)},
		{name: "no range support streams", origin: func(o *testOrigin) { o.noRanges = true }, bytes: exact(testLength),
			check: func(t *testing.T, o *testOrigin, s *memSink) {
				if g := o.gets.Load(); g != 1 {
					t.Errorf("%d GETs, want 1 streaming GET", g)
				}
			}},
		{name: "no range support chunked", origin: func(o *testOrigin) { o.noRanges, o.chunked = true, true }, bytes: exact(testLength)},
		{name: "claimed ranges fall back to stream", origin: func(o *testOrigin) { o.noRanges = true },
			info: func(i Info) Info { i.AcceptRanges = true; return i }, bytes: exact(testLength)},
		{name: "HEAD not allowed", origin: func(o *testOrigin) { o.noHead = true }, bytes: exact(testLength)},
		{name: "500 twice then OK", arm: func(o *testOrigin) { o.fail500 = 2 }, bytes: exact(testLength)},
		{name: "500 twice then OK streaming", origin: func(o *testOrigin) { o.noRanges = true },
			arm: func(o *testOrigin) { o.fail500 = 2 }, bytes: exact(testLength)},
		{name: "cut mid-body with ranges resumes", opt: FillOptions{Concurrency: 1},
			arm: func(o *testOrigin) { o.cutOnce = true }, bytes: exact(testLength),
			check: func(t *testing.T, o *testOrigin, s *memSink) {
				// One request per piece plus the resume.
				if g, want := o.gets.Load(), int64(s.layout.NumPieces()+1); g != want {
					t.Errorf("%d GETs, want %d", g, want)
				}
			}},
		{name: "cut mid-stream resumes with a range",
			info: func(i Info) Info { i.AcceptRanges = false; return i },
			arm:  func(o *testOrigin) { o.cutOnce = true }, bytes: exact(testLength),
			check: func(t *testing.T, o *testOrigin, s *memSink) {
				if hs := o.headers(); len(hs) > 0 {
					h := hs[len(hs)-1]
					if h.Get("Range") != fmt.Sprintf("bytes=%d-", testLength/2) || h.Get("If-Range") == "" {
						t.Errorf("resume sent Range %q If-Range %q", h.Get("Range"), h.Get("If-Range"))
					}
				}
			}},
		{name: "cut mid-stream without ranges re-reads and discards",
			origin: func(o *testOrigin) { o.noRanges = true }, arm: func(o *testOrigin) { o.cutOnce = true },
			bytes: exact(testLength + half)},
		{name: "cut mid-stream chunked without ranges",
			origin: func(o *testOrigin) { o.noRanges, o.chunked = true, true }, arm: func(o *testOrigin) { o.cutOnce = true },
			bytes: func(got int64) error {
				if got <= testLength || got > testLength+half {
					return fmt.Errorf("read %d bytes, want in (%d, %d]", got, testLength, testLength+half)
				}
				return nil
			}},
		{name: "sink has some pieces, ranges", have: []int{0, 3, 16},
			bytes: exact(testLength - 2*testPieceSize - (testLength - 16*testPieceSize)),
			check: func(t *testing.T, o *testOrigin, s *memSink) {
				for _, i := range []int{0, 3, 16} {
					if slices.Contains(s.puts, i) {
						t.Errorf("piece %d was put although the sink had it", i)
					}
				}
			}},
		{name: "sink has some pieces, stream", have: []int{0, 3, 16}, origin: func(o *testOrigin) { o.noRanges = true },
			bytes: exact(testLength),
			check: func(t *testing.T, o *testOrigin, s *memSink) {
				if len(s.puts) != 14 {
					t.Errorf("puts = %v, want the 14 missing pieces", s.puts)
				}
			}},
		{name: "sink has everything", have: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, bytes: exact(0),
			check: func(t *testing.T, o *testOrigin, s *memSink) {
				if g := o.gets.Load(); g != 0 {
					t.Errorf("%d GETs for a complete sink", g)
				}
			}},
		{name: "content changed, ranges", arm: func(o *testOrigin) { o.changeTo, o.changeAt = changed, o.requests.Load() },
			wantErr: ErrChanged},
		{name: "content changed, stream", origin: func(o *testOrigin) { o.noRanges = true },
			arm: func(o *testOrigin) { o.changeTo, o.changeAt = changed, o.requests.Load() }, wantErr: ErrChanged},
		{name: "content changed length, ranges", arm: func(o *testOrigin) { o.changeTo, o.changeAt = changed[:testLength-1], o.requests.Load() },
			wantErr: ErrChanged},
		{name: "content changed length, stream", origin: func(o *testOrigin) { o.noRanges = true },
			arm: func(o *testOrigin) { o.changeTo, o.changeAt = changed[:testLength-100], o.requests.Load() }, wantErr: ErrChanged},
		{name: "content shorter, chunked stream, no validators", origin: func(o *testOrigin) { o.noRanges, o.chunked, o.noValid = true, true, true },
			arm: func(o *testOrigin) { o.changeTo, o.changeAt = content[:testLength-100], o.requests.Load() }, wantErr: ErrChanged},
		{name: "content longer, chunked stream, no validators", origin: func(o *testOrigin) { o.noRanges, o.chunked, o.noValid = true, true, true },
			arm: func(o *testOrigin) {
				o.changeTo, o.changeAt = append(slices.Clone(content), 1), o.requests.Load()
			}, wantErr: ErrChanged},
		{name: "404", arm: func(o *testOrigin) { o.notFound = true }, wantErr: &StatusError{Code: 404},
			check: func(t *testing.T, o *testOrigin, s *memSink) {
				if g := o.gets.Load(); g > 4 {
					t.Errorf("%d GETs for a 404, want at most one per worker", g)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := newOrigin(t, content, tt.origin)
			c := testClient(t, nil)
			ctx := context.Background()
			header := http.Header{"Authorization": {"Bearer tok"}}
			info, err := c.Probe(ctx, o.url(), header)
			if err != nil {
				t.Fatalf("Probe: %v", err)
			}
			if info.Length != testLength && !o.chunked {
				t.Fatalf("Probe length = %d, want %d", info.Length, testLength)
			}
			if tt.info != nil {
				info = tt.info(info)
			}
			if tt.arm != nil {
				o.set(tt.arm)
			}
			o.gets.Store(0)
			sink := newSink(testLength, testPieceSize)
			sink.preload(content, tt.have...)
			var count byteCounter
			opt := tt.opt
			opt.OnBytes = count.add
			err = c.Fill(ctx, o.url(), header, info, sink, opt)
			switch want := tt.wantErr; {
			case want == nil && err != nil:
				t.Fatalf("Fill: %v", err)
			case want == nil:
				if sink.sum(t) != sha256.Sum256(content) {
					t.Fatal("assembled content differs from the origin's")
				}
			default:
				var se, wantSE *StatusError
				if errors.As(want, &wantSE) {
					if !errors.As(err, &se) || se.Code != wantSE.Code {
						t.Fatalf("Fill error = %v, want StatusError %d", err, wantSE.Code)
					}
				} else if !errors.Is(err, want) {
					t.Fatalf("Fill error = %v, want %v", err, want)
				}
			}
			if tt.bytes != nil {
				if err := tt.bytes(count.total.Load()); err != nil {
					t.Error(err)
				}
			}
			if tt.check != nil {
				tt.check(t, o, sink)
			}
			for _, h := range o.headers() {
				if h.Get("Authorization") != "Bearer tok" || h.Get("Accept-Encoding") != "identity" {
					t.Errorf("request headers = %v, want the caller's Authorization and identity encoding", h)
				}
			}
		})
	}
}

func TestFillEmpty(t *testing.T) {
	o := newOrigin(t, nil, nil)
	c := testClient(t, nil)
	info, err := c.Probe(context.Background(), o.url(), nil)
	if err != nil || info.Length != 0 {
		t.Fatalf("Probe = %+v, %v", info, err)
	}
	if err := c.Fill(context.Background(), o.url(), nil, info, newSink(0, testPieceSize), FillOptions{}); err != nil {
		t.Fatalf("Fill: %v", err)
	}
	if g := o.gets.Load(); g != 0 {
		t.Errorf("%d GETs for empty content", g)
	}
}

func TestFillOrder(t *testing.T) {
	content := randomBytes(testLength, 3)
	o := newOrigin(t, content, nil)
	c := testClient(t, nil)
	info, err := c.Probe(context.Background(), o.url(), nil)
	if err != nil {
		t.Fatal(err)
	}
	sink := newSink(testLength, testPieceSize)
	// The caller wants 10 and 5 first; the rest follow in ascending order.
	order := func() []int { return []int{10, 5, 99, -1} }
	if err := c.Fill(context.Background(), o.url(), nil, info, sink, FillOptions{Concurrency: 1, Order: order}); err != nil {
		t.Fatal(err)
	}
	want := []int{10, 5, 0, 1, 2, 3, 4, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16}
	if !slices.Equal(sink.puts, want) {
		t.Errorf("put order = %v, want %v", sink.puts, want)
	}
}

func TestFillSinkError(t *testing.T) {
	content := randomBytes(testLength, 4)
	for _, noRanges := range []bool{false, true} {
		t.Run(fmt.Sprintf("noRanges=%v", noRanges), func(t *testing.T) {
			o := newOrigin(t, content, func(o *testOrigin) { o.noRanges = noRanges })
			c := testClient(t, nil)
			info, err := c.Probe(context.Background(), o.url(), nil)
			if err != nil {
				t.Fatal(err)
			}
			sink := newSink(testLength, testPieceSize)
			diskFull := errors.New("disk full")
			sink.putErr = diskFull
			err = c.Fill(context.Background(), o.url(), nil, info, sink, FillOptions{})
			if !errors.Is(err, diskFull) || !strings.Contains(err.Error(), "store piece") {
				t.Fatalf("Fill error = %v, want the sink's error", err)
			}
			if g := o.gets.Load(); g > 4 {
				t.Errorf("%d GETs: a sink error must not be retried", g)
			}
		})
	}
}

func TestFillCancel(t *testing.T) {
	content := randomBytes(testLength, 5)
	tests := []struct {
		name  string
		setup func(o *testOrigin)
		info  Info
		opt   FillOptions
	}{
		{"ranges, stalled origin", func(o *testOrigin) { o.hang = true }, Info{Length: testLength, AcceptRanges: true}, FillOptions{}},
		{"stream, stalled origin", func(o *testOrigin) { o.hang = true }, Info{Length: testLength}, FillOptions{}},
		{"ranges, rate limited", nil, Info{Length: testLength, AcceptRanges: true},
			FillOptions{Limiter: rate.NewLimiter(rate.Limit(8<<10), 8<<10)}},
		{"stream, rate limited", func(o *testOrigin) { o.noRanges = true }, Info{Length: testLength},
			FillOptions{Limiter: rate.NewLimiter(rate.Limit(8<<10), 8<<10)}},
		{"failing origin, long backoff", func(o *testOrigin) { o.fail500 = -1 }, Info{Length: testLength, AcceptRanges: true}, FillOptions{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := newOrigin(t, content, tt.setup)
			c := testClient(t, nil, WithBackoff(time.Minute, time.Minute))
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			start := time.Now()
			err := c.Fill(ctx, o.url(), nil, tt.info, newSink(testLength, testPieceSize), tt.opt)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Fill error = %v, want context.Canceled", err)
			}
			if IsTemporary(err) {
				t.Errorf("IsTemporary(%v) = true", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Fill took %v to notice cancellation", d)
			}
		})
	}
}

func TestFillLimiterChunks(t *testing.T) {
	content := randomBytes(testLength, 6)
	o := newOrigin(t, content, nil)
	c := testClient(t, nil)
	info, err := c.Probe(context.Background(), o.url(), nil)
	if err != nil {
		t.Fatal(err)
	}
	const burst = 16 << 10
	var count byteCounter
	lim := rate.NewLimiter(rate.Limit(64<<20), burst)
	sink := newSink(testLength, testPieceSize)
	if err := c.Fill(context.Background(), o.url(), nil, info, sink, FillOptions{Limiter: lim, OnBytes: count.add}); err != nil {
		t.Fatal(err)
	}
	if sink.sum(t) != sha256.Sum256(content) {
		t.Fatal("content differs")
	}
	if m := count.max.Load(); m > burst {
		t.Errorf("largest read %d exceeds the limiter burst %d", m, burst)
	}
}

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

func TestDownload(t *testing.T) {
	content := randomBytes(300000, 11)
	tests := []struct {
		name       string
		setup      func(o *testOrigin)
		wantLength int64
		wantStatus int
	}{
		{name: "with length", wantLength: 300000},
		{name: "without length", setup: func(o *testOrigin) { o.noRanges, o.chunked = true, true }, wantLength: -1},
		{name: "cut and resumed", setup: func(o *testOrigin) { o.cutOnce = true }, wantLength: 300000},
		{name: "500 twice", setup: func(o *testOrigin) { o.fail500 = 2 }, wantLength: 300000},
		{name: "404", setup: func(o *testOrigin) { o.notFound = true }, wantStatus: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := newOrigin(t, content, tt.setup)
			c := testClient(t, nil)
			var buf bytes.Buffer
			info, n, err := c.Download(context.Background(), o.url(), nil, &buf)
			if tt.wantStatus != 0 {
				var se *StatusError
				if !errors.As(err, &se) || se.Code != tt.wantStatus {
					t.Fatalf("Download error = %v, want StatusError %d", err, tt.wantStatus)
				}
				return
			}
			if err != nil {
				t.Fatalf("Download: %v", err)
			}
			if n != int64(len(content)) || !bytes.Equal(buf.Bytes(), content) {
				t.Fatalf("Download wrote %d bytes, content equal: %v", n, bytes.Equal(buf.Bytes(), content))
			}
			if info.Length != tt.wantLength || info.ETag != etagOf(content) {
				t.Errorf("info = %+v, want length %d", info, tt.wantLength)
			}
		})
	}
}

func TestDownloadCutWithoutValidator(t *testing.T) {
	content := randomBytes(300000, 12)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(content[:1000])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}))
	defer srv.Close()
	c := testClient(t, nil)
	_, n, err := c.Download(context.Background(), srv.URL, nil, io.Discard)
	if err == nil || n != 1000 || !strings.Contains(err.Error(), "cannot resume") {
		t.Fatalf("Download = %d, %v; want a failure after 1000 bytes", n, err)
	}
}

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

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in                string
		start, end, total int64
		ok                bool
	}{
		{"bytes 0-0/1234", 0, 0, 1234, true},
		{"bytes 100-199/*", 100, 199, -1, true},
		{"bytes */0", -1, -1, 0, true},
		{"bytes */*", 0, 0, 0, false},
		{"bytes 5-4/10", 0, 0, 0, false},
		{"bytes 0-10/10", 0, 0, 0, false},
		{"items 0-1/2", 0, 0, 0, false},
		{"bytes 0-1", 0, 0, 0, false},
		{"", 0, 0, 0, false},
	}
	for _, tt := range tests {
		s, e, total, ok := parseContentRange(tt.in)
		if ok != tt.ok || (ok && (s != tt.start || e != tt.end || total != tt.total)) {
			t.Errorf("parseContentRange(%q) = %d,%d,%d,%v", tt.in, s, e, total, ok)
		}
	}
}

func TestBackoff(t *testing.T) {
	c := New()
	for n, want := range map[int]time.Duration{1: 200 * time.Millisecond, 2: 400 * time.Millisecond, 5: 3200 * time.Millisecond, 6: 5 * time.Second, 20: 5 * time.Second} {
		for range 20 {
			if d := c.backoff(n); d > want || d < want*3/4 {
				t.Errorf("backoff(%d) = %v, want within [%v, %v]", n, d, want*3/4, want)
			}
		}
	}
}

// TestNoSecretsInLogsOrErrors runs failing requests with debug logging and
// checks that neither the query's signature nor header values leak.
func TestNoSecretsInLogsOrErrors(t *testing.T) {
	content := randomBytes(testLength, 13)
	var logs bytes.Buffer
	var mu sync.Mutex
	c := testClient(t, lockedWriter{&mu, &logs}, WithRetries(1))
	header := http.Header{"Authorization": {"Bearer HEADERSECRET"}}
	ctx := context.Background()
	var errs []error

	o := newOrigin(t, content, func(o *testOrigin) { o.fail500 = 3 })
	_, err := c.Probe(ctx, o.url(), header)
	errs = append(errs, err)
	o.set(func(o *testOrigin) { o.fail500, o.cutOnce = 1, true })
	info := Info{Length: testLength, AcceptRanges: true, ETag: etagOf(content)}
	errs = append(errs, c.Fill(ctx, o.url(), header, info, newSink(testLength, testPieceSize), FillOptions{}))
	o.set(func(o *testOrigin) { o.notFound = true })
	_, err = c.Validate(ctx, o.url(), header, `"x"`, "")
	errs = append(errs, err)

	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL + "/f?sig=s3cr3tSIG"
	dead.Close()
	_, err = c.Probe(ctx, deadURL, header)
	errs = append(errs, err)
	_, err = c.Probe(ctx, "ftp://user:pw@host/f?sig=s3cr3tSIG", header)
	errs = append(errs, err)

	mu.Lock()
	out := logs.String()
	mu.Unlock()
	if !strings.Contains(out, "retrying") || !strings.Contains(out, "sig=REDACTED") {
		t.Errorf("logs do not describe the retries:\n%s", out)
	}
	for _, s := range []string{"s3cr3tSIG", "HEADERSECRET"} {
		if strings.Contains(out, s) {
			t.Errorf("logs contain %q:\n%s", s, out)
		}
		for _, e := range errs {
			if e != nil && strings.Contains(e.Error(), s) {
				t.Errorf("error contains %q: %v", s, e)
			}
		}
	}
	if errs[0] == nil || errs[2] == nil || errs[3] == nil || errs[4] == nil {
		t.Errorf("expected failures, got %v", errs)
	}
	if errs[1] != nil {
		t.Errorf("Fill after one 500 and a cut: %v", errs[1])
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
