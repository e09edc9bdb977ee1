package origin

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/manifest"
)

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
	_, n := layout.PieceRange(i)
	buf := make([]byte, n)
	if err := c.fetchPieceInto(ctx, rawURL, redacted, header, info, layout, i, buf, opt); err != nil {
		return nil, err
	}
	return buf, nil
}

// fetchPieceInto fills buf (the piece's length) with piece i.
func (c *Client) fetchPieceInto(ctx context.Context, rawURL, redacted string, header http.Header, info Info, layout manifest.Layout, i int, buf []byte, opt FillOptions) error {
	off, _ := layout.PieceRange(i)
	log := c.log.WithFields(logrus.Fields{"url": redacted, "piece": i})
	if err := c.fetchBytes(ctx, rawURL, redacted, header, info, layout, off, buf, opt, log, fmt.Sprintf("fetch piece %d", i)); err != nil {
		return fmt.Errorf("fetch piece %d of %s: %w", i, redacted, err)
	}
	return nil
}

// FetchRange fills dst with the bytes of the content at rawURL from offset
// off, with ranged GETs checked and retried as FetchPiece's (a retry
// resumes within the range): for ranges that are not pieces of one layout,
// such as the part of an object a pack's piece covers. info.Length must be
// the content's length.
func (c *Client) FetchRange(ctx context.Context, rawURL string, header http.Header, info Info, off int64, dst []byte, opt FillOptions) error {
	return c.StreamRange(ctx, rawURL, header, info, off, int64(len(dst)), dst, nil, opt)
}

// StreamRange reads bytes [off, off+size) of the content at rawURL in order
// with one ranged GET, handing them to emit (when not nil) in consecutive
// blocks of len(buf) bytes, the last one shorter, each as soon as it is in:
// a reader of a long range gets its first blocks without waiting for the
// rest. buf is reused for every block, so emit must not keep it. Requests
// are checked and retried as FetchPiece's: a cut resumes with a Range
// starting after the bytes already received, within the current block. An
// error from emit stops the stream and is returned as it is.
func (c *Client) StreamRange(ctx context.Context, rawURL string, header http.Header, info Info, off, size int64, buf []byte, emit func(block []byte) error, opt FillOptions) error {
	redacted, err := checkURL(rawURL)
	if err != nil {
		return fmt.Errorf("fetch a range: %w", err)
	}
	end := off + size
	if off < 0 || size <= 0 || end > info.Length || len(buf) == 0 {
		return fmt.Errorf("fetch bytes %d-%d of %s: outside its %d bytes (or no buffer)", off, end-1, redacted, info.Length)
	}
	layout := manifest.Layout{Length: info.Length, PieceSize: info.Length}
	log := c.log.WithFields(logrus.Fields{"url": redacted, "from": off, "to": end - 1})
	what := fmt.Sprintf("fetch bytes %d-%d", off, end-1)
	s := &rangeStream{next: off, end: end, buf: buf, emit: emit}
	if err := c.streamBytes(ctx, rawURL, redacted, header, info, layout, s, opt, log, what); err != nil {
		if s.emitErr != nil {
			return s.emitErr
		}
		return fmt.Errorf("%s of %s: %w", what, redacted, err)
	}
	return nil
}

// rangeStream is where a ranged read stands: the block being filled starts
// at next and holds filled bytes; the range ends before end.
type rangeStream struct {
	next, end int64
	filled    int
	buf       []byte
	emit      func(block []byte) error
	emitErr   error // emit's error, which ended the stream
}

// at is the offset of the next byte wanted.
func (s *rangeStream) at() int64 { return s.next + int64(s.filled) }

// fetchBytes fills buf from offset off of the content with retried range
// requests.
func (c *Client) fetchBytes(ctx context.Context, rawURL, redacted string, header http.Header, info Info,
	layout manifest.Layout, off int64, buf []byte, opt FillOptions, log logrus.FieldLogger, what string) error {
	s := &rangeStream{next: off, end: off + int64(len(buf)), buf: buf}
	return c.streamBytes(ctx, rawURL, redacted, header, info, layout, s, opt, log, what)
}

// streamBytes runs s to its end with retried range requests.
func (c *Client) streamBytes(ctx context.Context, rawURL, redacted string, header http.Header, info Info,
	layout manifest.Layout, s *rangeStream, opt FillOptions, log logrus.FieldLogger, what string) error {
	return c.retry(ctx, log, what, func(attempt int) (bool, error) {
		before := s.at()
		err := c.fetchRange(ctx, rawURL, redacted, header, info, layout, s, &opt, log.WithField("attempt", attempt))
		return s.at() > before, err
	})
}

// fetchRange makes one request for the rest of s, emitting its blocks as
// they fill.
func (c *Client) fetchRange(ctx context.Context, rawURL, redacted string, header http.Header, info Info,
	layout manifest.Layout, s *rangeStream, opt *FillOptions, log logrus.FieldLogger) error {
	start, end := s.at(), s.end-1
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
	log.WithFields(logrus.Fields{"status": resp.StatusCode, "from": start, "to": end}).Debug("origin: range GET answered")
	if err := checkRangeAnswer(resp, redacted, info, layout, ifRange, start, end); err != nil {
		return err
	}
	for s.next < s.end {
		block := int(min(int64(len(s.buf)), s.end-s.next))
		n, err := meteredRead(ctx, resp.Body, s.buf[s.filled:block], opt)
		s.filled += n
		if err == io.EOF {
			return fmt.Errorf("body ended after %d of %d bytes: %w", s.at()-start, end-start+1, io.ErrUnexpectedEOF)
		}
		if err != nil {
			return fmt.Errorf("read body at byte %d: %w", s.at(), err)
		}
		if s.emit != nil {
			if err := s.emit(s.buf[:block]); err != nil {
				s.emitErr = err
				return permanent(err)
			}
		}
		s.next += int64(block)
		s.filled = 0
	}
	var one [1]byte
	if k, _ := io.ReadFull(resp.Body, one[:]); k > 0 {
		return permanent(fmt.Errorf("origin sent more than the %d bytes of range %d-%d", end-start+1, start, end))
	}
	return nil
}

// checkRangeAnswer accepts a 206 for exactly bytes start-end of content of
// the layout's length, carrying the validators of info. A whole body is
// ErrChanged when the content changed (length, If-Range validator) and
// ErrNoRanges otherwise; other statuses are StatusErrors.
func checkRangeAnswer(resp *http.Response, redacted string, info Info, layout manifest.Layout, ifRange string, start, end int64) error {
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
	return checkValidators(info, resp.Header)
}

// fillRanges runs the range workers until every piece is in the sink or one
// of them fails.
func (c *Client) fillRanges(ctx context.Context, rawURL, redacted string, header http.Header, info Info,
	layout manifest.Layout, sink Sink, p *picker, opt FillOptions) error {
	ls, landing := sink.(Landing)
	return fillPieces(ctx, sink, p, opt.Concurrency, func(ctx context.Context, i int) ([]byte, error) {
		if !landing {
			return c.FetchPiece(ctx, rawURL, header, info, layout, i, opt)
		}
		_, n := layout.PieceRange(i)
		buf, landed := ls.Landing(i, n)
		o, onBytes, got := opt, opt.OnBytes, 0
		o.OnBytes = func(k int) {
			if onBytes != nil {
				onBytes(k)
			}
			got += k // a retry resumes after the bytes in: got stays the count
			landed(got)
		}
		if err := c.fetchPieceInto(ctx, rawURL, redacted, header, info, layout, i, buf, o); err != nil {
			return nil, err
		}
		return buf, nil
	}, redacted)
}

// FillPieces fills sink with fetch, one piece per call, concurrency calls
// at a time, in the order opt.Order gives (then ascending), as Fill does
// with range requests: pieces the sink has are skipped, a Claimer sink's
// claims are honoured, and the first error stops every worker. It is for
// sources whose pieces are not one range of one URL (a pack of objects).
func FillPieces(ctx context.Context, sink Sink, concurrency int, order func() []int,
	fetch func(ctx context.Context, i int) ([]byte, error)) error {
	if concurrency <= 0 {
		concurrency = DefaultConcurrency
	}
	p := newPicker(sink.Layout().NumPieces(), sink, order)
	if p.missing() == 0 {
		return nil
	}
	return fillPieces(ctx, sink, p, concurrency, fetch, "the content")
}

// fillPieces runs concurrency workers taking pieces from p and fetching
// them with fetch until every piece is in the sink or one fetch fails.
func fillPieces(ctx context.Context, sink Sink, p *picker, concurrency int,
	fetch func(ctx context.Context, i int) ([]byte, error), redacted string) error {
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
	workers := min(concurrency, p.missing())
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i, ok := p.pick()
				if !ok {
					return
				}
				release := func() {}
				if cl, isClaimer := sink.(Claimer); isClaimer {
					if release, ok = cl.Claim(i); !ok {
						continue // another fetcher is getting it
					}
				}
				data, err := fetch(ctx, i)
				if err != nil {
					release()
					fail(err)
					return
				}
				err = sink.PutPiece(i, data)
				release()
				if err != nil {
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
