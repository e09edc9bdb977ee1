package origin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"

	"github.com/sirupsen/logrus"
	"golang.org/x/time/rate"

	"github.com/damselfly-p2p/damselfly/manifest"
)

// Sink receives pieces. Fill calls its methods from several goroutines at
// once when fetching with ranges.
type Sink interface {
	Layout() manifest.Layout
	Has(i int) bool
	PutPiece(i int, data []byte) error // stores a whole piece (the sink hashes it); data is the sink's to keep
}

// FillOptions tune Fill and FetchPiece.
type FillOptions struct {
	Concurrency int           // range requests in flight; default 4
	Limiter     *rate.Limiter // optional bytes/s cap on bytes read from the origin (WaitN in chunks <= Burst)
	OnBytes     func(n int)   // optional: called with every count of body bytes read from the origin (for metrics/tests)
	// Order optionally gives the order in which pieces are fetched (default
	// ascending). It is consulted each time a piece is about to be started,
	// so it may change as priorities do; pieces the sink already has are
	// skipped, and missing pieces it leaves out are fetched afterwards in
	// ascending order.
	Order func() []int
}

// meteredRead reads from r into p until p is full, the body ends or fails,
// reporting every count of bytes to opt.OnBytes and charging it to
// opt.Limiter. A clean end before p is full returns io.EOF.
func meteredRead(ctx context.Context, r io.Reader, p []byte, opt *FillOptions) (int, error) {
	chunk := readChunk
	if opt.Limiter != nil {
		if b := opt.Limiter.Burst(); b > 0 && b < chunk {
			chunk = b
		}
	}
	n := 0
	for n < len(p) {
		k, err := r.Read(p[n:min(len(p), n+chunk)])
		if k > 0 {
			n += k
			if opt.OnBytes != nil {
				opt.OnBytes(k)
			}
			if opt.Limiter != nil {
				if werr := opt.Limiter.WaitN(ctx, k); werr != nil {
					if ctx.Err() != nil {
						return n, ctx.Err()
					}
					return n, permanent(fmt.Errorf("rate limiter: %w", werr))
				}
			}
		}
		if err != nil {
			if err == io.EOF && n == len(p) {
				return n, nil
			}
			return n, err
		}
	}
	return n, nil
}

// FetchPiece fetches piece i of the content described by info and layout into
// a new buffer. It sends "Range: bytes=off-end" (plus If-Range with the ETag
// when it is strong); a failure mid-body resumes with a Range starting after
// the bytes already received, never re-downloading them, retried up to the
// retry limit with backoff. A 206 whose Content-Range does not match, or a
// body of the wrong length, is an error; a changed length or validator is
// ErrChanged. If the origin answers a range request with the whole body, it
// does not honour ranges: the error wraps ErrNoRanges. FetchPiece sends a
// range request even when info.AcceptRanges is false, since origins that do
// not advertise ranges often serve them anyway.
func (c *Client) FetchPiece(ctx context.Context, rawURL string, header http.Header, info Info, layout manifest.Layout, i int, opt FillOptions) ([]byte, error) {
	redacted, err := checkURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("fetch piece %d: %w", i, err)
	}
	if err := layout.Validate(); err != nil {
		return nil, fmt.Errorf("fetch piece %d of %s: %w", i, redacted, err)
	}
	if i < 0 || i >= layout.NumPieces() {
		return nil, fmt.Errorf("fetch piece %d of %s: no such piece (%d pieces)", i, redacted, layout.NumPieces())
	}
	off, n := layout.PieceRange(i)
	buf := make([]byte, n)
	var got int64
	log := c.log.WithFields(logrus.Fields{"url": redacted, "piece": i})
	err = c.retry(ctx, log, fmt.Sprintf("fetch piece %d", i), func(attempt int) (bool, error) {
		before := got
		err := c.fetchRange(ctx, rawURL, redacted, header, info, layout, off, buf, &got, &opt,
			log.WithField("attempt", attempt))
		return got > before, err
	})
	if err != nil {
		return nil, fmt.Errorf("fetch piece %d of %s: %w", i, redacted, err)
	}
	return buf, nil
}

// fetchRange makes one request for buf[*got:], which starts at byte off of
// the content, advancing *got as bytes arrive.
func (c *Client) fetchRange(ctx context.Context, rawURL, redacted string, header http.Header, info Info,
	layout manifest.Layout, off int64, buf []byte, got *int64, opt *FillOptions, log logrus.FieldLogger) error {
	start, end := off+*got, off+int64(len(buf))-1
	req, err := newRequest(ctx, http.MethodGet, rawURL, redacted, header)
	if err != nil {
		return err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", start, end))
	ifRange := strongETag(info.ETag)
	if ifRange != "" {
		req.Header.Set("If-Range", ifRange)
	}
	resp, err := c.do(req, redacted)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	log.WithFields(logrus.Fields{"status": resp.StatusCode, "from": start, "to": end}).Debug("source: range GET answered")
	switch code := resp.StatusCode; {
	case code == http.StatusPartialContent:
	case code == http.StatusRequestedRangeNotSatisfiable:
		if _, _, total, ok := parseContentRange(resp.Header.Get("Content-Range")); ok && total != layout.Length {
			return fmt.Errorf("%w: origin length is %d, expected %d", ErrChanged, total, layout.Length)
		}
		return statusError(resp, redacted)
	case code >= 200 && code < 300:
		// The whole body: either the If-Range validator failed (the
		// content changed) or the origin ignores ranges.
		if resp.ContentLength >= 0 && resp.ContentLength != layout.Length {
			return fmt.Errorf("%w: origin length is %d, expected %d", ErrChanged, resp.ContentLength, layout.Length)
		}
		if ifRange != "" && resp.Header.Get("ETag") != ifRange {
			return fmt.Errorf("%w: answered %s to a range request with If-Range", ErrChanged, resp.Status)
		}
		if err := checkValidators(info, resp.Header); err != nil {
			return err
		}
		return fmt.Errorf("%w: answered %s to a range request", ErrNoRanges, resp.Status)
	default:
		return statusError(resp, redacted)
	}

	cr := resp.Header.Get("Content-Range")
	s, e, total, ok := parseContentRange(cr)
	switch {
	case !ok || s < 0:
		return permanent(fmt.Errorf("malformed Content-Range %q", cr))
	case total >= 0 && total != layout.Length:
		return fmt.Errorf("%w: origin length is %d, expected %d", ErrChanged, total, layout.Length)
	case s != start || e != end:
		return permanent(fmt.Errorf("origin answered range %d-%d to a request for %d-%d", s, e, start, end))
	case resp.ContentLength >= 0 && resp.ContentLength != end-start+1:
		return permanent(fmt.Errorf("origin sent %d bytes for range %d-%d", resp.ContentLength, start, end))
	}
	if err := checkValidators(info, resp.Header); err != nil {
		return err
	}
	n, err := meteredRead(ctx, resp.Body, buf[*got:], opt)
	*got += int64(n)
	if err == io.EOF {
		return fmt.Errorf("body ended after %d of %d bytes: %w", n, end-start+1, io.ErrUnexpectedEOF)
	}
	if err != nil {
		return fmt.Errorf("read body at byte %d: %w", off+*got, err)
	}
	var one [1]byte
	if k, _ := io.ReadFull(resp.Body, one[:]); k > 0 {
		return permanent(fmt.Errorf("origin sent more than the %d bytes of range %d-%d", end-start+1, start, end))
	}
	return nil
}

// Fill fetches every piece the sink lacks and hands each to sink.PutPiece as
// soon as it is complete.
//
// With info.AcceptRanges, a pool of opt.Concurrency workers fetch pieces with
// FetchPiece; if the origin turns out not to honour ranges (ErrNoRanges),
// Fill falls back to streaming. Otherwise (or after the fallback) it sends
// one GET for the whole body and cuts it into pieces as the bytes arrive;
// pieces the sink already has are read and discarded, not put. If the
// stream breaks it resumes with a Range from the first byte not yet received,
// or, when the origin ignores ranges, re-GETs and discards up to that point.
// The body's length must equal the layout's (else ErrChanged).
//
// Fill returns the first permanent error; cancelling ctx stops all workers
// promptly.
func (c *Client) Fill(ctx context.Context, rawURL string, header http.Header, info Info, sink Sink, opt FillOptions) error {
	redacted, err := checkURL(rawURL)
	if err != nil {
		return fmt.Errorf("fill: %w", err)
	}
	layout := sink.Layout()
	if err := layout.Validate(); err != nil {
		return fmt.Errorf("fill %s: %w", redacted, err)
	}
	if opt.Concurrency <= 0 {
		opt.Concurrency = DefaultConcurrency
	}
	log := c.log.WithField("url", redacted)
	p := newPicker(layout.NumPieces(), sink, opt.Order)
	missing := p.missing()
	if missing == 0 {
		return nil
	}
	log.WithFields(logrus.Fields{"pieces": layout.NumPieces(), "missing": missing, "length": layout.Length,
		"acceptRanges": info.AcceptRanges}).Debug("source: fill starting")
	noRanges := false
	if info.AcceptRanges {
		err := c.fillRanges(ctx, rawURL, redacted, header, info, layout, sink, p, opt)
		if !errors.Is(err, ErrNoRanges) {
			return err
		}
		log.WithError(err).Info("source: origin does not honour ranges; falling back to streaming the whole body")
		noRanges = true
		if p.missing() == 0 {
			return nil
		}
	}
	f := &streamFill{c: c, rawURL: rawURL, redacted: redacted, header: header, info: info, layout: layout,
		sink: sink, opt: &opt, noRanges: noRanges, piece: -1, log: log}
	if err := f.run(ctx); err != nil {
		return fmt.Errorf("stream %s: %w", redacted, err)
	}
	return nil
}

// fillRanges runs the range workers until every piece is in the sink or one
// of them fails.
func (c *Client) fillRanges(ctx context.Context, rawURL, redacted string, header http.Header, info Info,
	layout manifest.Layout, sink Sink, p *picker, opt FillOptions) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		once     sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		once.Do(func() { firstErr = err })
		cancel()
	}
	workers := min(opt.Concurrency, p.missing())
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i, ok := p.pick()
				if !ok {
					return
				}
				data, err := c.FetchPiece(ctx, rawURL, header, info, layout, i, opt)
				if err != nil {
					fail(err)
					return
				}
				if err := sink.PutPiece(i, data); err != nil {
					fail(fmt.Errorf("store piece %d of %s: %w", i, redacted, err))
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	// Workers also stop when the caller's context ends.
	return ctx.Err()
}

// picker hands out pieces to range workers.
type picker struct {
	mu      sync.Mutex
	n       int
	sink    Sink
	order   func() []int
	started []bool
	next    int // ascending scan position
}

func newPicker(n int, sink Sink, order func() []int) *picker {
	return &picker{n: n, sink: sink, order: order, started: make([]bool, n)}
}

func (p *picker) missing() int {
	m := 0
	for i := range p.n {
		if !p.sink.Has(i) {
			m++
		}
	}
	return m
}

// pick returns the next piece to fetch, following the caller's order first.
func (p *picker) pick() (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.order != nil {
		for _, i := range p.order() {
			if i >= 0 && i < p.n && !p.started[i] && !p.sink.Has(i) {
				p.started[i] = true
				return i, true
			}
		}
	}
	for ; p.next < p.n; p.next++ {
		if i := p.next; !p.started[i] && !p.sink.Has(i) {
			p.started[i] = true
			p.next++
			return i, true
		}
	}
	return -1, false
}

// streamFill is the state of a streaming fill, kept across attempts so that
// a resumed stream continues exactly where the broken one stopped.
type streamFill struct {
	c        *Client
	rawURL   string
	redacted string
	header   http.Header
	info     Info
	layout   manifest.Layout
	sink     Sink
	opt      *FillOptions
	log      logrus.FieldLogger
	noRanges bool // the origin is known to ignore Range

	pos     int64  // bytes of the content received so far
	piece   int    // piece that cur belongs to, -1 for none
	cur     []byte // the piece being assembled; nil while discarding a piece the sink has
	scratch []byte
}

func (f *streamFill) run(ctx context.Context) error {
	f.scratch = make([]byte, readChunk)
	return f.c.retry(ctx, f.log, "stream", func(attempt int) (bool, error) {
		before := f.pos
		err := f.once(ctx, f.log.WithField("attempt", attempt))
		return f.pos > before, err
	})
}

// once makes one GET and consumes its body from f.pos on.
func (f *streamFill) once(ctx context.Context, log logrus.FieldLogger) error {
	req, err := newRequest(ctx, http.MethodGet, f.rawURL, f.redacted, f.header)
	if err != nil {
		return err
	}
	rangeSent := f.pos > 0 && !f.noRanges
	if rangeSent {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", f.pos))
		if etag := strongETag(f.info.ETag); etag != "" {
			req.Header.Set("If-Range", etag)
		}
	}
	resp, err := f.c.do(req, f.redacted)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	log.WithFields(logrus.Fields{"status": resp.StatusCode, "offset": f.pos}).Debug("source: GET answered")

	var skip int64
	switch code := resp.StatusCode; {
	case code == http.StatusPartialContent && rangeSent:
		cr := resp.Header.Get("Content-Range")
		s, e, total, ok := parseContentRange(cr)
		switch {
		case !ok || s < 0:
			return permanent(fmt.Errorf("malformed Content-Range %q", cr))
		case total >= 0 && total != f.layout.Length:
			return fmt.Errorf("%w: origin length is %d, expected %d", ErrChanged, total, f.layout.Length)
		case s != f.pos || e != f.layout.Length-1:
			return permanent(fmt.Errorf("origin answered range %d-%d to a request from byte %d", s, e, f.pos))
		}
	case code == http.StatusRequestedRangeNotSatisfiable && rangeSent:
		if _, _, total, ok := parseContentRange(resp.Header.Get("Content-Range")); ok && total != f.layout.Length {
			return fmt.Errorf("%w: origin length is %d, expected %d", ErrChanged, total, f.layout.Length)
		}
		return statusError(resp, f.redacted)
	case code >= 200 && code < 300 && code != http.StatusPartialContent:
		if resp.ContentLength >= 0 && resp.ContentLength != f.layout.Length {
			return fmt.Errorf("%w: origin length is %d, expected %d", ErrChanged, resp.ContentLength, f.layout.Length)
		}
		if rangeSent {
			f.noRanges = true
		}
		skip = f.pos
		if skip > 0 {
			log.WithField("discard", skip).Info("source: origin cannot resume; re-reading from the start and discarding what was received")
		}
	default:
		return statusError(resp, f.redacted)
	}
	if err := checkValidators(f.info, resp.Header); err != nil {
		return err
	}

	chunked := slices.Contains(resp.TransferEncoding, "chunked")
	for skip > 0 {
		n, err := meteredRead(ctx, resp.Body, f.scratch[:min(int64(len(f.scratch)), skip)], f.opt)
		skip -= int64(n)
		if err != nil {
			return f.readErr(err, chunked, f.pos-skip)
		}
	}
	ps := f.layout.PieceSize
	for f.pos < f.layout.Length {
		i := int(f.pos / ps)
		off, n := f.layout.PieceRange(i)
		if f.piece != i {
			f.piece, f.cur = i, nil
			if !f.sink.Has(i) {
				f.cur = make([]byte, n)
			}
		}
		have := f.pos - off
		dst := f.scratch[:min(int64(len(f.scratch)), n-have)]
		if f.cur != nil {
			dst = f.cur[have:]
		}
		k, err := meteredRead(ctx, resp.Body, dst, f.opt)
		f.pos += int64(k)
		if f.cur != nil && f.pos == off+n {
			data := f.cur
			f.cur, f.piece = nil, -1
			if perr := f.sink.PutPiece(i, data); perr != nil {
				return permanent(fmt.Errorf("store piece %d: %w", i, perr))
			}
		}
		if err != nil {
			return f.readErr(err, chunked, f.pos)
		}
	}
	var one [1]byte
	if k, _ := io.ReadFull(resp.Body, one[:]); k > 0 {
		return fmt.Errorf("%w: body longer than %d bytes", ErrChanged, f.layout.Length)
	}
	return nil
}

// readErr classifies a failed body read at content offset at. A chunked body
// that ends cleanly is complete, so ending early means the content is shorter
// now; a body without framing that ends early may just have been cut.
func (f *streamFill) readErr(err error, chunked bool, at int64) error {
	if err == io.EOF {
		if chunked {
			return fmt.Errorf("%w: body ended at byte %d of %d", ErrChanged, at, f.layout.Length)
		}
		return fmt.Errorf("body ended at byte %d of %d: %w", at, f.layout.Length, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("read body at byte %d: %w", at, err)
}
