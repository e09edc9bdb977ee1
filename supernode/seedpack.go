package supernode

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/objstore"
	"github.com/damselfly-p2p/damselfly/origin"
	"github.com/damselfly-p2p/damselfly/trust/egress"
	"github.com/damselfly-p2p/damselfly/wire"
)

// Packs through the swarm.
//
// A pack (objstore.Pack) is the small objects of one directory of an s3
// prefix, concatenated in key order as one task. A peer registers it with
// URL s3://BUCKET/PREFIX/ (the directory: display only), the pack's task ID
// (objstore.PackTaskID) and the member list (wire.S3PackMember: key, ETag,
// size and a presigned GET URL signed by the peer). The supernode takes it
// under the rule single objects follow (s3.go), for every member: the URL
// names that bucket and key at an allowed endpoint, and the store, asked
// through it (a 1-byte ranged GET through the origin policy, packCheckers
// at a time, remembered per URL hash for the revalidation interval),
// answers with the listed ETag and size; and the member list, laid out as
// a pack, gives the task ID. A member URL the store refuses refuses the
// registration (403): its peer reads the pack from the store itself.
//
// The seed fetches piece i of a pack with ranged GETs of the members it
// covers, through their presigned URLs (the origin client, so the origin
// policy and its retries apply), concatenated in pack order and hashed as
// any piece; the fill fetches the missing pieces, seed concurrency at a
// time. A newer registrant's URL replaces a member's when it outlives the
// one held. The URLs are secrets, kept in memory only.

// packCheckers is how many members of one registration are checked with
// the store at once.
const packCheckers = 16

// packFetchers is how many member GETs one pack piece runs at once.
const packFetchers = 16

// packMember is one object of a pack task, as the seed fetches it.
type packMember struct {
	key, etag string
	size      int64
	url       string // secret
	expires   time.Time
}

// packSource is what the seed needs to fetch a pack task: its members in
// pack order, and where each starts.
type packSource struct {
	bucket  string
	members []packMember
	offs    []int64 // offs[i] is where member i starts; offs[len] the size
}

func (ps *packSource) size() int64 { return ps.offs[len(ps.offs)-1] }

// pack returns the members of pack task id (nil for other tasks).
func (g *s3Gate) pack(id string) *packSource {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	ps := g.packs[id]
	if ps == nil {
		return nil
	}
	cp := *ps
	cp.members = append([]packMember(nil), ps.members...)
	return &cp
}

// setPack records the members of pack task id: the first registrant's, then,
// member by member, a URL the store just accepted (fresh) or one that
// outlives the one held.
func (g *s3Gate) setPack(id string, ps *packSource, fresh bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	held := g.packs[id]
	if held == nil || len(held.members) != len(ps.members) {
		if len(g.packs) >= maxS3Entries {
			now := time.Now()
			for k, p := range g.packs {
				if p.expired(now) {
					delete(g.packs, k)
				}
			}
		}
		g.packs[id] = ps
		return
	}
	for i, m := range ps.members {
		if fresh || m.expires.After(held.members[i].expires) {
			held.members[i].url, held.members[i].expires = m.url, m.expires
		}
	}
}

// expired reports whether every member URL has expired.
func (ps *packSource) expired(now time.Time) bool {
	for _, m := range ps.members {
		if now.Before(m.expires) {
			return false
		}
	}
	return true
}

// checkS3Pack checks a pack registration (see above) of the directory u
// and returns its task ID.
func (s *Supernode) checkS3Pack(ctx context.Context, req *wire.RegisterRequest, u objstore.URL) (string, error) {
	g := s.s3
	bad := func(format string, args ...any) (string, error) {
		return "", &s3Refusal{http.StatusBadRequest, wire.CodeBadRequest, fmt.Sprintf("pack %s: ", u) + fmt.Sprintf(format, args...)}
	}
	switch {
	case !u.IsPrefix():
		return bad("a pack's URL names its directory (s3://BUCKET/PREFIX/), not an object")
	case req.Digest != "" || len(req.Filters) > 0 || len(req.Header) > 0 || req.S3Presigned != "":
		return bad("pack tasks take no digest, filters, headers or s3Presigned")
	case len(req.TaskID) != 64:
		return bad("the task ID (objstore.PackTaskID) is required")
	case len(req.S3Pack) > objstore.PackSwarmMax:
		return bad("%d members; at most %d are shared through the swarm", len(req.S3Pack), objstore.PackSwarmMax)
	}
	now := time.Now()
	ps := &packSource{bucket: u.Bucket, offs: []int64{0}}
	infos := make([]objstore.ObjectInfo, 0, len(req.S3Pack))
	for i, m := range req.S3Pack {
		switch {
		case m.Key == "" || !strings.HasPrefix(m.Key, u.Key):
			return bad("member %d (%q) is not under the directory", i, m.Key)
		case i > 0 && m.Key <= req.S3Pack[i-1].Key:
			return bad("member %d (%q) is out of key order or given twice", i, m.Key)
		case m.Size <= 0 || m.Size >= objstore.PackMaxObject:
			return bad("member %q: size %d is not that of a pack member (1 byte to %d)", m.Key, m.Size, objstore.PackMaxObject-1)
		case m.ETag == "" || strings.ContainsAny(m.ETag, "\"\r\n"):
			return bad("member %q: bad ETag", m.Key)
		}
		want := objstore.URL{Bucket: u.Bucket, Key: m.Key}
		chk, err := objstore.CheckPresigned(m.Presigned, want, g.endpoints, now)
		if err != nil {
			s.log.WithFields(logrus.Fields{"url": u.String(), "member": want.String(), "peer": req.PeerID}).WithError(err).Warn("s3 pack registration refused")
			return "", &s3Refusal{http.StatusForbidden, wire.CodeForbidden, fmt.Sprintf("pack %s: %v", u, err)}
		}
		ps.members = append(ps.members, packMember{key: m.Key, etag: m.ETag, size: m.Size, url: m.Presigned, expires: chk.Expires})
		ps.offs = append(ps.offs, ps.offs[len(ps.offs)-1]+m.Size)
		infos = append(infos, objstore.ObjectInfo{Bucket: u.Bucket, Key: m.Key, ETag: m.ETag, Size: m.Size})
	}
	if len(infos) == 0 {
		return bad("no members")
	}
	pack, err := objstore.NewPack(u.Bucket, infos)
	if err != nil {
		return bad("%v", err)
	}
	if pack.Len() != len(infos) || objstore.PackTaskID(pack, req.Tag) != req.TaskID {
		return "", &s3Refusal{http.StatusConflict, wire.CodeBadRequest,
			fmt.Sprintf("pack %s: the member list does not give the registered task ID", u)}
	}
	// Ask the store about every member whose URL it has not accepted lately.
	var todo []int
	g.mu.Lock()
	for i, m := range ps.members {
		if at, ok := g.accepted[acceptKey(req.TaskID, m.url)]; !ok || now.Sub(at) >= g.ttl {
			todo = append(todo, i)
		}
	}
	g.mu.Unlock()
	if err := s.checkPackMembers(ctx, req, u, ps, todo); err != nil {
		return "", err
	}
	g.mu.Lock()
	if len(g.accepted)+len(todo) >= maxS3Entries {
		for k, t := range g.accepted {
			if now.Sub(t) >= g.ttl {
				delete(g.accepted, k)
			}
		}
	}
	for _, i := range todo {
		g.accepted[acceptKey(req.TaskID, ps.members[i].url)] = now
	}
	g.mu.Unlock()
	g.setPack(req.TaskID, ps, len(todo) > 0)
	return req.TaskID, nil
}

// acceptKey keys the store's acceptance of a presigned URL for a task.
func acceptKey(taskID, url string) string {
	sum := sha256.Sum256([]byte(url))
	return taskID + "\x00" + hex.EncodeToString(sum[:])
}

// checkPackMembers asks the store, through each member URL of todo, for
// its first byte: it must accept the URL and answer the listed ETag and
// size. The first refusal stops the check.
func (s *Supernode) checkPackMembers(ctx context.Context, req *wire.RegisterRequest, u objstore.URL, ps *packSource, todo []int) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(packCheckers)
	for _, i := range todo {
		g.Go(func() error { return s.checkPackMember(gctx, req, ps.bucket, ps.members[i]) })
	}
	err := g.Wait()
	var re *s3Refusal
	if errors.As(err, &re) {
		re.msg = fmt.Sprintf("pack %s: %s", u, re.msg)
	}
	return err
}

func (s *Supernode) checkPackMember(ctx context.Context, req *wire.RegisterRequest, bucket string, m packMember) error {
	u := objstore.URL{Bucket: bucket, Key: m.key}
	info, err := s.cfg.Source.ProbeRange(ctx, m.url, nil)
	if err != nil {
		var se *origin.StatusError
		log := s.log.WithFields(logrus.Fields{"url": u.String(), "peer": req.PeerID})
		if errors.As(err, &se) && (se.Code == http.StatusForbidden || se.Code == http.StatusUnauthorized) {
			log.WithField("status", se.Code).Info("s3: the store refused a registrant's presigned URL for a pack member")
			return &s3Refusal{http.StatusForbidden, wire.CodeForbidden,
				fmt.Sprintf("%s: the store refused the presigned URL (%s): check the credentials", u, se.Status)}
		}
		if errors.As(err, &se) {
			return &s3Refusal{http.StatusBadGateway, wire.CodeOrigin, fmt.Sprintf("%s: the store answered %s", u, se.Status)}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.WithField("reason", egress.Reason(err)).Warn("s3: presigned URL check of a pack member failed")
		return &s3Refusal{http.StatusBadGateway, wire.CodeOrigin, fmt.Sprintf("%s: %v", u, egress.Conceal(err))}
	}
	if etag := strings.Trim(strings.TrimPrefix(info.ETag, "W/"), `"`); etag != m.etag || info.Length != m.size {
		return &s3Refusal{http.StatusConflict, wire.CodeBadRequest,
			fmt.Sprintf("%s: the store has another version than the one listed (the object changed since it was listed)", u)}
	}
	return nil
}

// isPack reports whether st is a pack task the gate holds members for.
func (s *seeder) packOf(st *seedTask) *packSource {
	if !objstore.IsURL(st.url) {
		return nil
	}
	return s.s3.pack(st.id)
}

// originProbe is what the seed learns about st's content: from the origin
// (its URL, or the presigned URL of an s3 object), or, for a pack, from
// its member list (content-addressed: it cannot change).
func (s *seeder) originProbe(ctx context.Context, st *seedTask) (origin.Info, error) {
	if ps := s.packOf(st); ps != nil {
		return origin.Info{Length: ps.size(), AcceptRanges: true}, nil
	}
	return s.src.Probe(ctx, s.originURL(st), st.header)
}

// originValidate is Validate of st's origin; a pack is not modified.
func (s *seeder) originValidate(ctx context.Context, st *seedTask, etag, lastModified string) (origin.Info, error) {
	if s.packOf(st) != nil {
		return origin.Info{Length: -1, AcceptRanges: true, ETag: etag, LastModified: lastModified, NotModified: true}, nil
	}
	return s.src.Validate(ctx, s.originURL(st), st.header, etag, lastModified)
}

// originPiece fetches piece n of st from its origin (for a pack, from its
// members' URLs).
func (s *seeder) originPiece(st *seedTask, info origin.Info, lay manifest.Layout, n int, opt origin.FillOptions) ([]byte, error) {
	if ps := s.packOf(st); ps != nil {
		return s.packPiece(s.ctx, ps, lay, n, opt)
	}
	return s.src.FetchPiece(s.ctx, s.originURL(st), st.header, info, lay, n, opt)
}

// originFill fills sink from st's origin (for a pack, its missing pieces
// in order, those peers wait for first, opt.Concurrency at a time).
func (s *seeder) originFill(st *seedTask, info origin.Info, sink origin.Sink, opt origin.FillOptions) error {
	ps := s.packOf(st)
	if ps == nil {
		return s.src.Fill(s.ctx, s.originURL(st), st.header, info, sink, opt)
	}
	lay := sink.Layout()
	if lay.Length != ps.size() {
		return fmt.Errorf("pack of %d bytes, task of %d", ps.size(), lay.Length)
	}
	return origin.FillPieces(s.ctx, sink, opt.Concurrency, opt.Order, func(ctx context.Context, i int) ([]byte, error) {
		return s.packPiece(ctx, ps, lay, i, opt)
	})
}

// packPiece reads piece n of a pack: the members it covers, each with a
// ranged GET through its presigned URL pinned to its ETag (If-Range and
// the answer's ETag), packFetchers at a time, in pack order.
func (s *seeder) packPiece(ctx context.Context, ps *packSource, lay manifest.Layout, n int, opt origin.FillOptions) ([]byte, error) {
	if n < 0 || n >= lay.NumPieces() {
		return nil, fmt.Errorf("pack piece %d: no such piece (%d pieces)", n, lay.NumPieces())
	}
	off, size := lay.PieceRange(n)
	buf := make([]byte, size)
	mopts := origin.FillOptions{Limiter: opt.Limiter, Limiters: opt.Limiters, OnBytes: opt.OnBytes}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(packFetchers)
	for _, pt := range objstore.PackParts(ps.offs, off, size) {
		g.Go(func() error {
			return s.memberRange(gctx, ps.bucket, ps.members[pt.Index], pt.From, buf[pt.At:pt.At+pt.Size], mopts)
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("pack piece %d: %w", n, err)
	}
	return buf, nil
}

// memberRange fills dst with the bytes of m from offset from, with ranged
// GETs through its presigned URL pinned to its ETag.
func (s *seeder) memberRange(ctx context.Context, bucket string, m packMember, from int64, dst []byte, opt origin.FillOptions) error {
	info := origin.Info{Length: m.size, AcceptRanges: true, ETag: `"` + m.etag + `"`}
	if err := s.src.FetchRange(ctx, m.url, nil, info, from, dst, opt); err != nil {
		return fmt.Errorf("%s: %w", objstore.URL{Bucket: bucket, Key: m.key}, err)
	}
	return nil
}
