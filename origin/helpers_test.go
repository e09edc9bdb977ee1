package origin

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/manifest"
)

const (
	testLength    = 1<<20 + 12345 // 17 pieces of 64 KiB, the last one short
	testPieceSize = 64 << 10
)

// testOrigin is a real HTTP origin on loopback serving one body, with fault
// modes. Its fields are guarded by mu and may be changed between requests.
type testOrigin struct {
	srv *httptest.Server

	mu        sync.Mutex
	content   []byte
	etag      string
	modTime   time.Time
	noRanges  bool // ignore Range, no Accept-Ranges
	noHead    bool // HEAD answers 405
	chunked   bool // with noRanges: no Content-Length
	fail500   int  // fail this many next requests with 500; negative: forever
	notFound  bool // 404 always
	cutOnce   bool // cut the next GET body halfway
	hang      bool // GETs send 1 KiB of body then stall until the client goes away
	noValid   bool // with noRanges: no ETag or Last-Modified
	changeTo  []byte
	changeAt  int64 // once this many requests were served, content becomes changeTo
	reqHeader []http.Header

	requests atomic.Int64
	gets     atomic.Int64
	heads    atomic.Int64
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func etagOf(b []byte) string {
	return fmt.Sprintf("%q", fmt.Sprintf("%x", sha256.Sum256(b))[:16])
}

func newOrigin(t *testing.T, content []byte, setup func(o *testOrigin)) *testOrigin {
	t.Helper()
	o := &testOrigin{content: content, etag: etagOf(content), modTime: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)}
	if setup != nil {
		setup(o)
	}
	o.srv = httptest.NewServer(o)
	t.Cleanup(o.srv.Close)
	return o
}

func (o *testOrigin) set(f func(o *testOrigin)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f(o)
}

func (o *testOrigin) url() string { return o.srv.URL + "/files/blob.bin?sig=s3cr3tSIG&expires=1" }

func (o *testOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := o.requests.Add(1)
	if r.Method == http.MethodHead {
		o.heads.Add(1)
	} else {
		o.gets.Add(1)
	}
	o.mu.Lock()
	o.reqHeader = append(o.reqHeader, r.Header.Clone())
	if o.changeTo != nil && n > o.changeAt {
		o.content, o.etag, o.changeTo = o.changeTo, etagOf(o.changeTo), nil
		o.modTime = o.modTime.Add(time.Hour)
	}
	content, etag, modTime := o.content, o.etag, o.modTime
	noRanges, noHead, chunked, notFound, hang, noValid := o.noRanges, o.noHead, o.chunked, o.notFound, o.hang, o.noValid
	fail := o.fail500 != 0
	if o.fail500 > 0 {
		o.fail500--
	}
	cut := o.cutOnce && r.Method == http.MethodGet && !fail && !notFound
	if cut {
		o.cutOnce = false
	}
	o.mu.Unlock()

	switch {
	case fail:
		http.Error(w, "origin overloaded", http.StatusInternalServerError)
		return
	case notFound:
		http.NotFound(w, r)
		return
	case noHead && r.Method == http.MethodHead:
		http.Error(w, "no HEAD here", http.StatusMethodNotAllowed)
		return
	}
	if cut {
		w = &cutWriter{ResponseWriter: w, limit: -1}
	}
	if hang && r.Method == http.MethodGet {
		w = &stallWriter{ResponseWriter: w, done: r.Context().Done()}
	}
	if noRanges {
		if !chunked {
			w.Header().Set("Content-Length", strconv.Itoa(len(content)))
		}
		if !noValid {
			w.Header().Set("ETag", etag)
			w.Header().Set("Last-Modified", modTime.Format(http.TimeFormat))
		}
		if r.Method == http.MethodHead {
			return
		}
		if cw, ok := w.(*cutWriter); ok {
			cw.limit = int64(len(content) / 2)
		}
		// Several writes, so that a chunked body really is chunked.
		for b := content; len(b) > 0; {
			k := min(len(b), 32<<10)
			_, _ = w.Write(b[:k])
			b = b[k:]
		}
		return
	}
	w.Header().Set("ETag", etag)
	http.ServeContent(w, r, "", modTime, bytes.NewReader(content))
}

// cutWriter lets half of the body through (of the Content-Length set by the
// time of the first write, unless limit is preset), flushes it and aborts the
// connection.
type cutWriter struct {
	http.ResponseWriter
	limit   int64
	written int64
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if c.limit < 0 {
		cl, _ := strconv.ParseInt(c.Header().Get("Content-Length"), 10, 64)
		c.limit = cl / 2
	}
	if c.written+int64(len(p)) <= c.limit {
		c.written += int64(len(p))
		return c.ResponseWriter.Write(p)
	}
	n, _ := c.ResponseWriter.Write(p[:c.limit-c.written])
	c.written += int64(n)
	c.ResponseWriter.(http.Flusher).Flush()
	panic(http.ErrAbortHandler)
}

func (c *cutWriter) Flush() { c.ResponseWriter.(http.Flusher).Flush() }

// stallWriter lets 1 KiB of body through, then blocks until done.
type stallWriter struct {
	http.ResponseWriter
	done    <-chan struct{}
	written int
}

func (s *stallWriter) Write(p []byte) (int, error) {
	if s.written+len(p) > 1024 {
		n, _ := s.ResponseWriter.Write(p[:1024-s.written])
		s.written += n
		s.ResponseWriter.(http.Flusher).Flush()
		<-s.done
		return n, io.ErrClosedPipe
	}
	s.written += len(p)
	return s.ResponseWriter.Write(p)
}

func (s *stallWriter) Flush() { s.ResponseWriter.(http.Flusher).Flush() }

// headers returns the headers of the requests served so far.
func (o *testOrigin) headers() []http.Header {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.reqHeader)
}

// memSink is a Sink in memory.
type memSink struct {
	layout manifest.Layout

	mu     sync.Mutex
	pieces map[int][]byte
	puts   []int
	putErr error
}

func newSink(length, pieceSize int64) *memSink {
	return &memSink{layout: manifest.Layout{Length: length, PieceSize: pieceSize}, pieces: map[int][]byte{}}
}

func (s *memSink) Layout() manifest.Layout { return s.layout }

func (s *memSink) Has(i int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.pieces[i]
	return ok
}

func (s *memSink) PutPiece(i int, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.putErr != nil {
		return s.putErr
	}
	if _, n := s.layout.PieceRange(i); int64(len(data)) != n {
		return fmt.Errorf("piece %d has %d bytes, want %d", i, len(data), n)
	}
	if _, dup := s.pieces[i]; dup {
		return fmt.Errorf("piece %d put twice", i)
	}
	s.pieces[i] = data
	s.puts = append(s.puts, i)
	return nil
}

// preload gives the sink pieces of content.
func (s *memSink) preload(content []byte, idx ...int) {
	for _, i := range idx {
		off, n := s.layout.PieceRange(i)
		s.pieces[i] = content[off : off+n]
	}
}

func (s *memSink) sum(t *testing.T) [32]byte {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	h := sha256.New()
	for i := range s.layout.NumPieces() {
		p, ok := s.pieces[i]
		if !ok {
			t.Fatalf("sink lacks piece %d", i)
		}
		h.Write(p)
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// byteCounter is an OnBytes that adds up.
type byteCounter struct {
	total atomic.Int64
	max   atomic.Int64
}

func (b *byteCounter) add(n int) {
	b.total.Add(int64(n))
	for {
		m := b.max.Load()
		if int64(n) <= m || b.max.CompareAndSwap(m, int64(n)) {
			return
		}
	}
}

// testClient returns a Client with fast backoff and a logger that goes to
// the test log (or to buf when given).
func testClient(t *testing.T, buf io.Writer, opts ...Option) *Client {
	l := logrus.New()
	l.SetLevel(logrus.DebugLevel)
	if buf != nil {
		l.SetOutput(buf)
	} else {
		l.SetOutput(testWriter{t})
	}
	base := []Option{WithBackoff(time.Millisecond, 5*time.Millisecond), WithLogger(l)}
	return New(append(base, opts...)...)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}
