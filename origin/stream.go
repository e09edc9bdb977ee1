package origin

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/manifest"
)

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

// once makes one GET and consumes its body from f.pos on: request, check
// the answer, skip what an origin that cannot resume sends again, then copy
// the rest into pieces, committing each as it completes.
func (f *streamFill) once(ctx context.Context, log logrus.FieldLogger) error {
	resp, rangeSent, err := f.request(ctx)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	log.WithFields(logrus.Fields{"status": resp.StatusCode, "offset": f.pos}).Debug("origin: GET answered")
	skip, err := f.check(resp, rangeSent, log)
	if err != nil {
		return err
	}
	chunked := slices.Contains(resp.TransferEncoding, "chunked")
	if err := f.skip(ctx, resp.Body, skip, chunked); err != nil {
		return err
	}
	if err := f.copy(ctx, resp.Body, chunked); err != nil {
		return err
	}
	var one [1]byte
	if k, _ := io.ReadFull(resp.Body, one[:]); k > 0 {
		return fmt.Errorf("%w: body longer than %d bytes", ErrChanged, f.layout.Length)
	}
	return nil
}

// request sends a GET for the content, resuming from f.pos with Range (and
// If-Range on a strong ETag) unless nothing was received yet or the origin
// is known to ignore ranges. rangeSent says whether it asked for a range.
func (f *streamFill) request(ctx context.Context) (resp *http.Response, rangeSent bool, err error) {
	req, err := newRequest(ctx, http.MethodGet, f.rawURL, f.redacted, f.header)
	if err != nil {
		return nil, false, err
	}
	rangeSent = f.pos > 0 && !f.noRanges
	if rangeSent {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", f.pos))
		if etag := strongETag(f.info.ETag); etag != "" {
			req.Header.Set("If-Range", etag)
		}
	}
	resp, err = f.c.do(req, f.redacted)
	if err != nil {
		return nil, false, err
	}
	return resp, rangeSent, nil
}

// check accepts a 206 for exactly the range asked for, or a whole body
// of the layout's length (then the origin ignores ranges: skip is how many
// bytes already received must be read again and dropped); either must
// carry the validators the fill started with. Anything else is an error:
// ErrChanged when the length or validators differ.
func (f *streamFill) check(resp *http.Response, rangeSent bool, log logrus.FieldLogger) (skip int64, err error) {
	switch code := resp.StatusCode; {
	case code == http.StatusPartialContent && rangeSent:
		cr := resp.Header.Get("Content-Range")
		s, e, total, ok := parseContentRange(cr)
		switch {
		case !ok || s < 0:
			return 0, permanent(fmt.Errorf("malformed Content-Range %q", cr))
		case total >= 0 && total != f.layout.Length:
			return 0, fmt.Errorf("%w: origin length is %d, expected %d", ErrChanged, total, f.layout.Length)
		case s != f.pos || e != f.layout.Length-1:
			return 0, permanent(fmt.Errorf("origin answered range %d-%d to a request from byte %d", s, e, f.pos))
		}
	case code == http.StatusRequestedRangeNotSatisfiable && rangeSent:
		if _, _, total, ok := parseContentRange(resp.Header.Get("Content-Range")); ok && total != f.layout.Length {
			return 0, fmt.Errorf("%w: origin length is %d, expected %d", ErrChanged, total, f.layout.Length)
		}
		return 0, statusError(resp, f.redacted)
	case code >= 200 && code < 300 && code != http.StatusPartialContent:
		if resp.ContentLength >= 0 && resp.ContentLength != f.layout.Length {
			return 0, fmt.Errorf("%w: origin length is %d, expected %d", ErrChanged, resp.ContentLength, f.layout.Length)
		}
		if rangeSent {
			f.noRanges = true
		}
		skip = f.pos
		if skip > 0 {
			log.WithField("discard", skip).Info("origin: cannot resume; re-reading from the start and discarding what was received")
		}
	default:
		return 0, statusError(resp, f.redacted)
	}
	if err := checkValidators(f.info, resp.Header); err != nil {
		return 0, err
	}
	return skip, nil
}

// skip reads and drops the first n bytes of body (content already
// received from an earlier attempt).
func (f *streamFill) skip(ctx context.Context, body io.Reader, n int64, chunked bool) error {
	for n > 0 {
		k, err := meteredRead(ctx, body, f.scratch[:min(int64(len(f.scratch)), n)], f.opt)
		n -= int64(k)
		if err != nil {
			return f.readErr(err, chunked, f.pos-n)
		}
	}
	return nil
}

// copy reads body from f.pos to the end of the content into the pieces
// being assembled, committing each as it completes; bytes of pieces the
// sink already has are read and dropped.
func (f *streamFill) copy(ctx context.Context, body io.Reader, chunked bool) error {
	for f.pos < f.layout.Length {
		i, dst := f.dest()
		k, err := meteredRead(ctx, body, dst, f.opt)
		f.pos += int64(k)
		if cerr := f.commit(i); cerr != nil {
			return cerr
		}
		if err != nil {
			return f.readErr(err, chunked, f.pos)
		}
	}
	return nil
}

// dest returns the piece f.pos is in and where its next bytes go: the
// rest of the piece's buffer (made when f.pos enters a piece the sink
// lacks), or scratch space up to the piece's end for a piece it has.
func (f *streamFill) dest() (int, []byte) {
	i := int(f.pos / f.layout.PieceSize)
	off, n := f.layout.PieceRange(i)
	if f.piece != i {
		f.piece, f.cur = i, nil
		if !f.sink.Has(i) {
			f.cur = make([]byte, n)
		}
	}
	have := f.pos - off
	if f.cur != nil {
		return i, f.cur[have:]
	}
	return i, f.scratch[:min(int64(len(f.scratch)), n-have)]
}

// commit hands piece i to the sink once all its bytes arrived (the sink
// verifies it); a sink error is permanent.
func (f *streamFill) commit(i int) error {
	off, n := f.layout.PieceRange(i)
	if f.cur == nil || f.pos != off+n {
		return nil
	}
	data := f.cur
	f.cur, f.piece = nil, -1
	if err := f.sink.PutPiece(i, data); err != nil {
		return permanent(fmt.Errorf("store piece %d: %w", i, err))
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
