package supernode

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"

	"github.com/damselfly-p2p/damselfly/cache"
	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/trust"
	"github.com/damselfly-p2p/damselfly/wire"
)

// Failover without fetching the file again. Every digest list the seed
// hands out (RegisterResponse, SyncResponse) carries a seal: an HMAC over
// the task ID, its layout, the origin's validators and the list, under a
// key only supernodes hold (Config.SealSecret, else the admin token when
// it differs from the cluster token; without either nothing is sealed and
// nothing adopted). Peers keep the last sealed list of each download and
// present it when they register again with the task's next owner.
//
// The new owner verifies the seal and that the content version (length,
// piece size, ETag, Last-Modified) is its own, then adopts the digests as
// vouched: it publishes them to every peer of the task (so that nobody
// stalls for lack of a digest), its fill does not fetch vouched pieces,
// and a vouched piece it lacks is fetched from the origin only when a
// child asks for it and no live peer holds it (children asking while
// holders exist are sent to them, see HeldElsewhere). Such a seed may stay
// partial (state on-demand) for as long as it lives; a piece it fetches
// for a vouched digest must match that digest, or the seed fails (the
// origin's content changed).
//
// A peer cannot make the seed vouch for bytes no supernode vouched for: it
// cannot forge or alter a seal; replaying a list sealed for the same task
// and content version gives the same digests. Peers that serve corrupt
// pieces are caught by the digest as before.

// maxPendingVouch bounds the sealed lists kept for a task whose layout is
// not known yet (all peers of a failed-over task register at once).
const maxPendingVouch = 8

// vouchState is a seed task's digests adopted from sealed lists. Guarded
// by the seed task's mu.
type vouchState struct {
	sums    []cache.Sum           // per piece, zero when not vouched for
	pending []trust.SealedContent // verified, waiting for the layout
	since   time.Time             // first adoption
}

// vouchGrace is how long after the first adoption a vouched piece that no
// peer is known to hold yet is not fetched on demand: the peers that
// registered again re-report their pieces on their next sync (at once,
// then every 250 ms), so a child asking meanwhile is told to ask again.
const vouchGrace = time.Second

// vouchSettle is how long the fill of a task first registered with a
// sealed list waits for the lists of the task's other peers, which
// register again within a sync interval or two of each other: the list
// of the first may lack the newest digests.
const vouchSettle = 500 * time.Millisecond

// sealKeyFor is the seal key of cfg (the absent key when no secret only
// supernodes hold is configured).
func sealKeyFor(cfg Config) (trust.SealKey, error) {
	secret := cfg.SealSecret
	if secret.IsZero() && !cfg.AdminToken.IsZero() && !cfg.AdminToken.Equal(cfg.ClusterToken) {
		secret = cfg.AdminToken
	}
	if secret.IsZero() {
		return trust.SealKey{}, nil
	}
	k, err := trust.DeriveSealKey(secret)
	if err != nil {
		return trust.SealKey{}, fmt.Errorf("supernode: %w", err)
	}
	return k, nil
}

// errSealLayout refuses a sealed list whose length does not fit its layout.
var errSealLayout = errors.New("sealed digest list does not fit its layout")

// offerSealed verifies a sealed digest list a peer presented for task id
// and adopts it into st (now, or once st's layout is known). A list that
// does not verify is logged and ignored: the registration goes on.
func (s *seeder) offerSealed(st *seedTask, peerID string, sd *wire.SealedDigests) {
	if sd == nil {
		return
	}
	log := s.logFor(st).WithField("peer", peerID)
	if s.seal.IsZero() {
		log.Debug("seed: a peer presented sealed digests; no seal key here, ignored")
		return
	}
	c, err := s.verifySealed(st.id, sd)
	if err != nil {
		log.WithError(err).Warn("seed: refused sealed digests")
	}
	if c == nil {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.task == nil {
		if len(st.vouch.pending) < maxPendingVouch {
			st.vouch.pending = append(st.vouch.pending, *c)
		}
		return
	}
	st.adoptLocked(st.task, *c, log)
}

// verifySealed checks a presented list and its single pieces and returns
// the digests whose seals verify as one list (nil: none). err tells what
// was refused.
func (s *seeder) verifySealed(id string, sd *wire.SealedDigests) (*trust.SealedContent, error) {
	c := trust.SealedContent{TaskID: id, Length: sd.Length, PieceSize: sd.PieceSize, ETag: sd.ETag,
		LastModified: sd.LastModified}
	l := manifest.Layout{Length: sd.Length, PieceSize: sd.PieceSize}
	if l.Validate() != nil || l.NumPieces() > trust.MaxSealedDigests {
		return nil, errSealLayout
	}
	np := l.NumPieces()
	ds := make([]string, np)
	var errs []error
	found := 0
	if sd.Seal != "" || len(sd.Digests) > 0 {
		list := c
		list.Digests = sd.Digests
		switch err := s.seal.Verify(list, sd.Seal); {
		case err != nil:
			errs = append(errs, fmt.Errorf("digest list: %w", err))
		case len(sd.Digests) != np:
			errs = append(errs, fmt.Errorf("digest list: %w", errSealLayout))
		default:
			copy(ds, sd.Digests)
			found++
		}
	}
	bad := 0
	for k, p := range sd.Pieces {
		if k >= np {
			break // more than one per piece: the rest is noise
		}
		if p.Piece < 0 || p.Piece >= np || s.seal.VerifyPiece(c, p.Piece, p.Digest, p.Seal) != nil {
			bad++
			continue
		}
		if ds[p.Piece] == "" {
			ds[p.Piece] = p.Digest
			found++
		}
	}
	if bad > 0 {
		errs = append(errs, fmt.Errorf("%d piece seals: %w", bad, trust.ErrBadSeal))
	}
	err := errors.Join(errs...)
	if found == 0 {
		return nil, err
	}
	c.Digests = ds
	return &c, err
}

// adoptPendingLocked adopts the lists offered before t's layout was known.
// Caller holds st.mu.
func (st *seedTask) adoptPendingLocked(t *cache.Task, log logrus.FieldLogger) {
	for _, c := range st.vouch.pending {
		st.adoptLocked(t, c, log)
	}
	st.vouch.pending = nil
}

// adoptLocked merges a verified list into the vouched digests when it is
// of t's content version and agrees with every digest known here. Caller
// holds st.mu.
func (st *seedTask) adoptLocked(t *cache.Task, c trust.SealedContent, log logrus.FieldLogger) {
	m := t.Meta()
	if c.Length != m.Length || c.PieceSize != m.PieceSize || c.ETag != m.ETag || c.LastModified != m.LastModified {
		log.Info("seed: sealed digests are of another content version; not adopted")
		return
	}
	n := t.NumPieces()
	if len(c.Digests) != n {
		return
	}
	sums := make([]cache.Sum, n)
	for i, d := range c.Digests {
		if d == "" {
			continue
		}
		sum, err := cache.ParseSum(d)
		if err != nil {
			return // sealed by a supernode, so never; refuse the whole list
		}
		own, ok := t.PieceDigest(i)
		if ok && own != sum || i < len(st.vouch.sums) && !st.vouch.sums[i].IsZero() && st.vouch.sums[i] != sum {
			log.WithField("piece", i).Warn("seed: sealed digests disagree with known ones; not adopted")
			return
		}
		sums[i] = sum
	}
	if len(st.vouch.sums) != n {
		st.vouch.sums = make([]cache.Sum, n)
	}
	added := 0
	for i, sum := range sums {
		if !sum.IsZero() && st.vouch.sums[i].IsZero() {
			st.vouch.sums[i] = sum
			if !t.Has(i) {
				added++
			}
		}
	}
	if st.vouch.since.IsZero() {
		st.vouch.since = time.Now()
	}
	if added > 0 {
		log.WithField("pieces", added).Info("seed: adopted sealed digests; pieces peers hold are not fetched from the origin")
	}
}

// vouchedLocked returns the vouched digest of piece i (zero: none).
// Caller holds st.mu.
func (st *seedTask) vouchedLocked(i int) cache.Sum {
	if i < 0 || i >= len(st.vouch.sums) {
		return cache.Sum{}
	}
	return st.vouch.sums[i]
}

func (st *seedTask) vouched(i int) cache.Sum {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.vouchedLocked(i)
}

// onlyVouchedMissing reports whether every piece t lacks has a vouched
// digest (and at least one is missing): the seed is partial by design.
func (st *seedTask) onlyVouchedMissing(t *cache.Task) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.onlyVouchedMissingLocked(t)
}

func (st *seedTask) onlyVouchedMissingLocked(t *cache.Task) bool {
	missing := 0
	for i := 0; i < t.NumPieces(); i++ {
		if t.Has(i) {
			continue
		}
		if st.vouchedLocked(i).IsZero() {
			return false
		}
		missing++
	}
	return missing > 0
}

// dropVouched forgets the vouched digests (the content changed).
func (st *seedTask) dropVouched() {
	st.mu.Lock()
	st.vouch = vouchState{}
	st.mu.Unlock()
}

// published is the digest list the seed hands out for t: its own digests,
// and the vouched ones for pieces it lacks; n counts the known ones and
// seal vouches for the list ("" without a seal key).
func (s *seeder) published(st *seedTask, t *cache.Task) (ds []string, n int, seal string) {
	ds = make([]string, t.NumPieces())
	st.mu.Lock()
	for i := range ds {
		if d, ok := t.PieceDigest(i); ok {
			ds[i] = d.String()
		} else if v := st.vouchedLocked(i); !v.IsZero() {
			ds[i] = v.String()
		}
		if ds[i] != "" {
			n++
		}
	}
	st.mu.Unlock()
	if n > 0 && !s.seal.IsZero() {
		m := t.Meta()
		seal = s.seal.Seal(trust.SealedContent{TaskID: st.id, Length: m.Length, PieceSize: m.PieceSize,
			ETag: m.ETag, LastModified: m.LastModified, Digests: ds})
	}
	return ds, n, seal
}

// PieceSeal implements upload.PieceSealer.
func (k seedTasks) PieceSeal(taskID string, n int, digest string) string {
	st := k.s.get(taskID)
	if st == nil || k.s.seal.IsZero() {
		return ""
	}
	_, t, _ := st.snapshot()
	if t == nil {
		return ""
	}
	m := t.Meta()
	return k.s.seal.SealPiece(trust.SealedContent{TaskID: taskID, Length: m.Length, PieceSize: m.PieceSize,
		ETag: m.ETag, LastModified: m.LastModified}, n, digest)
}

// maxRedirectHolders is how many holders a child asking the seed for a
// vouched piece it lacks is sent to.
const maxRedirectHolders = 4

// HeldElsewhere implements upload.Redirector: a child asking for a piece
// the seed lacks but vouches for is sent to live peers holding it, so the
// origin is not asked for bytes the swarm has.
func (k seedTasks) HeldElsewhere(taskID string, n int, child string) ([]string, bool) {
	st := k.s.get(taskID)
	if st == nil || k.s.holdersOf == nil {
		return nil, false
	}
	_, t, _ := st.snapshot()
	if t == nil || t.Has(n) {
		return nil, false
	}
	st.mu.Lock()
	vouched, since := !st.vouchedLocked(n).IsZero(), st.vouch.since
	st.mu.Unlock()
	if !vouched {
		return nil, false
	}
	childID, _, _ := strings.Cut(child, " ")
	var out []string
	for _, p := range k.s.holdersOf(taskID, n, childID, maxRedirectHolders) {
		out = append(out, p.PeerID+" "+p.Addr)
	}
	return out, len(out) > 0 || time.Since(since) < vouchGrace
}

// fetchVouched makes the seed hold the pieces it only vouches for (a
// preheat wants the whole content here), OriginConcurrency at a time.
func (s *seeder) fetchVouched(ctx context.Context, st *seedTask) error {
	_, t, _ := st.snapshot()
	if t == nil {
		return nil
	}
	var todo []int
	st.mu.Lock()
	for i := 0; i < t.NumPieces(); i++ {
		if !t.Has(i) && !st.vouchedLocked(i).IsZero() {
			todo = append(todo, i)
		}
	}
	st.mu.Unlock()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, s.concurrency))
	for _, i := range todo {
		g.Go(func() error { return s.fetchPiece(gctx, st, i) })
	}
	return g.Wait()
}
