package p2p

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/objstore"
	"github.com/damselfly-p2p/damselfly/p2p/ratelimit"
)

// RangeSource is content read by byte ranges from somewhere other than an
// HTTP origin or one s3 object: for example objstore.Pack, the small
// objects of a directory as one task. Its Identity names the content (the
// task ID derives from it) and must change whenever the content does.
type RangeSource interface {
	Identity() string
	Size() int64
	// GetRange returns exactly n bytes from offset off, or an error.
	GetRange(ctx context.Context, off, n int64) (io.ReadCloser, error)
}

// RangeTaskID is the task ID of a range source's content: a sha256 of its
// identity (and the tag, when there is one).
func RangeTaskID(src RangeSource, tag string) string {
	key := "range " + src.Identity()
	if tag != "" {
		key += "\x00tag=" + tag
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// openLazyRange opens LazyOptions.Range for lazy reads: this peer fetches
// its pieces from the source directly (the supernode's seed could not), and
// keeps them in the store like any task's, so a reopen resumes and reads
// what is present offline. req.URL only names the task in logs.
func (p *Peer) openLazyRange(ctx context.Context, req Request, opt LazyOptions) (*Lazy, error) {
	if opt.Range.Size() < 0 {
		return nil, fmt.Errorf("open %s: negative size", manifest.RedactURL(req.URL))
	}
	l := p.newLazy(req, opt, RangeTaskID(opt.Range, req.Tag))
	l.log.WithField("identity", opt.Range.Identity()).Debug("range source")
	if err := l.openDirect(ctx, nil); err != nil {
		return nil, err
	}
	return l, nil
}

// fetchRangePiece reads piece i of src within the rate limits lims; a
// prefetch says so to the source (objstore.WithBackground), which may then
// hold it behind reads.
func fetchRangePiece(ctx context.Context, src RangeSource, lay manifest.Layout, i int, prefetch bool, lims []*ratelimit.Limiter) ([]byte, error) {
	if prefetch {
		ctx = objstore.WithBackground(ctx)
	}
	off, n := lay.PieceRange(i)
	body, err := src.GetRange(ctx, off, n)
	if err != nil {
		return nil, fmt.Errorf("fetch piece %d: %w", i, err)
	}
	defer body.Close()
	buf := make([]byte, n)
	for got := 0; got < len(buf); {
		m, err := body.Read(buf[got:min(len(buf), got+32<<10)])
		for _, lim := range lims {
			if lim != nil && m > 0 {
				if werr := lim.WaitN(ctx, min(m, lim.Burst())); werr != nil {
					return nil, fmt.Errorf("fetch piece %d: %w", i, werr)
				}
			}
		}
		got += m
		if errors.Is(err, io.EOF) && got == len(buf) {
			break
		}
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("fetch piece %d: %d of %d bytes: %w", i, got, len(buf), io.ErrUnexpectedEOF)
		}
		if err != nil {
			return nil, fmt.Errorf("fetch piece %d: %w", i, err)
		}
	}
	return buf, nil
}
