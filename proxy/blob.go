package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/p2p"
)

// openTimeout bounds registering a task (the seed may have to probe the
// origin first).
const openTimeout = 2 * time.Minute

// maxRead caps one read from the task, so a large io.Copy buffer still
// streams piece by piece.
const maxRead = 256 << 10

// serveP2P answers a GET from the P2P task of target. It returns false,
// having written nothing, when the task cannot be opened (the caller then
// passes the request through). want is the blob digest ("" for a plain
// file): a response carrying the whole body is hashed as it streams and
// aborted before its last bytes if the digest does not match.
func (p *Proxy) serveP2P(w http.ResponseWriter, r *http.Request, target *url.URL, want string, header http.Header) bool {
	start := time.Now()
	log := p.log.WithFields(logrus.Fields{"url": manifest.RedactURL(target.String()), "client": r.RemoteAddr})
	if want != "" {
		log = log.WithField("digest", want)
	}
	if rg := r.Header.Get("Range"); rg != "" {
		log = log.WithField("range", rg)
	}
	var dv *manifest.DigestVerifier
	if want != "" {
		var err error
		if dv, err = manifest.NewDigestVerifier(want); err != nil {
			log.WithError(err).Warn("proxy: cannot check this blob's digest; passing it through")
			p.st.fallbacks.Add(1)
			return false
		}
	}
	req := p2p.Request{URL: target.String(), Header: header}
	id, err := manifest.TaskID(req.URL, "", nil)
	if err != nil {
		log.WithError(err).Warn("proxy: cannot derive a task ID; passing through")
		p.st.fallbacks.Add(1)
		return false
	}
	e, err := p.lazies.acquire(r.Context(), id, req)
	if err != nil {
		if r.Context().Err() != nil {
			// The client left while the task was being opened.
			http.Error(w, "client went away", http.StatusServiceUnavailable)
			return true
		}
		log.WithError(err).Warn("proxy: P2P unavailable for this request; passing it through to the origin")
		p.st.fallbacks.Add(1)
		return false
	}
	defer p.lazies.release(e)
	l := e.l
	p.st.p2pRequests.Add(1)
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("X-Damselfly-Task", l.TaskID())
	var modtime time.Time
	if want != "" {
		h.Set("Docker-Content-Digest", want)
		h.Set("Etag", `"`+want+`"`)
		h.Set("Cache-Control", "max-age=31536000")
	} else {
		m := l.Task().Meta()
		if m.ETag != "" {
			h.Set("Etag", m.ETag)
		}
		if t, err := http.ParseTime(m.LastModified); err == nil {
			modtime = t
		}
	}
	sw := &statusWriter{ResponseWriter: w}
	br := &blobReader{ctx: r.Context(), l: l, size: l.Size(), timeout: p.cfg.ReadTimeout, log: log, st: &p.st}
	br.dv = dv
	defer func() {
		p.st.p2pBytes.Add(sw.n)
		if v := recover(); v != nil {
			p.st.aborted.Add(1)
			panic(v)
		}
	}()
	// ServeContent does Range (206, Content-Range, 416, multipart), If-Range
	// and conditionals exactly as for a file; the reader streams as pieces
	// arrive.
	http.ServeContent(sw, r, "", modtime, br)
	log.WithFields(logrus.Fields{"status": sw.status, "bytes": sw.n, "size": br.size, "verified": br.verified,
		"took": time.Since(start).Round(time.Millisecond)}).Info("proxy: served through P2P")
	return true
}

// blobReader reads a lazy task sequentially for ServeContent, waiting for
// pieces as it goes, and hashes a read that starts at 0 and runs to the
// end. Failures panic with http.ErrAbortHandler: the status line is out
// already, and cutting the connection is the only honest answer.
type blobReader struct {
	ctx     context.Context
	l       *p2p.Lazy
	size    int64
	pos     int64
	timeout time.Duration
	log     logrus.FieldLogger
	st      *stats

	dv       *manifest.DigestVerifier // nil: nothing to verify
	verified bool
}

func (b *blobReader) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += b.pos
	case io.SeekEnd:
		off += b.size
	default:
		return 0, errors.New("blobReader.Seek: bad whence")
	}
	if off < 0 {
		return 0, errors.New("blobReader.Seek: negative position")
	}
	b.pos = off
	return off, nil
}

func (b *blobReader) Read(p []byte) (int, error) {
	if b.pos >= b.size {
		return 0, io.EOF
	}
	if rest := b.size - b.pos; int64(len(p)) > rest {
		p = p[:rest]
	}
	if len(p) > maxRead {
		p = p[:maxRead]
	}
	ctx, cancel := context.WithTimeout(b.ctx, b.timeout)
	n, err := b.l.ReadAtContext(ctx, p, b.pos)
	cancel()
	if err == io.EOF && n == len(p) {
		err = nil
	}
	if err != nil {
		if b.ctx.Err() != nil {
			b.log.WithField("offset", b.pos).Info("proxy: client went away mid-body")
		} else {
			b.log.WithError(err).WithField("offset", b.pos).Error("proxy: P2P read failed mid-body; aborting the response")
		}
		panic(http.ErrAbortHandler)
	}
	if b.dv != nil && b.pos == b.dv.Written() {
		b.dv.Write(p[:n])
		if b.dv.Written() == b.size {
			if err := b.dv.Verify(); err != nil {
				b.st.mismatches.Add(1)
				b.log.WithError(err).WithField("task", b.l.TaskID()).
					Error("proxy: DIGEST MISMATCH: the blob assembled from P2P pieces does not match its digest; " +
						"aborting the response before its last bytes (the client will retry). Check the registry and the supernode's copy of this task")
				panic(http.ErrAbortHandler)
			}
			b.verified = true
			b.st.verified.Add(1)
		}
	}
	b.pos += int64(n)
	return n, nil
}

// statusWriter records the status and body bytes of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.n += int64(n)
	return n, err
}

// lazyTable shares one open task among the requests for it: concurrent
// and follow-up GETs of a blob (Range requests, retries) reuse one
// registration and one download loop.
type lazyTable struct {
	p  *Proxy
	mu sync.Mutex
	m  map[string]*lazyEntry
}

type lazyEntry struct {
	id    string
	ready chan struct{}
	l     *p2p.Lazy
	err   error

	refs        int // guarded by lazyTable.mu
	lastPresent int64
	timer       *time.Timer
}

func (t *lazyTable) acquire(ctx context.Context, id string, req p2p.Request) (*lazyEntry, error) {
	t.mu.Lock()
	if e := t.m[id]; e != nil {
		e.refs++
		if e.timer != nil {
			e.timer.Stop()
			e.timer = nil
		}
		t.mu.Unlock()
		select {
		case <-e.ready:
		case <-ctx.Done():
			t.release(e)
			return nil, ctx.Err()
		}
		if e.err != nil {
			return nil, e.err
		}
		return e, nil
	}
	e := &lazyEntry{id: id, ready: make(chan struct{}), refs: 1}
	t.m[id] = e
	t.mu.Unlock()
	// Opened on behalf of everyone who joins: not cancelled with this client.
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), openTimeout)
	l, err := t.p.cfg.Peer.OpenLazy(octx, req, p2p.LazyOptions{Prefetch: true, ReadTimeout: t.p.cfg.ReadTimeout})
	cancel()
	t.mu.Lock()
	e.l, e.err = l, err
	if err != nil {
		e.err = fmt.Errorf("open P2P task: %w", err)
		delete(t.m, id)
	}
	close(e.ready)
	t.mu.Unlock()
	if err != nil {
		return nil, e.err
	}
	return e, nil
}

// release drops a reference; the last one leaves the task open for the
// linger time, and longer while its prefetch makes progress.
func (t *lazyTable) release(e *lazyEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e.refs--
	if e.refs > 0 || e.l == nil || t.m[e.id] != e {
		return
	}
	e.lastPresent = e.l.Present()
	e.timer = time.AfterFunc(t.p.cfg.Linger, func() { t.expire(e) })
}

func (t *lazyTable) expire(e *lazyEntry) {
	t.mu.Lock()
	if e.refs > 0 || t.m[e.id] != e {
		t.mu.Unlock()
		return
	}
	if !e.l.Complete() {
		if now := e.l.Present(); now > e.lastPresent {
			e.lastPresent = now
			e.timer = time.AfterFunc(t.p.cfg.Linger, func() { t.expire(e) })
			t.mu.Unlock()
			return
		}
		t.p.log.WithFields(logrus.Fields{"task": e.id[:12], "present": e.lastPresent, "size": e.l.Size()}).
			Info("proxy: closing an unfinished task nobody reads and that makes no progress")
	}
	delete(t.m, e.id)
	t.mu.Unlock()
	e.l.Close()
}

func (t *lazyTable) closeAll() {
	t.mu.Lock()
	var ls []*p2p.Lazy
	for id, e := range t.m {
		if e.timer != nil {
			e.timer.Stop()
		}
		select {
		case <-e.ready:
			if e.l != nil {
				ls = append(ls, e.l)
			}
		default:
		}
		delete(t.m, id)
	}
	t.mu.Unlock()
	for _, l := range ls {
		l.Close()
	}
}
