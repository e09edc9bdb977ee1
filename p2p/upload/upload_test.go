package upload_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/damselfly-p2p/damselfly/cache"
	"github.com/damselfly-p2p/damselfly/p2p/upload"
)

func pieceURL(base string, id string, n any) string {
	return fmt.Sprintf("%s/peer/tasks/%s/pieces/%v", base, id, n)
}

func TestServePiece(t *testing.T) {
	f := newFixture(t, 0, 2, 4) // pieces 1 and 3 absent; 4 is the short last one
	srv, hs := serve(t, f.tasks)
	tests := []struct {
		name       string
		method     string
		path       string
		header     http.Header
		wantStatus int
		wantBody   []byte // nil: not checked
		wantDigest string
		wantInBody string // for errors
	}{
		{name: "first piece", path: fmt.Sprintf("/peer/tasks/%s/pieces/0", f.id), wantStatus: 200,
			wantBody: f.piece(0), wantDigest: cache.SumOf(f.piece(0)).String()},
		{name: "short last piece", path: fmt.Sprintf("/peer/tasks/%s/pieces/4", f.id), wantStatus: 200,
			wantBody: f.piece(4), wantDigest: cache.SumOf(f.piece(4)).String()},
		{name: "range inside a piece", path: fmt.Sprintf("/peer/tasks/%s/pieces/2", f.id),
			header: http.Header{"Range": {"bytes=100-4195"}}, wantStatus: http.StatusPartialContent,
			wantBody: f.piece(2)[100:4196], wantDigest: cache.SumOf(f.piece(2)).String()},
		{name: "open range stays in the piece", path: fmt.Sprintf("/peer/tasks/%s/pieces/2", f.id),
			header: http.Header{"Range": {"bytes=65000-"}}, wantStatus: http.StatusPartialContent,
			wantBody: f.piece(2)[65000:]},
		{name: "range past the piece", path: fmt.Sprintf("/peer/tasks/%s/pieces/2", f.id),
			header: http.Header{"Range": {fmt.Sprintf("bytes=%d-", testPieceSize)}}, wantStatus: http.StatusRequestedRangeNotSatisfiable},
		{name: "HEAD of a present piece", method: http.MethodHead, path: fmt.Sprintf("/peer/tasks/%s/pieces/0", f.id),
			wantStatus: 200, wantBody: []byte{}},
		{name: "absent piece", path: fmt.Sprintf("/peer/tasks/%s/pieces/1", f.id), wantStatus: 404},
		{name: "piece past the end", path: fmt.Sprintf("/peer/tasks/%s/pieces/5", f.id), wantStatus: 404},
		{name: "huge piece number", path: fmt.Sprintf("/peer/tasks/%s/pieces/99999999999", f.id), wantStatus: 404},
		{name: "unknown task", path: "/peer/tasks/nosuchtask/pieces/0", wantStatus: 404, wantInBody: "unknown task"},
		{name: "negative piece", path: fmt.Sprintf("/peer/tasks/%s/pieces/-1", f.id), wantStatus: 400},
		{name: "non-numeric piece", path: fmt.Sprintf("/peer/tasks/%s/pieces/abc", f.id), wantStatus: 400},
		{name: "empty piece number", path: fmt.Sprintf("/peer/tasks/%s/pieces/", f.id), wantStatus: 400},
		{name: "no piece number", path: fmt.Sprintf("/peer/tasks/%s/pieces", f.id), wantStatus: 404},
		{name: "extra path element", path: fmt.Sprintf("/peer/tasks/%s/pieces/0/x", f.id), wantStatus: 404},
		{name: "unknown resource", path: fmt.Sprintf("/peer/tasks/%s/blocks/0", f.id), wantStatus: 404},
		{name: "task only", path: fmt.Sprintf("/peer/tasks/%s", f.id), wantStatus: 404},
		{name: "POST", method: http.MethodPost, path: fmt.Sprintf("/peer/tasks/%s/pieces/0", f.id), wantStatus: 405},
		{name: "PUT", method: http.MethodPut, path: fmt.Sprintf("/peer/tasks/%s/pieces/0", f.id), wantStatus: 405},
		{name: "DELETE", method: http.MethodDelete, path: fmt.Sprintf("/peer/tasks/%s/pieces/0", f.id), wantStatus: 405},
		{name: "POST bitmap", method: http.MethodPost, path: fmt.Sprintf("/peer/tasks/%s/bitmap", f.id), wantStatus: 405},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			r := do(t, method, hs.URL+tc.path, tc.header)
			if r.status != tc.wantStatus {
				t.Fatalf("status %d, want %d (body %q)", r.status, tc.wantStatus, trim(r.body))
			}
			if tc.wantBody != nil && !bytes.Equal(r.body, tc.wantBody) {
				t.Errorf("body: %d bytes (sha256 %x), want %d bytes (sha256 %x)",
					len(r.body), sha256.Sum256(r.body), len(tc.wantBody), sha256.Sum256(tc.wantBody))
			}
			if tc.wantDigest != "" {
				if got := r.header.Get(upload.DigestHeader); got != tc.wantDigest {
					t.Errorf("%s = %q, want %q", upload.DigestHeader, got, tc.wantDigest)
				}
			}
			if tc.wantStatus >= 400 && tc.wantStatus != http.StatusRequestedRangeNotSatisfiable {
				if got := r.header.Get(upload.DigestHeader); got != "" {
					t.Errorf("error answer carries %s %q", upload.DigestHeader, got)
				}
			}
			if tc.wantInBody != "" && !strings.Contains(string(r.body), tc.wantInBody) {
				t.Errorf("body %q does not mention %q", trim(r.body), tc.wantInBody)
			}
		})
	}
	if l, r := f.tasks.balance(); l != r {
		t.Errorf("%d task lookups but %d releases", l, r)
	}
	if got := srv.Rejected(); got != 0 {
		t.Errorf("Rejected() = %d with no slot or fan-out pressure, want 0", got)
	}
}

// waitFor polls cond for up to 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func trim(b []byte) string {
	if len(b) > 200 {
		b = b[:200]
	}
	return strings.TrimSpace(string(b))
}

// TestBytesServed checks the served-bytes counter and the OnServe callback
// against what the clients received.
func TestBytesServed(t *testing.T) {
	f := newFixture(t, 0, 1, 2, 3, 4)
	var mu sync.Mutex
	perTask := map[string]int64{}
	calls := 0
	srv, hs := serve(t, f.tasks, upload.WithOnServe(func(id string, n int64) {
		mu.Lock()
		perTask[id] += n
		calls++
		mu.Unlock()
	}))
	var received int64
	for i := 0; i < 5; i++ {
		r := get(t, pieceURL(hs.URL, f.id, i))
		if r.status != 200 {
			t.Fatalf("piece %d: status %d", i, r.status)
		}
		received += int64(len(r.body))
	}
	r := do(t, http.MethodGet, pieceURL(hs.URL, f.id, 0), http.Header{"Range": {"bytes=0-99"}})
	if r.status != http.StatusPartialContent || len(r.body) != 100 {
		t.Fatalf("range: status %d, %d bytes", r.status, len(r.body))
	}
	received += 100
	// Errors send no piece bytes.
	get(t, pieceURL(hs.URL, "nosuchtask", 0))

	if received != testLength+100 {
		t.Fatalf("clients received %d bytes, want %d", received, testLength+100)
	}
	// The counters are updated once the handler returns, which may be just
	// after the client has read the last byte.
	waitFor(t, fmt.Sprintf("BytesServed() = %d (clients received)", received), func() bool { return srv.BytesServed() == received })
	waitFor(t, "6 OnServe calls", func() bool { mu.Lock(); defer mu.Unlock(); return calls == 6 })
	time.Sleep(50 * time.Millisecond) // no extra calls
	mu.Lock()
	defer mu.Unlock()
	if perTask[f.id] != received || calls != 6 {
		t.Errorf("OnServe: %d calls, %v; want 6 calls totalling %d for %s", calls, perTask, received, f.id)
	}
}

// TestFetchOnDemand: a Tasks that is also a PieceFetcher (the seed) gets
// an absent piece fetched before it is served; a failed fetch is a 502.
func TestFetchOnDemand(t *testing.T) {
	t.Run("fetched", func(t *testing.T) {
		f := newFixture(t)
		ft := &fetchingTasks{taskMap: f.tasks, content: f.content}
		_, hs := serve(t, ft)
		r := get(t, pieceURL(hs.URL, f.id, 3))
		if r.status != 200 || !bytes.Equal(r.body, f.piece(3)) {
			t.Fatalf("status %d, %d bytes; want 200 with piece 3", r.status, len(r.body))
		}
		if !f.task.Has(3) {
			t.Error("fetched piece not stored")
		}
		// Present now: served without another fetch.
		get(t, pieceURL(hs.URL, f.id, 3))
		if got := ft.fetches(); got != 1 {
			t.Errorf("FetchPiece called %d times, want 1", got)
		}
		// Out of range is 404 without asking the fetcher.
		if r := get(t, pieceURL(hs.URL, f.id, 5)); r.status != 404 {
			t.Errorf("piece past the end: status %d, want 404", r.status)
		}
		if ft.fetches() != 1 {
			t.Errorf("FetchPiece called for an out-of-range piece")
		}
	})
	t.Run("fetch fails", func(t *testing.T) {
		f := newFixture(t)
		ft := &fetchingTasks{taskMap: f.tasks, err: errors.New("origin said 500")}
		_, hs := serve(t, ft)
		r := get(t, pieceURL(hs.URL, f.id, 1))
		if r.status != http.StatusBadGateway {
			t.Fatalf("status %d, want 502", r.status)
		}
		if !strings.Contains(string(r.body), "origin said 500") {
			t.Errorf("body %q does not give the cause", trim(r.body))
		}
	})
}

// holder keeps one upload slot busy: the server's limiter is set to 1 B/s,
// so the handler blocks in the limiter after the first chunk until the
// holder goes away.
type holder struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (h *holder) release() {
	h.cancel()
	<-h.done
}

// holdSlot starts a request for url and returns once the server's handler
// is inside the limiter, i.e. holds a slot: the limiter's tokens drop by
// the handler's reservation.
func holdSlot(t *testing.T, lim *rate.Limiter, url string) *holder {
	t.Helper()
	before := lim.Tokens()
	ctx, cancel := context.WithCancel(context.Background())
	h := &holder{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			// Keep the response open (unread) until released.
			<-ctx.Done()
			resp.Body.Close()
		}
	}()
	t.Cleanup(h.release)
	deadline := time.Now().Add(10 * time.Second)
	for lim.Tokens() > before-float64(limiterChunk)+1024 {
		if time.Now().After(deadline) {
			t.Fatalf("request for %s never reached the upload limiter", url)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return h
}

const limiterChunk = 16 << 10

func TestSlotLimit(t *testing.T) {
	for _, slots := range []int{1, 3} {
		t.Run(fmt.Sprintf("slots=%d", slots), func(t *testing.T) {
			f := newFixture(t, 0, 1, 2, 3, 4)
			lim := rate.NewLimiter(1, limiterChunk)
			srv, hs := serve(t, f.tasks, upload.WithSlots(slots), upload.WithLimiter(lim))
			if srv.Slots() != slots {
				t.Fatalf("Slots() = %d, want %d", srv.Slots(), slots)
			}
			var holders []*holder
			for i := 0; i < slots; i++ {
				holders = append(holders, holdSlot(t, lim, pieceURL(hs.URL, f.id, i)))
			}
			for _, n := range []int{4, 0} {
				r := get(t, pieceURL(hs.URL, f.id, n))
				if r.status != http.StatusServiceUnavailable {
					t.Fatalf("request %d with %d slots busy: status %d, want 503", slots+1, slots, r.status)
				}
				if got := r.header.Get(upload.BusyHeader); got != "slots" {
					t.Errorf("%s = %q, want \"slots\"", upload.BusyHeader, got)
				}
				if got := r.header.Get("Retry-After"); got == "" {
					t.Error("503 without Retry-After")
				}
			}
			if got := srv.Rejected(); got != 2 {
				t.Errorf("Rejected() = %d, want 2", got)
			}
			// Bitmaps are not piece uploads: they are answered while full.
			if r := get(t, fmt.Sprintf("%s/peer/tasks/%s/bitmap", hs.URL, f.id)); r.status != 200 {
				t.Errorf("bitmap while slots are full: status %d, want 200", r.status)
			}

			// The holders leave: their slots are free again.
			for _, h := range holders {
				h.release()
			}
			lim.SetLimit(rate.Inf)
			deadline := time.Now().Add(5 * time.Second)
			for {
				r := get(t, pieceURL(hs.URL, f.id, 4))
				if r.status == 200 {
					if !bytes.Equal(r.body, f.piece(4)) {
						t.Fatal("wrong bytes after the slots were freed")
					}
					break
				}
				if r.status != http.StatusServiceUnavailable || time.Now().After(deadline) {
					t.Fatalf("after the holders left: status %d", r.status)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

func TestDefaultSlots(t *testing.T) {
	for _, tc := range []struct {
		opts []upload.Option
		want int
	}{
		{nil, 8},
		{[]upload.Option{upload.WithSlots(0)}, 8},
		{[]upload.Option{upload.WithSlots(-3)}, 8},
		{[]upload.Option{upload.WithSlots(2)}, 2},
	} {
		if got := upload.New(&taskMap{}, tc.opts...).Slots(); got != tc.want {
			t.Errorf("Slots() = %d, want %d", got, tc.want)
		}
	}
}

func TestFanout(t *testing.T) {
	const window = time.Second
	f := newFixture(t, 0, 1, 2, 3, 4)
	srv, hs := serve(t, f.tasks, upload.WithFanout(2, window))
	u0 := pieceURL(hs.URL, f.id, 0)

	if r := get(t, u0); r.status != 200 {
		t.Fatalf("1st request: status %d", r.status)
	}
	beforeSecond := time.Now()
	if r := get(t, u0); r.status != 200 || !bytes.Equal(r.body, f.piece(0)) {
		t.Fatalf("2nd request: status %d", r.status)
	}
	r := get(t, u0)
	if time.Since(beforeSecond) >= window {
		t.Fatalf("test too slow: 3rd request came %v after the 2nd (window %v)", time.Since(beforeSecond), window)
	}
	if r.status != http.StatusServiceUnavailable || r.header.Get(upload.BusyHeader) != "piece" {
		t.Fatalf("3rd request within the window: status %d, %s %q; want 503 \"piece\"",
			r.status, upload.BusyHeader, r.header.Get(upload.BusyHeader))
	}
	if srv.Rejected() != 1 {
		t.Errorf("Rejected() = %d, want 1", srv.Rejected())
	}
	// Other pieces have their own count.
	if r := get(t, pieceURL(hs.URL, f.id, 1)); r.status != 200 {
		t.Errorf("another piece: status %d, want 200", r.status)
	}
	// A waiting reader's urgent request skips the limit.
	if r := get(t, u0+"?urgent=1"); r.status != 200 || !bytes.Equal(r.body, f.piece(0)) {
		t.Errorf("urgent request: status %d, want 200 with the piece", r.status)
	}

	// Once a window has passed since the last upload of the piece, its
	// count starts over (the children that got it may be gone): it is
	// served fanout (2) more times...
	time.Sleep(time.Until(beforeSecond.Add(window + 150*time.Millisecond)))
	for i := 0; i < 2; i++ {
		if r := get(t, u0); r.status != 200 || !bytes.Equal(r.body, f.piece(0)) {
			t.Fatalf("after the window, request %d: status %d, want 200 with the piece", i+1, r.status)
		}
	}
	// ... and then refused again within the new window.
	if r := get(t, u0); r.status != http.StatusServiceUnavailable || r.header.Get(upload.BusyHeader) != "piece" {
		t.Errorf("third request after the re-serve: status %d, want 503 \"piece\"", r.status)
	}

	// Forget drops the record of a task.
	srv.Forget(f.id)
	if r := get(t, u0); r.status != 200 {
		t.Errorf("after Forget: status %d, want 200", r.status)
	}
}

// TestFanoutNotChargedBySlotRejection: a request turned away because the
// server is full did not give the piece to anyone, so it must not count
// towards the piece's fan-out.
func TestFanoutNotChargedBySlotRejection(t *testing.T) {
	f := newFixture(t, 0, 1, 2, 3, 4)
	lim := rate.NewLimiter(1, limiterChunk)
	_, hs := serve(t, f.tasks, upload.WithSlots(1), upload.WithLimiter(lim), upload.WithFanout(1, time.Minute))
	h := holdSlot(t, lim, pieceURL(hs.URL, f.id, 1))
	r := get(t, pieceURL(hs.URL, f.id, 0))
	if r.status != http.StatusServiceUnavailable || r.header.Get(upload.BusyHeader) != "slots" {
		t.Fatalf("while full: status %d, %s %q; want 503 \"slots\"", r.status, upload.BusyHeader, r.header.Get(upload.BusyHeader))
	}
	h.release()
	lim.SetLimit(rate.Inf)
	// Wait for the slot to be free (urgent: not subject to fan-out).
	deadline := time.Now().Add(5 * time.Second)
	for get(t, pieceURL(hs.URL, f.id, 2)+"?urgent=1").status != 200 {
		if time.Now().After(deadline) {
			t.Fatal("slot never freed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Piece 0 has been served to nobody yet.
	r = get(t, pieceURL(hs.URL, f.id, 0))
	if r.status != 200 {
		t.Errorf("piece 0, never served, after a slot rejection: status %d, %s %q; want 200 "+
			"(the rejected request was counted as an upload for the fan-out limit)",
			r.status, upload.BusyHeader, r.header.Get(upload.BusyHeader))
	}
}

func getBitmap(t *testing.T, base, id, query string) (upload.BitmapResponse, time.Duration) {
	t.Helper()
	start := time.Now()
	r := get(t, fmt.Sprintf("%s/peer/tasks/%s/bitmap%s", base, id, query))
	el := time.Since(start)
	if r.status != 200 {
		t.Fatalf("bitmap%s: status %d (%q)", query, r.status, trim(r.body))
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var b upload.BitmapResponse
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatalf("decode bitmap: %v (%q)", err, trim(r.body))
	}
	return b, el
}

func checkBitmap(t *testing.T, b upload.BitmapResponse, numPieces int, have ...int) {
	t.Helper()
	if b.NumPieces != numPieces || b.Count != len(have) || b.Bitmap.Count() != len(have) {
		t.Errorf("bitmap: numPieces %d count %d (bits %d), want %d and %d", b.NumPieces, b.Count, b.Bitmap.Count(), numPieces, len(have))
	}
	for _, i := range have {
		if !b.Bitmap.Has(i) {
			t.Errorf("bitmap lacks piece %d", i)
		}
	}
}

func TestBitmapImmediate(t *testing.T) {
	// "Immediately" is judged against a 10s wait: anything under 3s means
	// the server did not wait.
	const quick = 3 * time.Second
	tests := []struct {
		name  string
		have  []int
		query string
	}{
		{"no wait", []int{0, 2}, ""},
		{"no wait, have above count", []int{0, 2}, "?have=4"},
		{"count above have", []int{0, 2}, "?have=1&wait=10s"},
		{"first poll", []int{3}, "?have=-1&wait=10s"},
		{"empty task, first poll", nil, "?have=-1&wait=10s"},
		{"complete task", []int{0, 1, 2, 3, 4}, "?have=5&wait=10s"},
		{"complete task, have above count", []int{0, 1, 2, 3, 4}, "?have=9&wait=10s"},
		{"bad wait", []int{1}, "?have=1&wait=forever"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.have...)
			_, hs := serve(t, f.tasks)
			b, el := getBitmap(t, hs.URL, f.id, tc.query)
			if el > quick {
				t.Errorf("answered after %v, want at once", el)
			}
			checkBitmap(t, b, 5, tc.have...)
		})
	}
	t.Run("unknown task", func(t *testing.T) {
		f := newFixture(t)
		_, hs := serve(t, f.tasks)
		if r := get(t, hs.URL+"/peer/tasks/nosuchtask/bitmap?have=0&wait=5s"); r.status != 404 {
			t.Errorf("status %d, want 404", r.status)
		}
	})
}

func TestBitmapWaits(t *testing.T) {
	t.Run("until a new piece", func(t *testing.T) {
		f := newFixture(t, 0, 2)
		_, hs := serve(t, f.tasks)
		const delay = 300 * time.Millisecond
		wrote := make(chan time.Time, 1)
		go func() {
			time.Sleep(delay)
			p := f.piece(3)
			wrote <- time.Now()
			if err := f.task.WritePiece(3, p, cache.SumOf(p)); err != nil {
				t.Errorf("WritePiece: %v", err)
			}
		}()
		b, el := getBitmap(t, hs.URL, f.id, "?have=2&wait=10s")
		if el < delay-50*time.Millisecond {
			t.Errorf("answered after %v, before the new piece was written (%v)", el, delay)
		}
		if el > 8*time.Second {
			t.Errorf("answered after %v: not woken by the new piece", el)
		}
		<-wrote
		checkBitmap(t, b, 5, 0, 2, 3)
	})
	t.Run("until the wait ends", func(t *testing.T) {
		f := newFixture(t, 0, 2)
		_, hs := serve(t, f.tasks)
		b, el := getBitmap(t, hs.URL, f.id, "?have=2&wait=400ms")
		if el < 400*time.Millisecond {
			t.Errorf("answered after %v, want the full 400ms wait", el)
		}
		checkBitmap(t, b, 5, 0, 2)
	})
	t.Run("client gives up", func(t *testing.T) {
		f := newFixture(t, 0)
		_, hs := serve(t, f.tasks)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/peer/tasks/%s/bitmap?have=1&wait=10s", hs.URL, f.id), nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			t.Fatalf("status %d before the wait ended", resp.StatusCode)
		}
		// The handler returns (and releases the task) once the client is gone.
		deadline := time.Now().Add(5 * time.Second)
		for {
			if l, r := f.tasks.balance(); l == r {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("bitmap handler still waiting after its client left")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func TestUploadLimiter(t *testing.T) {
	const (
		bps   = 128 << 10
		burst = 16 << 10
	)
	for _, tc := range []struct {
		name   string
		pieces []int
	}{
		{"one piece", []int{0}},
		{"two concurrent pieces share the limit", []int{1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 0, 1, 2, 3, 4)
			srv, hs := serve(t, f.tasks, upload.WithLimiter(rate.NewLimiter(bps, burst)))
			start := time.Now()
			var wg sync.WaitGroup
			bodies := make([]response, len(tc.pieces))
			for k, n := range tc.pieces {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var err error
					if bodies[k], err = tryDo(http.MethodGet, pieceURL(hs.URL, f.id, n), nil); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			el := time.Since(start)
			total := 0
			for k, n := range tc.pieces {
				if bodies[k].status != 200 || !bytes.Equal(bodies[k].body, f.piece(n)) {
					t.Fatalf("piece %d: status %d, %d bytes", n, bodies[k].status, len(bodies[k].body))
				}
				total += len(bodies[k].body)
			}
			// The limiter lets the burst through at once and the rest at bps.
			min := time.Duration(float64(total-burst) / bps * float64(time.Second))
			if el < min*8/10 {
				t.Errorf("%d bytes took %v; at %d B/s (burst %d) they need at least %v", total, el, bps, burst, min)
			}
			waitFor(t, fmt.Sprintf("BytesServed() = %d", total), func() bool { return srv.BytesServed() == int64(total) })
		})
	}
}

// TestFanoutNamesHolders: a refusal names the children that got the piece,
// so the refused child can ask them.
func TestFanoutNamesHolders(t *testing.T) {
	f := newFixture(t, 0)
	_, hs := serve(t, f.tasks, upload.WithFanout(2, time.Minute))
	u0 := pieceURL(hs.URL, f.id, 0)
	for _, who := range []string{"peer-a 127.0.0.1:1001", "peer-b 127.0.0.1:1002"} {
		if r := do(t, http.MethodGet, u0, http.Header{upload.PeerHeader: {who}}); r.status != 200 {
			t.Fatalf("%s: status %d", who, r.status)
		}
	}
	r := do(t, http.MethodGet, u0, http.Header{upload.PeerHeader: {"peer-c 127.0.0.1:1003"}})
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("third child: status %d, want 503", r.status)
	}
	if got := r.header.Get(upload.HoldersHeader); got != "peer-a 127.0.0.1:1001,peer-b 127.0.0.1:1002" {
		t.Fatalf("holders = %q", got)
	}
}

// Recipients the supernode no longer knows (they left) neither count towards
// a piece's fan-out nor are named as holders.
func TestFanoutForgetsGoneHolders(t *testing.T) {
	tests := []struct {
		name       string
		gone       []string
		wantStatus int
		wantHold   string
	}{
		{"all present", nil, http.StatusServiceUnavailable, "peer-a 127.0.0.1:1001,peer-b 127.0.0.1:1002"},
		{"one gone", []string{"peer-a"}, http.StatusOK, ""},
		{"both gone", []string{"peer-a", "peer-b"}, http.StatusOK, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			gone := map[string]bool{}
			known := func(id string) (string, bool) {
				mu.Lock()
				defer mu.Unlock()
				return "127.0.0.1:1", !gone[id]
			}
			f := newFixture(t, 0)
			_, hs := serve(t, f.tasks, upload.WithFanout(2, time.Minute), upload.WithPeerAddr(known))
			u0 := pieceURL(hs.URL, f.id, 0)
			for _, who := range []string{"peer-a 127.0.0.1:1001", "peer-b 127.0.0.1:1002"} {
				if r := do(t, http.MethodGet, u0, http.Header{upload.PeerHeader: {who}}); r.status != 200 {
					t.Fatalf("%s: status %d", who, r.status)
				}
			}
			mu.Lock()
			for _, id := range tc.gone {
				gone[id] = true
			}
			mu.Unlock()
			r := do(t, http.MethodGet, u0, http.Header{upload.PeerHeader: {"peer-c 127.0.0.1:1003"}})
			if r.status != tc.wantStatus {
				t.Fatalf("third child: status %d, want %d", r.status, tc.wantStatus)
			}
			if got := r.header.Get(upload.HoldersHeader); got != tc.wantHold {
				t.Fatalf("holders = %q, want %q", got, tc.wantHold)
			}
		})
	}
}

// sentTasks adds upload.SentNotifier to a taskMap, recording the pieces
// reported sent whole.
type sentTasks struct {
	*taskMap
	mu   sync.Mutex
	sent []int
}

func (k *sentTasks) PieceSent(taskID string, n int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.sent = append(k.sent, n)
}

// await takes the pieces reported sent, waiting for n of them (up to a
// second), or 100 ms for none: the handler reports after the client may
// have read the body.
func (k *sentTasks) await(n int) []int {
	wait := time.Second
	if n == 0 {
		wait = 100 * time.Millisecond
	}
	deadline := time.Now().Add(wait)
	for {
		k.mu.Lock()
		got := len(k.sent)
		k.mu.Unlock()
		if n > 0 && got >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	out := k.sent
	k.sent = nil
	return out
}

// TestPieceSentWhole: a SentNotifier hears of a piece once its response
// was written whole (with or without a limiter, short last piece
// included), and not of ranges, HEADs or pieces not served.
func TestPieceSentWhole(t *testing.T) {
	for _, limited := range []bool{false, true} {
		t.Run(fmt.Sprint("limiter ", limited), func(t *testing.T) {
			f := newFixture(t, 0, 2, 4)
			k := &sentTasks{taskMap: f.tasks}
			var opts []upload.Option
			if limited {
				opts = append(opts, upload.WithLimiter(rate.NewLimiter(rate.Limit(64<<20), 256<<10)))
			}
			_, hs := serve(t, k, opts...)
			tests := []struct {
				name   string
				method string
				piece  int
				header http.Header
				want   []int
			}{
				{"whole piece", http.MethodGet, 0, nil, []int{0}},
				{"short last piece", http.MethodGet, 4, nil, []int{4}},
				{"range", http.MethodGet, 2, http.Header{"Range": {"bytes=0-99"}}, nil},
				{"HEAD", http.MethodHead, 2, nil, nil},
				{"absent piece", http.MethodGet, 1, nil, nil},
			}
			for _, tc := range tests {
				do(t, tc.method, pieceURL(hs.URL, f.id, tc.piece), tc.header)
				if got := k.await(len(tc.want)); fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Errorf("%s: sent whole %v, want %v", tc.name, got, tc.want)
				}
			}
		})
	}
}
