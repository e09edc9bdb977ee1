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
	"github.com/damselfly-p2p/damselfly/wire"
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

// S3PackSource is a RangeSource made of s3 objects (objstore.Pack): its
// objects in order (sizes and ETags) and the client that presigns GETs of
// them. With a supernode, such a source is registered with its members'
// presigned URLs and read through the swarm (s3swarm.go), as an s3 object
// is; without one, or when the supernode refuses, it is read directly.
type S3PackSource interface {
	RangeSource
	Bucket() string
	Objects() []objstore.ObjectInfo
	Client() *objstore.Client
}

// openLazyRange opens LazyOptions.Range for lazy reads. An S3PackSource
// with a supernode goes through the swarm (req.URL, the directory, names
// the task); any other source, or one the supernode does not take, is
// fetched from the source directly, its pieces kept in the store like any
// task's, so a reopen resumes and reads what is present offline. req.URL
// only names the task in logs.
func (p *Peer) openLazyRange(ctx context.Context, req Request, opt LazyOptions) (*Lazy, error) {
	if opt.Range.Size() < 0 {
		return nil, fmt.Errorf("open %s: negative size", manifest.RedactURL(req.URL))
	}
	l := p.newLazy(req, opt, RangeTaskID(opt.Range, req.Tag))
	l.log.WithField("identity", opt.Range.Identity()).Debug("range source")
	reconnect := false
	if ps, ok := opt.Range.(S3PackSource); ok && p.snc != nil && ps.Client() != nil && opt.Range.Size() > 0 {
		u, err := objstore.ParseURL(req.URL)
		members := ps.Objects()
		if err == nil && u.Bucket == ps.Bucket() && u.IsPrefix() && len(members) > 0 && len(members) <= objstore.PackSwarmMax {
			l.s3 = p.s3.add(l.id, &s3Source{obj: ps.Client(), members: members,
				oi: objstore.ObjectInfo{Bucket: u.Bucket, Key: u.Key, Size: opt.Range.Size()}})
			joined, err := l.joinS3(ctx, l.s3.oi)
			switch {
			case joined:
				l.log.WithField("objects", len(members)).Info("s3: reading the pack through the swarm (the supernode's seed fetches it from the store)")
				return l, nil
			case ctx.Err() != nil:
				p.s3.drop(l.id)
				return nil, fmt.Errorf("open %s: %w", u, ctx.Err())
			case errors.Is(err, wire.ErrUnreachable):
				reconnect = true
			default:
				l.log.WithError(err).Info("s3: the supernode does not share this pack; reading it straight from the store")
			}
		}
	}
	if err := l.openDirectRetrying(ctx, nil, reconnect); err != nil {
		return nil, err
	}
	return l, nil
}

// readLimited fills buf from body (a piece's bytes) within the rate
// limits lims, charging each read as it arrives; a body that ends short is
// io.ErrUnexpectedEOF.
func readLimited(ctx context.Context, body io.Reader, buf []byte, lims []*ratelimit.Limiter) error {
	// Limited reads go in steps a limiter can grant at once; unlimited ones
	// take whatever the connection holds.
	step := len(buf)
	for _, lim := range lims {
		if lim != nil {
			step = 32 << 10
		}
	}
	for got := 0; got < len(buf); {
		m, err := body.Read(buf[got:min(len(buf), got+step)])
		for _, lim := range lims {
			if lim != nil && m > 0 {
				if werr := lim.WaitN(ctx, min(m, lim.Burst())); werr != nil {
					return werr
				}
			}
		}
		got += m
		if errors.Is(err, io.EOF) && got == len(buf) {
			break
		}
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%d of %d bytes: %w", got, len(buf), io.ErrUnexpectedEOF)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
