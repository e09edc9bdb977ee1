package objstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sync/errgroup"
)

// PackMaxObject is the size below which an object of a listed directory
// goes into the directory's pack: smaller than the smallest piece, so that
// one piece of the pack carries many objects.
const PackMaxObject = 1 << 20

// packFetchers is how many GETs one GetRange of a pack runs at once.
const packFetchers = 16

// maxBackgroundGets is how many GETs of background fetches (prefetch) one
// Client keeps in flight at once, across all packs: enough to keep a store
// busy, few enough that a mount prefetching many directories does not
// bury the store (and the reads waiting behind it) under thousands of
// requests. GETs for reads are not counted.
const maxBackgroundGets = 64

type backgroundKey struct{}

// WithBackground marks ctx as that of a background fetch (a prefetch):
// the pack GETs made with it share the client's background slots.
func WithBackground(ctx context.Context) context.Context {
	return context.WithValue(ctx, backgroundKey{}, true)
}

// Pack is the concatenation, in key order, of the small objects of one
// directory level: one task for all of them instead of one per object.
// Its identity depends only on the bucket and each object's key, ETag and
// size, so every peer that lists the same directory gets the same pack.
// A Pack is immutable and safe for concurrent use.
type Pack struct {
	client  *Client
	bucket  string
	objs    []ObjectInfo // sorted by key, all of bucket, none empty
	offs    []int64      // offs[i] is where objs[i] starts; offs[len(objs)] the size
	byKey   map[string]int
	id      string
	display string
}

// NewPack lays out objs (objects of bucket as a listing gave them, each
// with its ETag) as one pack; the objects are taken in key order and empty
// ones are left out (they have no bytes to hold). It fetches nothing;
// WithClient gives the client GetRange reads through.
func NewPack(bucket string, objs []ObjectInfo) (*Pack, error) {
	p := &Pack{bucket: bucket, byKey: map[string]int{}}
	for _, o := range objs {
		switch {
		case o.Bucket != bucket:
			return nil, fmt.Errorf("pack of bucket %s: object %s is of another bucket", bucket, o.URL())
		case o.Size < 0:
			return nil, fmt.Errorf("pack: object %s has a negative size", o.URL())
		case normalizeETag(o.ETag) == "":
			return nil, fmt.Errorf("pack: object %s has no ETag to pin its content to", o.URL())
		case o.Size == 0:
			continue
		}
		o.ETag = normalizeETag(o.ETag)
		p.objs = append(p.objs, o)
	}
	slices.SortFunc(p.objs, func(a, b ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
	h := sha256.New()
	fmt.Fprintf(h, "s3 pack bucket=%s\n", strconv.Quote(bucket))
	var off int64
	for i, o := range p.objs {
		if _, dup := p.byKey[o.Key]; dup {
			return nil, fmt.Errorf("pack: object %s given twice", o.URL())
		}
		p.byKey[o.Key] = i
		p.offs = append(p.offs, off)
		off += o.Size
		fmt.Fprintf(h, "key=%s etag=%s size=%d\n", strconv.Quote(o.Key), strconv.Quote(o.ETag), o.Size)
	}
	p.offs = append(p.offs, off)
	sum := h.Sum(nil)
	p.id = "s3 pack bucket=" + strconv.Quote(bucket) + " sha256=" + hex.EncodeToString(sum)
	p.display = fmt.Sprintf("%d objects", len(p.objs))
	if len(p.objs) > 0 {
		first, last := p.objs[0].Key, p.objs[len(p.objs)-1].Key
		p.display = fmt.Sprintf("%s: %d objects from %s to %s", URL{Bucket: bucket, Key: first}, len(p.objs), first, last)
	}
	return p, nil
}

// WithClient returns the pack reading through c.
func (p *Pack) WithClient(c *Client) *Pack {
	q := *p
	q.client = c
	return &q
}

// Size is the pack's length: the sum of its objects' sizes.
func (p *Pack) Size() int64 { return p.offs[len(p.offs)-1] }

// Len is how many objects the pack holds.
func (p *Pack) Len() int { return len(p.objs) }

// Identity names the pack's content, as Identity names an object's: the
// bucket and a sha256 over each object's key, ETag and size, in key order.
// It holds no credential, signature or endpoint.
func (p *Pack) Identity() string { return p.id }

// String describes the pack for logs.
func (p *Pack) String() string { return p.display }

// Member returns where the object key lies in the pack, and whether the
// pack holds it.
func (p *Pack) Member(key string) (off, size int64, ok bool) {
	i, ok := p.byKey[key]
	if !ok {
		return 0, 0, false
	}
	return p.offs[i], p.objs[i].Size, true
}

// GetRange reads n bytes of the pack from offset off: the objects the
// range covers are fetched with concurrent GETs (each pinned to the ETag
// its listing gave, so a changed object fails with ErrObjectChanged) and
// their bytes returned in order. The range must lie inside the pack; it is
// read whole before GetRange returns.
func (p *Pack) GetRange(ctx context.Context, off, n int64) (io.ReadCloser, error) {
	if p.client == nil {
		return nil, errors.New("pack: no client to read the store with")
	}
	if off < 0 || n < 0 || off+n > p.Size() {
		return nil, fmt.Errorf("pack %s: range of %d bytes at %d outside its %d bytes", p, n, off, p.Size())
	}
	buf := make([]byte, n)
	if n == 0 {
		return io.NopCloser(bytes.NewReader(buf)), nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(packFetchers)
	for _, pt := range PackParts(p.offs, off, n) {
		g.Go(func() error { return p.fetch(gctx, p.objs[pt.Index], pt.From, buf[pt.At:pt.At+pt.Size]) })
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("pack %s: %w", p, err)
	}
	return io.NopCloser(bytes.NewReader(buf)), nil
}

// fetch reads len(dst) bytes of o from offset from into dst: the whole
// object with one GET when dst is all of it.
func (p *Pack) fetch(ctx context.Context, o ObjectInfo, from int64, dst []byte) error {
	if bg, _ := ctx.Value(backgroundKey{}).(bool); bg && p.client.background != nil {
		select {
		case p.client.background <- struct{}{}:
			defer func() { <-p.client.background }()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	length := int64(len(dst))
	if from == 0 && length == o.Size {
		length = -1 // to the end: the whole object
	}
	body, err := p.client.GetRange(ctx, o, from, length)
	if err != nil {
		return err
	}
	defer body.Close()
	if _, err := io.ReadFull(body, dst); err != nil {
		return &Error{Op: "read", Bucket: o.Bucket, Key: o.Key, Err: err}
	}
	return nil
}

// PackSwarmMax is the most objects a pack may hold to be shared through a
// supernode: its registration lists every object with a presigned URL (a
// few hundred bytes each) and the supernode asks the store about each. A
// larger pack is read straight from the store.
const PackSwarmMax = 10000

// Bucket is the bucket of the pack's objects.
func (p *Pack) Bucket() string { return p.bucket }

// Objects returns the pack's objects in pack order (key order), each with
// its size and ETag (without quotes).
func (p *Pack) Objects() []ObjectInfo { return slices.Clone(p.objs) }

// Client is the client the pack reads through (nil before WithClient).
func (p *Pack) Client() *Client { return p.client }

// PackTaskID is the task ID of the pack's content, as p2p.RangeTaskID
// derives it for any range source ("range " and its identity, and the tag
// when there is one): a supernode recomputes it from a registration's
// member list to check the registrant's claim.
func PackTaskID(p *Pack, tag string) string {
	key := "range " + p.Identity()
	if tag != "" {
		key += "\x00tag=" + tag
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// PackPart is the part of one object a range of a pack covers.
type PackPart struct {
	Index      int   // the object's index in the pack
	From, Size int64 // the bytes of the object: [From, From+Size)
	At         int64 // where they go, from the start of the range
}

// PackParts splits the range [off, off+n) of a pack whose objects start at
// offs (offs[i] is object i's offset, offs[len-1] the pack's size) into the
// parts of the objects it covers, in order.
func PackParts(offs []int64, off, n int64) []PackPart {
	objects := len(offs) - 1
	first := sort.Search(objects, func(i int) bool { return offs[i+1] > off })
	var parts []PackPart
	for i := first; i < objects && offs[i] < off+n; i++ {
		from := max(off, offs[i]) - offs[i]
		end := min(off+n, offs[i+1]) - offs[i]
		parts = append(parts, PackPart{Index: i, From: from, Size: end - from, At: offs[i] + from - off})
	}
	return parts
}
