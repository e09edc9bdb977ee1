package supernode

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sync/singleflight"

	"github.com/damselfly-p2p/damselfly/cache"
	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/objstore"
	"github.com/damselfly-p2p/damselfly/origin"
	"github.com/damselfly-p2p/damselfly/p2p/upload"
	"github.com/damselfly-p2p/damselfly/trust"
	"github.com/damselfly-p2p/damselfly/trust/egress"
	"github.com/damselfly-p2p/damselfly/wire"
)

// Seed states. A seed task moves
//
//	probing -> fetching -> done
//	probing -> on-demand -> fetching -> done   (lazy first registration)
//	probing|on-demand|fetching -> failed
//	done -> validating -> done (304, or 200 and refetched)
//
// and a failed seed is replaced by a fresh one at the next registration.
const (
	stateProbing  = "probing"
	stateOnDemand = "on-demand" // lazy: only pieces peers ask for are fetched
	stateFetching = "fetching"
	stateDone     = "done"
	stateFailed   = "failed"
)

// seedTask is the supernode's copy of one task, filled from the origin.
type seedTask struct {
	id      string
	url     string      // full URL, for the origin only
	header  http.Header // credentials for the origin; memory only, never logged
	digest  string      // expected whole-content digest, if known
	created time.Time
	pieces  singleflight.Group

	ready chan struct{} // closed once the layout is known or the seed failed

	mu            sync.Mutex
	state         string
	err           error
	task          *cache.Task
	info          origin.Info
	lastValidated time.Time
	validating    chan struct{}         // non-nil while a revalidation runs
	lazy          bool                  // no full fetch asked for yet
	filling       bool                  // a full fetch runs
	claimed       map[int]chan struct{} // pieces being fetched (on demand or by the fill); closed when released
	claimGen      uint64                // changes with the set of claimed pieces
	claimCh       chan struct{}         // closed at the next change of that set (nil: none asked)
	urgent        map[int]int           // pieces peers wait for while the fill runs
	// relays are the fill's pieces arriving from the origin, streamed to
	// children that ask for them (cut-through); relayEnd ends each one.
	relays   upload.Relays
	relayEnd map[int]func(ok bool)

	fromOrigin atomic.Int64
	served     atomic.Int64
	// lastUsed is when the task was last used (UnixNano); uses counts
	// piece uploads and fetches in progress, guarded by mu; closed is set
	// (under mu) when the task is taken out of the seeder and its cache
	// task closed (seedbounds.go).
	lastUsed atomic.Int64
	uses     int
	closed   bool

	// private: the first fetch carried credentials (a header or URL user
	// info), so a later requester is served only if the origin accepts
	// its own credentials. authorized maps credHash to when the origin
	// last accepted those credentials; guarded by mu.
	private    bool
	authorized map[string]time.Time

	// vouch holds digests adopted from sealed lists after a failover
	// (vouch.go); guarded by mu.
	vouch vouchState
	// pace paces the fill to the swarm (seedpace.go); guarded by mu.
	pace paceState
}

func (st *seedTask) snapshot() (state string, t *cache.Task, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.state, st.task, st.err
}

// seeder owns all seed tasks.
type seeder struct {
	store       *cache.Store
	src         *origin.Client
	log         logrus.FieldLogger
	concurrency int
	revalidate  time.Duration
	onLayout    func(taskID string, numPieces int)
	onOrigin    func(n int)
	// holdersOf names up to max live peers other than exclude holding a
	// piece of a task (nil: none known); children asking the seed for a
	// vouched piece it lacks are sent to them (vouch.go).
	holdersOf func(taskID string, n int, exclude string, max int) []wire.Parent
	// seal seals published digest lists and verifies those peers present
	// after a failover (vouch.go); the absent key seals nothing.
	seal trust.SealKey
	// maxOpen caps the open seed tasks and idle closes those unused
	// this long (seedbounds.go).
	maxOpen int
	idle    time.Duration
	closing int // tasks taken out of tasks, still being closed; guarded by mu
	// s3 holds the presigned URLs s3 tasks are fetched with (s3.go).
	s3 *s3Gate
	// lead paces fills to the swarm (seedpace.go; <= 0: unpaced); swarm
	// counts a task's peers and those done (nil: none known).
	lead  int
	swarm func(taskID string) (peers, done int)

	ctx context.Context

	mu    sync.Mutex
	tasks map[string]*seedTask
}

// ensure returns the seed task for id, starting one if needed. A failed
// task is retried; a finished one is revalidated with the origin when its
// last validation is older than the revalidate interval.
//
// When MaxOpenTasks tasks are open and none can be closed (all busy), a
// new task is refused with errSeedBusy.
func (s *seeder) ensure(ctx context.Context, id, rawURL string, header http.Header, digest string, lazy bool) (*seedTask, error) {
	s.mu.Lock()
	st := s.tasks[id]
	var replaced *seedTask
	if st != nil {
		st.mu.Lock()
		if st.state == stateFailed {
			// Replaced; its cache task is closed now unless a piece
			// upload still uses it (then it stays open: rare).
			if st.markClosedLocked() {
				replaced = st
				s.closing++
			}
			st.closed = true
			delete(s.tasks, id)
			st.mu.Unlock()
			st = nil
		} else {
			st.mu.Unlock()
		}
	}
	if st == nil && s.maxOpen > 0 && len(s.tasks)+s.closing >= s.maxOpen {
		victims := s.evictLocked(s.maxOpen - 1 - s.maxOpen/8 - s.closing)
		s.mu.Unlock()
		s.closeAll(victims, "over --max-open-tasks")
		if replaced != nil {
			s.closeAll([]*seedTask{replaced}, "failed, registered again")
		}
		if len(victims) == 0 && replaced == nil {
			return nil, errSeedBusy // all busy, or others are closing tasks
		}
		return s.ensure(ctx, id, rawURL, header, digest, lazy)
	}
	if st == nil {
		if digest == "" {
			if d, ok := manifest.BlobDigest(rawURL); ok {
				digest = d.String() // content-addressed by its URL
			}
		}
		st = &seedTask{id: id, url: rawURL, header: header.Clone(), digest: digest,
			created: time.Now(), ready: make(chan struct{}), state: stateProbing, lazy: lazy,
			private: len(header) > 0 || hasUserInfo(rawURL)}
		if st.private {
			// The first requester's credentials are checked by the fetch itself.
			st.authorized = map[string]time.Time{credHash(rawURL, header): st.created}
		}
		st.touch()
		s.tasks[id] = st
		s.mu.Unlock()
		if replaced != nil {
			s.closeAll([]*seedTask{replaced}, "failed, registered again")
		}
		go s.run(st)
		return st, nil
	}
	s.mu.Unlock()
	st.touch()
	s.maybeRevalidate(ctx, st, header)
	if !lazy {
		s.startFill(st)
	}
	return st, nil
}

// errSeedBusy refuses a new task while every open seed task is busy.
var errSeedBusy = errors.New("the seed has --max-open-tasks tasks open, all busy; try again shortly")

// startFill starts the full origin fetch of a task that so far served
// only pieces on demand. It does nothing before the layout is known (run
// starts the fill itself then) or while a fill runs.
func (s *seeder) startFill(st *seedTask) {
	st.mu.Lock()
	st.lazy = false
	if st.filling || st.task == nil || st.state != stateOnDemand ||
		st.info.AcceptRanges && st.onlyVouchedMissingLocked(st.task) {
		// (Partial after a failover: the fill would fetch nothing.)
		st.mu.Unlock()
		return
	}
	st.filling, st.state = true, stateFetching
	t, info := st.task, st.info
	st.mu.Unlock()
	go s.fill(st, t, info)
}

// fetchPiece makes the seed hold piece n, fetching it from the origin now
// if needed: a peer is waiting for it, so it goes before the background
// fill. With ranges, one fetch per piece runs at once: an on-demand fetch
// claims the piece so that the fill skips it, and waits for a piece the fill
// has already claimed (already in flight) instead of fetching it twice;
// without ranges the piece moves to the front of the fill's order.
func (s *seeder) fetchPiece(ctx context.Context, st *seedTask, n int) error {
	st.mu.Lock()
	t, info, state := st.task, st.info, st.state
	if t == nil || state == stateFailed {
		st.mu.Unlock()
		return errors.New("task not ready")
	}
	if t.Has(n) {
		st.mu.Unlock()
		return nil
	}
	// With ranges, a piece a peer waits for is fetched at once in its own
	// lane, ahead of the background fill (claimed, so the fill skips it
	// unless it had already started it); without ranges it can only move
	// to the front of the one stream.
	if !info.AcceptRanges {
		if st.urgent == nil {
			st.urgent = map[int]int{}
		}
		st.urgent[n]++
		st.mu.Unlock()
		defer func() {
			st.mu.Lock()
			if st.urgent[n]--; st.urgent[n] <= 0 {
				delete(st.urgent, n)
			}
			st.mu.Unlock()
		}()
		// No ranges: one piece cannot be fetched alone; stream it all.
		s.startFill(st)
		return t.Wait(ctx, n)
	}
	st.mu.Unlock()
	ch := st.pieces.DoChan(fmt.Sprint(n), func() (any, error) {
		// A piece the fill is already getting is waited for, not fetched
		// a second time; if that fetch failed, it is fetched here.
		for {
			if t.Has(n) {
				return nil, nil
			}
			release, busy, ok := st.claim(n)
			if ok {
				defer release()
				break
			}
			select {
			case <-busy:
			case <-s.ctx.Done():
				return nil, s.ctx.Err()
			}
		}
		if !st.vouched(n).IsZero() {
			s.logFor(st).WithField("piece", n).Debug("seed: fetching a vouched piece on demand (no live peer holds it, or the child asked urgently)")
		}
		data, err := s.originPiece(st, info, t.Layout(), n, origin.FillOptions{
			OnBytes: func(k int) {
				st.fromOrigin.Add(int64(k))
				s.onOrigin(k)
			}})
		if err != nil {
			return nil, err
		}
		if want := st.vouched(n); !want.IsZero() {
			// A piece a sealed list vouched for must be those bytes.
			if err := t.WritePiece(n, data, want); err != nil {
				if errors.Is(err, cache.ErrDigestMismatch) {
					s.fail(st, fmt.Errorf("seed %s: the origin's piece %d does not match the digest vouched for: content changed",
						manifest.RedactURL(st.url), n))
				}
				return nil, err
			}
		} else if _, err := t.PutPiece(n, data); err != nil {
			return nil, err
		}
		st.stored(n, false)
		if t.Complete() {
			if st.digest != "" {
				if err := verifyWhole(t, st.digest); err != nil {
					s.failContent(st, t, err)
					return nil, errors.New("task not ready")
				}
			}
			st.mu.Lock()
			if st.state != stateFailed {
				st.state = stateDone
			}
			st.mu.Unlock()
		}
		return nil, nil
	})
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// claim makes the caller the one fetcher of piece n: ok, with release to
// call once the piece is stored or its fetch failed; or, when another
// fetcher holds it, busy, closed when that one releases it.
func (st *seedTask) claim(n int) (release func(), busy <-chan struct{}, ok bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if ch, held := st.claimed[n]; held {
		return nil, ch, false
	}
	if st.claimed == nil {
		st.claimed = map[int]chan struct{}{}
	}
	ch := make(chan struct{})
	st.claimed[n] = ch
	st.claimsChangedLocked()
	return func() {
		st.mu.Lock()
		delete(st.claimed, n)
		st.claimsChangedLocked()
		st.mu.Unlock()
		close(ch)
	}, nil, true
}

// claimsChangedLocked notes a change of the claimed set. Caller holds st.mu.
func (st *seedTask) claimsChangedLocked() {
	st.claimGen++
	if st.claimCh != nil {
		close(st.claimCh)
		st.claimCh = nil
	}
}

// arriving returns the pieces being fetched now and not yet stored, the
// claimed set's generation and a channel closed at its next change.
func (st *seedTask) arriving(numPieces int) (manifest.Bitmap, uint64, <-chan struct{}) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.claimCh == nil {
		st.claimCh = make(chan struct{})
	}
	var b manifest.Bitmap
	for n := range st.claimed {
		if n >= 0 && n < numPieces && (st.task == nil || !st.task.Has(n)) {
			if b == nil {
				b = manifest.NewBitmap(numPieces)
			}
			b.Set(n)
		}
	}
	return b, st.claimGen, st.claimCh
}

// urgentOrder lists the pieces peers are waiting for, for the fill to
// fetch first.
func (st *seedTask) urgentOrder() []int {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([]int, 0, len(st.urgent))
	for i := range st.urgent {
		out = append(out, i)
	}
	return out
}

// get returns the seed task id, if open. It is not a use (status pages
// call it); callers that use the task touch it.
func (s *seeder) get(id string) *seedTask {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tasks[id]
}

func (s *seeder) all() []*seedTask {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*seedTask, 0, len(s.tasks))
	for _, st := range s.tasks {
		out = append(out, st)
	}
	return out
}

func (s *seeder) logFor(st *seedTask) logrus.FieldLogger {
	return s.log.WithFields(logrus.Fields{"task": st.id[:12], "url": manifest.RedactURL(st.url)})
}

// run prepares the seed task (reusing and validating a cached copy, or
// probing the origin) and fills it from the origin.
func (s *seeder) run(st *seedTask) {
	log := s.logFor(st)
	t, info, err := s.prepare(st)
	if err != nil {
		s.fail(st, err)
		return
	}
	st.mu.Lock()
	st.task, st.info, st.lastValidated = t, info, time.Now()
	failover := len(st.vouch.pending) > 0
	st.adoptPendingLocked(t, log)
	switch {
	case t.Complete():
		st.state = stateDone
	case st.lazy:
		st.state = stateOnDemand
	default:
		st.state, st.filling = stateFetching, true
	}
	fill := st.filling
	st.mu.Unlock()
	s.onLayout(st.id, t.NumPieces())
	close(st.ready)
	switch {
	case t.Complete():
		log.WithField("bytes", t.Meta().Length).Info("seed: serving cached copy")
	case fill:
		if failover && info.AcceptRanges {
			// Registered by a peer presenting sealed digests: the other
			// peers of the task are registering again too, some with
			// newer lists; give them a moment before the fill picks
			// pieces (vouch.go).
			select {
			case <-time.After(vouchSettle):
			case <-s.ctx.Done():
				return
			}
		}
		s.fill(st, t, info)
	default:
		log.Info("seed: on demand (lazy registration); fetching pieces as peers ask")
	}
}

func (s *seeder) fill(st *seedTask, t *cache.Task, info origin.Info) {
	log := s.logFor(st)
	start := time.Now()
	have := t.Count()
	log.WithFields(logrus.Fields{"bytes": t.Meta().Length, "pieces": t.NumPieces(), "present": have,
		"ranges": info.AcceptRanges}).Info("seed: fetching from origin")
	opts := origin.FillOptions{
		Concurrency: s.concurrency,
		Order:       st.urgentOrder,
		OnBytes: func(n int) {
			st.fromOrigin.Add(int64(n))
			s.onOrigin(n)
		},
	}
	defer st.resetPace()
	var err error
	// A piece an on-demand fetch had claimed is skipped by the fill; if
	// that fetch failed, the piece is still missing: fill again. Pieces
	// with a vouched digest (adopted after a failover, vouch.go) are not
	// fetched here, only on demand.
	for attempt := 0; attempt < 3 && err == nil && !t.Complete(); attempt++ {
		st.resetPace()
		err = s.originFill(st, info, seedSink{t: t, st: st, s: s, ranges: info.AcceptRanges}, opts)
		for err == nil && !t.Complete() && st.claimedAny() {
			time.Sleep(50 * time.Millisecond)
		}
		if err == nil && info.AcceptRanges && st.onlyVouchedMissing(t) {
			st.mu.Lock()
			if st.state == stateFetching {
				st.state = stateOnDemand
			}
			st.filling = false
			st.mu.Unlock()
			log.WithFields(logrus.Fields{"took": time.Since(start).Round(time.Millisecond),
				"fromOrigin": st.fromOrigin.Load(), "missing": t.NumPieces() - t.Count()}).
				Info("seed: holds every piece but those vouched for by sealed digests; fetching those on demand")
			return
		}
	}
	if err == nil && !t.Complete() {
		err = errors.New("pieces still missing after the fill")
	}
	if err == nil && st.digest != "" {
		if verr := verifyWhole(t, st.digest); verr != nil {
			s.failContent(st, t, fmt.Errorf("seed %s from origin: %w", manifest.RedactURL(st.url), verr))
			return
		}
	}
	if err != nil {
		s.fail(st, fmt.Errorf("seed %s from origin: %w", manifest.RedactURL(st.url), err))
		return
	}
	st.mu.Lock()
	if st.state == stateFailed {
		st.mu.Unlock()
		return
	}
	st.state, st.filling = stateDone, false
	st.mu.Unlock()
	log.WithFields(logrus.Fields{"took": time.Since(start).Round(time.Millisecond),
		"fromOrigin": st.fromOrigin.Load(), "paced": st.waitedPaced().Round(time.Millisecond)}).Info("seed: complete")
}

// prepare opens the cached copy if there is one and it is still current,
// else probes the origin and creates a fresh cache entry.
func (s *seeder) prepare(st *seedTask) (*cache.Task, origin.Info, error) {
	ctx := s.ctx
	if t, err := s.store.Open(ctx, st.id); err == nil {
		m := t.Meta()
		info, verr := s.originValidate(ctx, st, m.ETag, m.LastModified)
		switch {
		case verr != nil:
			t.Close()
			return nil, info, verr
		case info.NotModified:
			info.Length, info.ETag, info.LastModified = m.Length, m.ETag, m.LastModified
			if !info.AcceptRanges {
				// Validate's HEAD may not say; learn it again before refetching.
				if !t.Complete() {
					if pi, perr := s.originProbe(ctx, st); perr == nil {
						info.AcceptRanges = pi.AcceptRanges
					}
				}
			}
			s.logFor(st).WithField("present", t.Count()).Info("seed: cached copy still current (304)")
			return t, info, nil
		default:
			s.logFor(st).Info("seed: origin content changed; refetching")
			if info.Length < 0 {
				t.Close()
				return nil, info, errors.New("origin did not send Content-Length")
			}
			meta := s.metaFor(st, info)
			st.dropVouched() // vouched for the old content
			st.forgetPaced()
			if err := t.Reset(meta); err != nil {
				t.Close()
				return nil, info, err
			}
			return t, info, nil
		}
	} else if !errors.Is(err, cache.ErrNotFound) {
		return nil, origin.Info{}, fmt.Errorf("open cached copy: %w", err)
	}
	info, err := s.originProbe(ctx, st)
	if err != nil {
		return nil, info, err
	}
	if info.Length < 0 {
		return nil, info, fmt.Errorf("origin did not send a Content-Length for %s", manifest.RedactURL(st.url))
	}
	t, err := s.store.Create(ctx, s.metaFor(st, info))
	if err != nil {
		return nil, info, fmt.Errorf("create cache entry: %w", err)
	}
	return t, info, nil
}

func (s *seeder) metaFor(st *seedTask, info origin.Info) cache.Meta {
	l := manifest.NewLayout(info.Length)
	return cache.Meta{TaskID: st.id, URL: manifest.RedactURL(st.url), Length: l.Length, PieceSize: l.PieceSize,
		ETag: info.ETag, LastModified: info.LastModified, Digest: st.digest}
}

// failContent fails a content-addressed task whose content does not hash
// to its digest and purges its pieces, so that the bad bytes are never
// served again and the next registration fetches afresh from its own URL.
func (s *seeder) failContent(st *seedTask, t *cache.Task, err error) {
	// Detached first: closed here, not again when the seed task is closed
	// (a registration may replace the failed task at once).
	st.mu.Lock()
	if st.task == t {
		st.task = nil
	}
	st.mu.Unlock()
	s.fail(st, err)
	if rerr := t.Reset(t.Meta()); rerr != nil {
		s.logFor(st).WithError(rerr).Warn("seed: drop pieces of a task that failed its digest")
	}
	t.Close()
	if rerr := s.store.Remove(st.id); rerr != nil && !errors.Is(rerr, cache.ErrNotFound) {
		s.logFor(st).WithError(rerr).Warn("seed: remove a task that failed its digest")
	}
}

func (s *seeder) fail(st *seedTask, err error) {
	s.logFor(st).WithError(err).WithField("reason", egress.Reason(err)).Error("seed failed")
	st.mu.Lock()
	st.state, st.err = stateFailed, err
	st.mu.Unlock()
	select {
	case <-st.ready:
	default:
		close(st.ready)
	}
}

// maybeRevalidate checks a finished seed with the origin when its last
// check is older than the revalidate interval. Concurrent registrations
// share one check. On 200 the cached copy is dropped and refetched.
func (s *seeder) maybeRevalidate(ctx context.Context, st *seedTask, header http.Header) {
	if s.revalidate < 0 || st.digest != "" || manifest.IsBlobURL(st.url) || objstore.IsURL(st.url) {
		return // content-addressed (an s3 task by its ETag): it cannot change
	}
	st.mu.Lock()
	if st.state != stateDone || time.Since(st.lastValidated) < s.revalidate {
		st.mu.Unlock()
		return
	}
	if ch := st.validating; ch != nil {
		st.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		return
	}
	ch := make(chan struct{})
	st.validating = ch
	t := st.task
	st.mu.Unlock()
	defer func() {
		st.mu.Lock()
		st.validating = nil
		st.mu.Unlock()
		close(ch)
	}()
	m := t.Meta()
	info, err := s.src.Validate(ctx, st.url, header, m.ETag, m.LastModified)
	if err != nil {
		s.logFor(st).WithError(err).Warn("seed: revalidation failed; keeping cached copy")
		return
	}
	st.mu.Lock()
	st.lastValidated = time.Now()
	st.mu.Unlock()
	if info.NotModified {
		return
	}
	s.logFor(st).Info("seed: origin content changed (200 on revalidation); refetching")
	if info.Length < 0 {
		s.fail(st, errors.New("origin did not send Content-Length"))
		return
	}
	meta := s.metaFor(st, info)
	// What was vouched for is of the old content.
	st.dropVouched()
	st.forgetPaced()
	if err := t.Reset(meta); err != nil {
		s.fail(st, fmt.Errorf("reset cached copy: %w", err))
		return
	}
	st.mu.Lock()
	st.info = info
	st.state = stateOnDemand
	lazy := st.lazy
	st.mu.Unlock()
	s.onLayout(st.id, t.NumPieces())
	if !lazy {
		s.startFill(st)
	}
}

// errForbidden is the answer to a requester whose own credentials the
// origin did not accept for private content.
var errForbidden = errors.New("the origin did not accept your credentials for this content")

// authorize decides whether a requester presenting header (and the user
// info of rawURL) may be served a private seed task: the origin must
// accept those credentials for the seed's URL (HEAD, or GET Range 0-0),
// which is remembered for at most the revalidation interval.
func (s *seeder) authorize(ctx context.Context, st *seedTask, rawURL string, header http.Header) error {
	if !st.private {
		return nil
	}
	h := credHash(rawURL, header)
	ttl := s.revalidate
	if ttl <= 0 {
		ttl = 30 * time.Second
	}
	st.mu.Lock()
	at, ok := st.authorized[h]
	st.mu.Unlock()
	if ok && time.Since(at) < ttl {
		return nil
	}
	if _, err := s.src.Probe(ctx, withUserInfo(st.url, rawURL), header); err != nil {
		s.logFor(st).WithField("reason", egress.Reason(err)).Info("seed: origin refused a requester's credentials for private content")
		return errForbidden
	}
	st.mu.Lock()
	st.authorized[h] = time.Now()
	st.mu.Unlock()
	return nil
}

// credHash identifies a requester's credentials: the canonical request
// headers and the URL's user info, hashed.
func credHash(rawURL string, header http.Header) string {
	keys := make([]string, 0, len(header))
	for k := range header {
		keys = append(keys, http.CanonicalHeaderKey(k))
	}
	sort.Strings(keys)
	sum := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(sum, "%s\x00%q\x00", k, header.Values(k))
	}
	if u, err := url.Parse(rawURL); err == nil && u.User != nil {
		fmt.Fprintf(sum, "user\x00%s", u.User.String())
	}
	return hex.EncodeToString(sum.Sum(nil))
}

func hasUserInfo(rawURL string) bool {
	u, err := url.Parse(rawURL)
	return err == nil && u.User != nil
}

// withUserInfo is target with the user info of from (none if from has none).
func withUserInfo(target, from string) string {
	t, err := url.Parse(target)
	if err != nil {
		return target
	}
	t.User = nil
	if f, err := url.Parse(from); err == nil {
		t.User = f.User
	}
	return t.String()
}

func (st *seedTask) claimedAny() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.claimed) > 0
}

// seedSink adapts a cache task to origin.Sink. Pieces an on-demand fetch
// is getting count as present, so the fill does not fetch them too; so do
// vouched pieces when pieces can be fetched alone (ranges). The fill's range
// requests claim their pieces (origin.Claimer), so an on-demand fetch of a
// piece the fill is getting waits for it instead of fetching it again.
var (
	_ origin.Claimer = seedSink{}
	_ origin.Landing = seedSink{}
)

type seedSink struct {
	t      *cache.Task
	st     *seedTask
	s      *seeder // paces the fill's range requests (seedpace.go); nil: unpaced
	ranges bool
}

func (k seedSink) Layout() manifest.Layout { return k.t.Layout() }
func (k seedSink) Has(i int) bool {
	if k.t.Has(i) {
		return true
	}
	k.st.mu.Lock()
	defer k.st.mu.Unlock()
	_, claimed := k.st.claimed[i]
	return claimed || (k.ranges && !k.st.vouchedLocked(i).IsZero())
}

// Claim implements origin.Claimer: a range worker of the fill about to
// request piece i first waits for the pacing rule (seedpace.go), then
// claims the piece, unless it was stored or claimed meanwhile.
func (k seedSink) Claim(i int) (func(), bool) {
	counted := k.s != nil && k.s.paceFill(k.st, k.t, i)
	release, _, ok := k.st.claim(i)
	if ok && k.t.Has(i) {
		release()
		ok = false
	}
	if !ok && counted {
		k.st.unstarted()
	}
	if !ok {
		return release, false
	}
	return func() {
		k.st.endRelay(i, false) // the fetch failed (a stored piece ended it already)
		release()
	}, true
}

// Landing implements origin.Landing: the fill reads piece i into a buffer
// that children asking for the piece stream from as it arrives (the seed's
// cut-through relay); the stream's last byte waits for the piece to be
// hashed and stored.
func (k seedSink) Landing(i int, size int64) ([]byte, func(n int)) {
	buf := make([]byte, size)
	rp, end := k.st.relays.Start(k.st.id, i, buf, nil)
	k.st.mu.Lock()
	if k.st.relayEnd == nil {
		k.st.relayEnd = map[int]func(bool){}
	}
	k.st.relayEnd[i] = end
	k.st.mu.Unlock()
	return buf, rp.Land
}

func (k seedSink) PutPiece(i int, data []byte) error {
	if _, err := k.t.PutPiece(i, data); err != nil {
		return err
	}
	k.st.stored(i, true)
	k.st.endRelay(i, true)
	return nil
}

// endRelay ends the relay of piece i, if one runs: ok once it is stored.
func (st *seedTask) endRelay(i int, ok bool) {
	st.mu.Lock()
	end := st.relayEnd[i]
	delete(st.relayEnd, i)
	st.mu.Unlock()
	if end != nil {
		end(ok)
	}
}
