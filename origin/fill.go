package origin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

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

// Landing is an optional Sink that takes a piece's bytes as they arrive
// (the seed streams them to children before the piece is whole): a range
// worker reads piece i into the buffer Landing returns (size bytes, the
// sink's to keep), calling landed after every read with how many bytes of
// it are in, then hands it to PutPiece as usual. A piece whose fetch fails
// is not put; a Claimer sink learns that from its claim's release.
type Landing interface {
	Landing(i int, size int64) (buf []byte, landed func(n int))
}

// Claimer is an optional Sink that coordinates Fill's range requests with
// other fetchers of the same pieces (e.g. a seed's on-demand fetches):
// before a range worker requests piece i it claims it, and skips the piece
// when another fetcher holds the claim (the piece is that fetcher's to get;
// a caller that still lacks it after Fill returns fills again). release is
// called once the piece is stored or its fetch failed.
type Claimer interface {
	Claim(i int) (release func(), ok bool)
}

// FillOptions tune Fill and FetchPiece.
type FillOptions struct {
	Concurrency int           // range requests in flight; default 4
	Limiter     *rate.Limiter // optional bytes/s cap on bytes read from the origin (WaitN in chunks <= Burst)
	// Limiters are further caps, each charged for every byte (e.g. a
	// download's own limit and the host's); nil entries are skipped.
	Limiters []*rate.Limiter
	OnBytes  func(n int) // optional: called with every count of body bytes read from the origin (for metrics/tests)
	// Order optionally gives the order in which pieces are fetched (default
	// ascending). It is consulted each time a piece is about to be started,
	// so it may change as priorities do; pieces the sink already has are
	// skipped, and missing pieces it leaves out are fetched afterwards in
	// ascending order.
	Order func() []int
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
		"acceptRanges": info.AcceptRanges}).Debug("origin: fill starting")
	noRanges := false
	if info.AcceptRanges {
		err := c.fillRanges(ctx, rawURL, redacted, header, info, layout, sink, p, opt)
		if !errors.Is(err, ErrNoRanges) {
			return err
		}
		log.WithError(err).Info("origin: does not honour ranges; falling back to streaming the whole body")
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

// limiters are the non-nil limiters of opt.
func (opt *FillOptions) limiters() []*rate.Limiter {
	var out []*rate.Limiter
	for _, l := range append([]*rate.Limiter{opt.Limiter}, opt.Limiters...) {
		if l != nil {
			out = append(out, l)
		}
	}
	return out
}

// meteredRead reads from r into p until p is full, the body ends or fails,
// reporting every count of bytes to opt.OnBytes and charging it to
// opt.Limiter. A clean end before p is full returns io.EOF.
func meteredRead(ctx context.Context, r io.Reader, p []byte, opt *FillOptions) (int, error) {
	limiters := opt.limiters()
	chunk := readChunk
	for _, l := range limiters {
		if b := l.Burst(); b > 0 && b < chunk {
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
			for _, l := range limiters {
				if werr := l.WaitN(ctx, k); werr != nil {
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
