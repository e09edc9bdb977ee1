package origin

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"
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

// Every limiter given is charged for every byte from the origin (a
// download's own limit and the host's), with reads no larger than the
// smallest burst.
func TestFillChargesEveryLimiter(t *testing.T) {
	content := randomBytes(testLength, 7)
	o := newOrigin(t, content, nil)
	c := testClient(t, nil)
	info, err := c.Probe(context.Background(), o.url(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Nearly no refill: the tokens left say how many bytes were charged.
	const big, small = 64 << 20, 8 << 10
	own := rate.NewLimiter(rate.Limit(1e-9), big)
	host := rate.NewLimiter(rate.Limit(1e12), small)
	var count byteCounter
	sink := newSink(testLength, testPieceSize)
	if err := c.Fill(context.Background(), o.url(), nil, info, sink,
		FillOptions{Limiters: []*rate.Limiter{nil, own, host}, OnBytes: count.add}); err != nil {
		t.Fatal(err)
	}
	if sink.sum(t) != sha256.Sum256(content) {
		t.Fatal("content differs")
	}
	if left := own.Tokens(); int64(big-left+0.5) != int64(testLength) {
		t.Errorf("own limiter charged %.0f bytes, want %d", big-left, testLength)
	}
	if m := count.max.Load(); m > small {
		t.Errorf("largest read %d exceeds the smallest burst %d", m, small)
	}
}

// claimSink is a memSink whose pieces in held are claimed by another
// fetcher.
type claimSink struct {
	*memSink
	held     map[int]bool
	claims   []int
	released int
}

func (s *claimSink) Claim(i int) (func(), bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held[i] {
		return nil, false
	}
	s.claims = append(s.claims, i)
	return func() {
		s.mu.Lock()
		s.released++
		s.mu.Unlock()
	}, true
}

// TestFillSkipsClaimedPieces: range workers claim each piece before its
// request and leave alone the pieces another fetcher holds, releasing
// every claim they took.
func TestFillSkipsClaimedPieces(t *testing.T) {
	content := randomBytes(testLength, 4)
	o := newOrigin(t, content, nil)
	c := testClient(t, nil)
	info, err := c.Probe(context.Background(), o.url(), nil)
	if err != nil {
		t.Fatal(err)
	}
	gets := o.gets.Load()
	sink := &claimSink{memSink: newSink(testLength, testPieceSize), held: map[int]bool{3: true, 7: true}}
	if err := c.Fill(context.Background(), o.url(), nil, info, sink, FillOptions{Concurrency: 2}); err != nil {
		t.Fatal(err)
	}
	n := sink.layout.NumPieces()
	for i := range n {
		if got, want := sink.Has(i), !sink.held[i]; got != want {
			t.Errorf("piece %d: stored %v, want %v", i, got, want)
		}
	}
	if len(sink.claims) != n-2 || sink.released != len(sink.claims) {
		t.Errorf("%d claims, %d released; want %d of each", len(sink.claims), sink.released, n-2)
	}
	if g := o.gets.Load() - gets; g != int64(n-2) {
		t.Errorf("%d range GETs, want %d (none for the claimed pieces)", g, n-2)
	}
}
