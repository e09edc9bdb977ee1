package testenv

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Origin write pacing: the shared limiter's burst, and the largest write
// charged to it at once.
const (
	originBurst    = 64 << 10
	originMaxWrite = 32 << 10
)

// OriginModTime is the Last-Modified time of every file the Origin serves, so
// that responses are identical across runs.
var OriginModTime = time.Date(2024, time.January, 1, 0, 0, 0, 0, time.UTC)

// Origin is a real HTTP server on 127.0.0.1 serving named files under
// /files/<name>, as the upstream source the supernode fetches from. It counts
// requests and body bytes per file, can cap its total upload rate, and
// injects faults per file. All methods are safe for concurrent use, also
// while requests are being served.
type Origin struct {
	t       TB
	dir     string
	ln      net.Listener
	srv     *http.Server
	limiter *rate.Limiter // rate.Inf when uncapped
	total   atomic.Int64

	mu      sync.Mutex
	entries map[string]*originEntry

	closeOnce sync.Once
	served    chan struct{} // closed when Serve returns
}

// originEntry is what the Origin knows about one name: the file (if added),
// its counters and its faults. Fields after mu are guarded by it.
type originEntry struct {
	bytes    atomic.Int64
	requests atomic.Int64

	mu       sync.Mutex
	file     *originFile
	status   int
	failN    int
	failCode int
	noRanges bool
	noHEAD   bool
}

type originFile struct {
	path string
	size int64
	sha  string
	etag string
}

// OriginOption configures NewOrigin.
type OriginOption func(*Origin)

// WithUploadCap caps the Origin's total egress, shared by all connections, at
// bytesPerSec (token bucket with a 64 KiB burst; body writes are charged in
// chunks of at most 32 KiB). bytesPerSec <= 0 means no cap.
func WithUploadCap(bytesPerSec int64) OriginOption {
	return func(o *Origin) { o.SetUploadCap(bytesPerSec) }
}

// NewOrigin starts an Origin on 127.0.0.1 with a free port; t.Cleanup closes
// it. Its files live in a directory from t.TempDir().
func NewOrigin(t TB, opts ...OriginOption) *Origin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: origin listen: %v", err)
	}
	o := &Origin{
		t:       t,
		dir:     t.TempDir(),
		ln:      ln,
		entries: make(map[string]*originEntry),
		limiter: rate.NewLimiter(rate.Inf, originBurst),
		served:  make(chan struct{}),
	}
	for _, opt := range opts {
		opt(o)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/files/{name...}", o.serveFile)
	o.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(o.served)
		o.srv.Serve(ln)
	}()
	t.Cleanup(o.Close)
	return o
}

// SetUploadCap changes the upload cap while running (see WithUploadCap);
// bytesPerSec <= 0 removes it. A cap set here applies to writes made after
// the call, including those of responses in progress.
func (o *Origin) SetUploadCap(bytesPerSec int64) {
	if bytesPerSec <= 0 {
		o.limiter.SetLimit(rate.Inf)
		return
	}
	o.limiter.SetLimit(rate.Limit(bytesPerSec))
}

// entry returns the entry for name, creating it.
func (o *Origin) entry(name string) *originEntry {
	o.mu.Lock()
	defer o.mu.Unlock()
	e := o.entries[name]
	if e == nil {
		e = &originEntry{}
		o.entries[name] = e
	}
	return e
}

// AddRandom stores size bytes of deterministic pseudo-random content under
// name and returns its SHA-256 in hex. The content depends only on seed and
// size (a ChaCha8 stream keyed by seed, so a shorter file is a prefix of a
// longer one with the same seed). It is written to a temporary file, not held
// in memory, so size may be many GiB. Adding a name again replaces its
// content; counters and faults are kept.
func (o *Origin) AddRandom(name string, size int64, seed int64) (sha256hex string) {
	o.t.Helper()
	if size < 0 {
		o.t.Fatalf("testenv: AddRandom(%q): negative size %d", name, size)
	}
	f, err := os.CreateTemp(o.dir, "random-*")
	if err != nil {
		o.t.Fatalf("testenv: AddRandom(%q): %v", name, err)
	}
	sum, err := writeRandom(f, size, seed)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		o.t.Fatalf("testenv: AddRandom(%q): %v", name, err)
	}
	o.setFile(name, &originFile{path: f.Name(), size: size, sha: sum})
	return sum
}

// RandomReader returns a reader of the content AddRandom stores for size and
// seed, for tests that need the expected bytes without an Origin.
func RandomReader(size int64, seed int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8(chachaSeed(seed)), size)
}

func chachaSeed(seed int64) [32]byte {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:8], uint64(seed))
	copy(s[8:], "damselfly-testenv-origin")
	return s
}

func writeRandom(w io.Writer, size, seed int64) (string, error) {
	h := sha256.New()
	buf := make([]byte, 1<<20)
	if _, err := io.CopyBuffer(io.MultiWriter(w, h), RandomReader(size, seed), buf); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// AddFile serves the existing file at path under name and returns its
// SHA-256 in hex. The file is read at each request, not copied; it must not
// change afterwards (its size and hash are taken now). Last-Modified is
// OriginModTime, as for AddRandom.
func (o *Origin) AddFile(name, path string) (sha256hex string) {
	o.t.Helper()
	f, err := os.Open(path)
	if err != nil {
		o.t.Fatalf("testenv: AddFile(%q): %v", name, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		o.t.Fatalf("testenv: AddFile(%q): %v", name, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	o.setFile(name, &originFile{path: path, size: n, sha: sum})
	return sum
}

func (o *Origin) setFile(name string, f *originFile) {
	f.etag = `"` + f.sha[:16] + `"`
	e := o.entry(name)
	e.mu.Lock()
	e.file = f
	e.mu.Unlock()
}

// Addr returns the Origin's address, 127.0.0.1:port.
func (o *Origin) Addr() string { return o.ln.Addr().String() }

// URL returns the URL of the named file: http://127.0.0.1:port/files/<name>.
func (o *Origin) URL(name string) string {
	return (&url.URL{Scheme: "http", Host: o.Addr(), Path: "/files/" + name}).String()
}

// BytesServed returns the body bytes of 200 and 206 responses written to
// clients for name since the last ResetCounters (a 100-byte range counts 100;
// HEAD, 304 and error responses count nothing).
func (o *Origin) BytesServed(name string) int64 { return o.entry(name).bytes.Load() }

// TotalBytesServed is BytesServed summed over all names.
func (o *Origin) TotalBytesServed() int64 { return o.total.Load() }

// Requests returns the number of GET and HEAD requests for name since the
// last ResetCounters, whatever their outcome (faults included).
func (o *Origin) Requests(name string) int { return int(o.entry(name).requests.Load()) }

// ResetCounters zeroes all byte and request counters.
func (o *Origin) ResetCounters() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, e := range o.entries {
		e.bytes.Store(0)
		e.requests.Store(0)
	}
	o.total.Store(0)
}

// SetStatus makes every request for name answer with status code (an error
// status, with a short text body); 0 restores normal service. It takes
// precedence over FailNext, which it does not consume.
func (o *Origin) SetStatus(name string, code int) {
	e := o.entry(name)
	e.mu.Lock()
	e.status = code
	e.mu.Unlock()
}

// FailNext makes the next n requests (GET or HEAD) for name answer with
// status code, then serves normally again. It replaces any earlier FailNext.
func (o *Origin) FailNext(name string, n int, code int) {
	e := o.entry(name)
	e.mu.Lock()
	e.failN, e.failCode = n, code
	e.mu.Unlock()
}

// SetNoRanges makes name be served like by a server without range support:
// Range, If-Range and conditional headers are ignored, no Accept-Ranges
// header is sent, and every GET gets 200 with the full body.
func (o *Origin) SetNoRanges(name string, on bool) {
	e := o.entry(name)
	e.mu.Lock()
	e.noRanges = on
	e.mu.Unlock()
}

// SetNoHEAD makes HEAD requests for name answer 405 Method Not Allowed.
func (o *Origin) SetNoHEAD(name string, on bool) {
	e := o.entry(name)
	e.mu.Lock()
	e.noHEAD = on
	e.mu.Unlock()
}

// Close stops the server and closes all its connections, interrupting
// responses in progress. It is idempotent and also run by t.Cleanup.
func (o *Origin) Close() {
	o.closeOnce.Do(func() {
		o.srv.Close()
		<-o.served
	})
}

// serveFile handles /files/{name...}. Order of checks: method (others than
// GET and HEAD get 405, uncounted), then counting, SetStatus, FailNext,
// SetNoHEAD, unknown name (404), and finally the content.
func (o *Origin) serveFile(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	e := o.entry(r.PathValue("name"))
	e.requests.Add(1)

	e.mu.Lock()
	code := e.status
	if code == 0 && e.failN > 0 {
		e.failN--
		code = e.failCode
	}
	if code == 0 && e.noHEAD && r.Method == http.MethodHead {
		code = http.StatusMethodNotAllowed
		w.Header().Set("Allow", "GET")
	}
	file, noRanges := e.file, e.noRanges
	e.mu.Unlock()

	if code == 0 && file == nil {
		code = http.StatusNotFound
	}
	if code != 0 {
		http.Error(w, http.StatusText(code), code)
		return
	}

	f, err := os.Open(file.path)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()

	cw := &originResponse{ResponseWriter: w, paced: pacedWriter{w: w, ctx: r.Context(), limiter: o.limiter},
		counters: []*atomic.Int64{&e.bytes, &o.total}}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("ETag", file.etag)
	if noRanges {
		h.Set("Last-Modified", OriginModTime.Format(http.TimeFormat))
		h.Set("Content-Length", strconv.FormatInt(file.size, 10))
		cw.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			io.Copy(cw, f)
		}
		return
	}
	http.ServeContent(cw, r, "", OriginModTime, f)
}

// originResponse paces body writes through the shared limiter and counts
// the body bytes of 200 and 206 responses into the file's and the Origin's
// counters. It deliberately has no ReadFrom, so that every body byte goes
// through Write. Bytes are counted before they are written (and a short
// write takes back what did not go out), so that a client that has read a
// body never sees a counter that misses part of it.
type originResponse struct {
	http.ResponseWriter
	paced    pacedWriter
	counters []*atomic.Int64
	status   int
	counted  bool // the status is known and counts
	started  bool
}

func (c *originResponse) WriteHeader(code int) {
	if c.status == 0 && code >= 200 {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *originResponse) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	if !c.started {
		c.started = true
		c.counted = c.status == http.StatusOK || c.status == http.StatusPartialContent
	}
	if !c.counted {
		return c.paced.Write(p)
	}
	for _, n := range c.counters {
		n.Add(int64(len(p)))
	}
	w, err := c.paced.Write(p)
	if short := int64(len(p) - w); short > 0 {
		for _, n := range c.counters {
			n.Add(-short)
		}
	}
	return w, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (c *originResponse) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// pacedWriter writes to w in chunks of at most originMaxWrite, each waiting
// on the limiter first.
type pacedWriter struct {
	w       io.Writer
	ctx     context.Context
	limiter *rate.Limiter
}

func (c *pacedWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		chunk := p
		if len(chunk) > originMaxWrite {
			chunk = chunk[:originMaxWrite]
		}
		if err := c.limiter.WaitN(c.ctx, len(chunk)); err != nil {
			return written, err
		}
		n, err := c.w.Write(chunk)
		written += n
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}
