// Package httpserve owns the connection bounds of Damselfly's HTTP servers:
// how long a client may take to send its headers and body, to read the
// answer and to sit idle on a keep-alive connection, so that a stalled or
// hostile client is dropped (within a minute) while the server keeps
// serving others. Long polls and piece streams are bounded by progress, not
// by their total duration.
package httpserve

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Defaults of Limits. A stalled client is dropped after at most one of
// these (30 s), well within a minute.
const (
	DefaultReadHeader = 10 * time.Second
	DefaultBody       = 30 * time.Second
	DefaultWriteStall = 30 * time.Second
	DefaultIdle       = 30 * time.Second
	DefaultMaxBody    = 16 << 20
)

// Limits are the bounds of a server's connections. Zero fields take the
// defaults above.
type Limits struct {
	// ReadHeader is how long a client has to send a request's headers.
	ReadHeader time.Duration
	// Body is how long a client has to send a request's whole body, which
	// the server reads before the handler runs (so that a long poll's wait
	// is not cut short by a read deadline). Negative: bodies are not read
	// ahead nor bounded (for proxies forwarding large uploads).
	Body time.Duration
	// MaxBody caps a body read ahead (413 beyond).
	MaxBody int64
	// WriteStall is how long one write of the answer may block: a client
	// that stops reading is dropped, while a stream that keeps flowing or
	// a long poll that answers late is not cut.
	WriteStall time.Duration
	// Idle is how long a keep-alive connection may wait for its next
	// request.
	Idle time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.ReadHeader <= 0 {
		l.ReadHeader = DefaultReadHeader
	}
	if l.Body == 0 {
		l.Body = DefaultBody
	}
	if l.MaxBody <= 0 {
		l.MaxBody = DefaultMaxBody
	}
	if l.WriteStall <= 0 {
		l.WriteStall = DefaultWriteStall
	}
	if l.Idle <= 0 {
		l.Idle = DefaultIdle
	}
	return l
}

// Server returns an *http.Server serving h under l (zero Limits: the
// defaults). Serve it as usual (srv.Serve(ln)); set TLSConfig or other
// fields before serving if needed.
func Server(h http.Handler, l Limits) *http.Server {
	l = l.withDefaults()
	return &http.Server{
		Handler:           Bound(h, l),
		ReadHeaderTimeout: l.ReadHeader,
		IdleTimeout:       l.Idle,
		// ReadTimeout and WriteTimeout stay 0: Bound sets deadlines per
		// request, which a long poll or a piece stream survives.
	}
}

// Bound wraps h so that each request's body is read (within l.Body) before
// h runs and each write of the answer must complete within l.WriteStall. It
// must wrap the handler given to the http.Server itself (it needs the
// server's ResponseWriter).
func Bound(h http.Handler, l Limits) http.Handler {
	l = l.withDefaults()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		sw := &stallWriter{ResponseWriter: w, rc: rc, stall: l.WriteStall}
		sw.extend()
		if l.Body > 0 && r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
			body, err := readBody(rc, r, l)
			if err != nil {
				var tooBig *http.MaxBytesError
				if errors.As(err, &tooBig) {
					http.Error(w, fmt.Sprintf("request body larger than %d bytes", l.MaxBody), http.StatusRequestEntityTooLarge)
					return
				}
				// The client is too slow or gone: drop the connection.
				w.Header().Set("Connection", "close")
				http.Error(w, "read request body: "+err.Error(), http.StatusRequestTimeout)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		h.ServeHTTP(sw, r)
		// The server flushes what is buffered after h returns.
		_ = rc.SetWriteDeadline(time.Now().Add(l.WriteStall))
	})
}

// readBody reads r's body under a read deadline of l.Body, then clears the
// deadline.
func readBody(rc *http.ResponseController, r *http.Request, l Limits) ([]byte, error) {
	// A connection that does not support deadlines is read without one.
	_ = rc.SetReadDeadline(time.Now().Add(l.Body))
	var buf bytes.Buffer
	if r.ContentLength > 0 && r.ContentLength <= l.MaxBody {
		buf.Grow(int(r.ContentLength))
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(nil, r.Body, l.MaxBody))
	if err != nil {
		return nil, err
	}
	_ = rc.SetReadDeadline(time.Time{})
	return buf.Bytes(), nil
}

// stallWriter extends the write deadline before every write, so that only a
// write that blocks for WriteStall fails.
type stallWriter struct {
	http.ResponseWriter
	rc    *http.ResponseController
	stall time.Duration
	last  time.Time // when the deadline was last extended
}

// extend moves the write deadline to now+stall, at most once per stall/4
// (capped at a second), so that a write still gets at least 3/4 of stall.
func (s *stallWriter) extend() {
	now := time.Now()
	if now.Sub(s.last) < min(s.stall/4, time.Second) {
		return
	}
	s.last = now
	_ = s.rc.SetWriteDeadline(now.Add(s.stall))
}

func (s *stallWriter) Write(p []byte) (int, error) {
	s.extend()
	return s.ResponseWriter.Write(p)
}

func (s *stallWriter) WriteHeader(code int) {
	s.extend()
	s.ResponseWriter.WriteHeader(code)
}

// Flush extends the deadline and flushes.
func (s *stallWriter) Flush() {
	s.extend()
	_ = s.rc.Flush()
}

// Hijack hands the connection over (CONNECT tunnels) without the
// deadlines of this request: its new owner sets its own.
func (s *stallWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := s.rc.Hijack()
	if err == nil {
		_ = c.SetDeadline(time.Time{})
	}
	return c, rw, err
}

// Unwrap lets http.ResponseController reach the server's writer.
func (s *stallWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
