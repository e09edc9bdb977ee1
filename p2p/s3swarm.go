package p2p

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/damselfly-p2p/damselfly/objstore"
	"github.com/damselfly-p2p/damselfly/origin"
	"github.com/damselfly-p2p/damselfly/p2p/ratelimit"
	"github.com/damselfly-p2p/damselfly/wire"
)

// s3 objects through the swarm.
//
// A peer with a supernode registers an s3 object it opens (task ID from
// bucket, key and ETag) with a presigned GET URL for that version, signed
// with its own credentials: the seed fetches the object once for every
// peer, and the AWS credentials never leave this process. The presigned
// URL is a secret: it goes to the supernode in the registration and
// nowhere else (never logged: every message names s3://BUCKET/KEY). A
// supernode that does not take s3 objects (no --s3-endpoint for this
// store) refuses, and the object is read straight from the store as
// before (mode direct); a seed that fails later (its URL expired with no
// peer to renew it, the store refusing), or a swarm that brings no piece
// for Config.StallTimeout while a read waits, makes readers go back to the
// store themselves, as a download goes back to the origin.

// s3Source presigns GET URLs for one object version, reusing one for half
// its life so that the supernode's check of it is cached; or, for a pack
// (members set), one for each of its objects.
type s3Source struct {
	obj  *objstore.Client
	oi   objstore.ObjectInfo // for a pack: its bucket, directory and size
	refs int                 // guarded by s3Sources.mu
	// members are a pack's objects in pack order (nil for one object).
	members []objstore.ObjectInfo

	mu      sync.Mutex
	cur     objstore.Presigned
	curPack []wire.S3PackMember // secrets, like cur
	packExp time.Time
}

// packMembers returns the pack's members, each with a presigned GET URL
// with at least half its validity left.
func (s *s3Source) packMembers(ctx context.Context) ([]wire.S3PackMember, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Until(s.packExp) > objstore.PresignExpiry/2 {
		return s.curPack, nil
	}
	out := make([]wire.S3PackMember, len(s.members))
	exp := time.Now().Add(objstore.PresignExpiry)
	for i, m := range s.members {
		p, err := s.obj.PresignGet(ctx, m, objstore.PresignExpiry)
		if err != nil {
			return nil, err
		}
		exp = minTime(exp, p.Expires)
		out[i] = wire.S3PackMember{Key: m.Key, ETag: m.ETag, Size: m.Size, Presigned: p.URL}
	}
	s.curPack, s.packExp = out, exp
	return out, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// presigned returns a presigned GET URL with at least half its validity left.
func (s *s3Source) presigned(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Until(s.cur.Expires) > objstore.PresignExpiry/2 {
		return s.cur.URL, nil
	}
	p, err := s.obj.PresignGet(ctx, s.oi, objstore.PresignExpiry)
	if err != nil {
		return "", err
	}
	s.cur = p
	return p.URL, nil
}

// s3Sources maps the task IDs of open s3 objects to their presigners, so
// that every registration of such a task (a lazy open, the prefetch, a
// registration again after a supernode restart) carries a presigned URL.
type s3Sources struct {
	mu sync.Mutex
	m  map[string]*s3Source
}

func (ss *s3Sources) add(id string, src *s3Source) *s3Source {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.m == nil {
		ss.m = map[string]*s3Source{}
	}
	if old := ss.m[id]; old != nil {
		src = old
	}
	src.refs++
	ss.m[id] = src
	return src
}

func (ss *s3Sources) drop(id string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if src := ss.m[id]; src != nil {
		if src.refs--; src.refs <= 0 {
			delete(ss.m, id)
		}
	}
}

func (ss *s3Sources) get(id string) *s3Source {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.m[id]
}

// s3Presigned is the presigned URL a registration of task id carries ("" for
// tasks that are not open s3 objects).
func (p *Peer) s3Presigned(ctx context.Context, id string) (string, error) {
	src := p.s3.get(id)
	if src == nil || src.members != nil {
		return "", nil
	}
	u, err := src.presigned(ctx)
	if err != nil {
		return "", fmt.Errorf("presign a GET of %s for the supernode's seed: %w", src.oi.URL(), err)
	}
	return u, nil
}

// s3Pack is the member list a registration of task id carries (nil for
// tasks that are not open packs).
func (p *Peer) s3Pack(ctx context.Context, id string) ([]wire.S3PackMember, error) {
	src := p.s3.get(id)
	if src == nil || src.members == nil {
		return nil, nil
	}
	ms, err := src.packMembers(ctx)
	if err != nil {
		return nil, fmt.Errorf("presign GETs of the %d objects of the pack of %s for the supernode's seed: %w", len(src.members), src.oi.URL(), err)
	}
	return ms, nil
}

// s3RefreshEvery is how often a lazily read s3 object is registered again,
// so that the seed always holds a presigned URL with minutes left.
const s3RefreshEvery = objstore.PresignExpiry / 3

// joinS3 registers the s3 object oi through the supernode and, when it
// takes it, starts reading it through the swarm. It returns false (and
// why) when the object must be read from the store directly.
func (l *Lazy) joinS3(ctx context.Context, oi objstore.ObjectInfo) (bool, error) {
	reg, err := l.p.registerLazy(ctx, l.id, l.req, true)
	if err != nil {
		return false, err
	}
	if reg.TaskID != "" && reg.TaskID != l.id {
		return false, fmt.Errorf("supernode answered for task %s", reg.TaskID)
	}
	if oi.Size >= 0 && reg.Length != oi.Size {
		return false, fmt.Errorf("supernode's seed says %d bytes, the store said %d", reg.Length, oi.Size)
	}
	if strings.Trim(strings.TrimPrefix(reg.ETag, "W/"), `"`) == oi.ETag {
		// The same validator as a direct read stores, so that either mode
		// resumes the other's pieces.
		reg.ETag = oi.ETag
	}
	if err := l.start(ctx, reg); err != nil {
		return false, err
	}
	l.wg.Add(1)
	go l.refreshS3()
	return true, nil
}

// refreshS3 registers again every s3RefreshEvery while the swarm is used.
func (l *Lazy) refreshS3() {
	defer l.wg.Done()
	tick := time.NewTicker(s3RefreshEvery)
	defer tick.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-tick.C:
		}
		if l.Mode() != "p2p" {
			return
		}
		if _, err := l.p.registerLazy(l.ctx, l.id, l.req, true); err != nil && l.ctx.Err() == nil {
			l.log.WithError(err).Warn("s3: registering again (to renew the seed's presigned URL) failed")
		}
	}
}

// swarmStopped reports whether the swarm download d was stopped and the
// task's reads go straight to the store.
func (l *Lazy) swarmStopped(d *download) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.d != d && l.d == nil && l.direct != nil
}

// gainedSince reports whether a piece arrived after t.
func (d *download) gainedSince(t time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lastGain.After(t)
}

// fallbackS3 switches a lazily read s3 object whose seed gave up (or whose
// swarm brought no piece for the stall timeout while a read waited) from
// the swarm to reading straight from the store. It reports whether it did (or
// another read already had).
func (l *Lazy) fallbackS3(d *download, why error) bool {
	l.mu.Lock()
	if l.s3 == nil || l.req.NoSource {
		l.mu.Unlock()
		return false
	}
	if l.d != d {
		l.mu.Unlock()
		return l.d == nil
	}
	dr := &direct{src: l.p.src, obj: l.s3.obj, oi: &l.s3.oi, opened: time.Now(), want: map[int]int{},
		flight: map[int]bool{}, failed: map[int]error{}, wake: make(chan struct{}, 1),
		limiter: ratelimit.New(l.opt.PrefetchLimit),
		info:    &origin.Info{Length: l.s3.oi.Size, ETag: l.s3.oi.ETag, AcceptRanges: true}}
	if l.s3.members != nil {
		// A pack: its pieces come from the range source.
		dr.obj, dr.oi, dr.rng = nil, nil, l.opt.Range
	}
	// What reads wait for now goes to the store.
	d.mu.Lock()
	for i, n := range d.urgent {
		dr.want[i] = n
	}
	d.mu.Unlock()
	l.d, l.direct = nil, dr
	stop := l.stopSwarm
	l.mu.Unlock()
	if stop != nil {
		stop()
	}
	l.log.WithError(why).Warn("s3: the supernode's seed gave up on the object; reading it straight from the store")
	l.wg.Add(1)
	go l.runDirect(dr)
	return true
}

// Sources is how many bytes the swarm download of this open brought from
// other peers and from the supernode's seed (0, 0 while reading straight
// from the origin or the store).
func (l *Lazy) Sources() (peers, seed int64) {
	l.mu.Lock()
	d := l.d
	l.mu.Unlock()
	if d == nil {
		return 0, 0
	}
	return d.c.fromPeers.Load(), d.c.fromSeed.Load()
}
