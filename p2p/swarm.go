package p2p

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/cache"
	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/p2p/ratelimit"
	"github.com/damselfly-p2p/damselfly/p2p/upload"
	"github.com/damselfly-p2p/damselfly/wire"
)

// DigestHeader carries a piece's digest on piece responses. Children trust
// it only from the supernode's seed, whose address the supernode gave them.
const DigestHeader = upload.DigestHeader

// Limits on how hard one child leans on one parent.
const (
	maxInflightPerParent = 3
	maxInflightFromSeed  = 2
	// parentStrikes failed requests make a child drop a parent.
	parentStrikes = 2
	syncInterval  = 250 * time.Millisecond
	idleSync      = 2 * time.Second
)

// parent states, as the child sees them:
//
//	usable --(503)--> busy (until busyUntil) --> usable
//	usable --(parentStrikes failures | one corrupt piece)--> dropped (final)
type parent struct {
	id, addr  string
	seed      bool
	bitmap    manifest.Bitmap
	count     int
	inflight  int
	failures  int
	dropped   bool
	busyUntil time.Time
}

// download is one P2P download of a task, from registration to the last
// piece. Its dispatcher keeps Concurrency piece fetches in flight, choosing
// the rarest piece among its parents' piece maps and preferring peers to
// the seed, which serves only what no parent has yet.
type download struct {
	p      *Peer
	req    Request
	id     string
	t      *cache.Task
	layout manifest.Layout
	log    logrus.FieldLogger
	c      *counters
	limits []*ratelimit.Limiter

	wake chan struct{}

	mu       sync.Mutex
	digests  []cache.Sum
	known    int
	parents  map[string]*parent
	inflight map[int]bool
	deferred map[int]time.Time // pieces the seed asked us to get elsewhere, until when
	// urgent counts readers waiting for each piece (lazy reads); those
	// pieces go first, from any parent, and the seed fetches them on demand.
	urgent map[int]int
	// lazy downloads run until closed; prefetch fetches pieces nobody is
	// waiting for (always true for plain downloads).
	lazy, prefetch bool
	prefetchLimit  *ratelimit.Limiter
	unsynced       []int
	bad            []wire.ParentReport
	seedDone       bool
	seedErr        string
	lastGain       time.Time
	storeErr       error

	// ctx and wg scope the watchers of this run; release lets the peer
	// know the download no longer uses the task.
	ctx     context.Context
	wg      *sync.WaitGroup
	release func()
}

func (p *Peer) newDownload(ctx context.Context, id string, req Request, reg *wire.RegisterResponse, c *counters, log logrus.FieldLogger) (*download, error) {
	l := reg.Layout()
	t, release, err := p.openTaskFor(ctx, cache.Meta{TaskID: id, URL: manifest.RedactURL(req.URL), Length: l.Length,
		PieceSize: l.PieceSize, ETag: reg.ETag, LastModified: reg.LastModified})
	if err != nil {
		return nil, err
	}
	d := &download{p: p, req: req, id: id, t: t, layout: l, log: log, c: c, limits: limiters(p, req),
		wake: make(chan struct{}, 1), digests: make([]cache.Sum, l.NumPieces()),
		parents: map[string]*parent{}, inflight: map[int]bool{}, deferred: map[int]time.Time{}, urgent: map[int]int{}, prefetch: true, lastGain: time.Now(), release: release}
	d.addParents(reg.Parents)
	d.applyDigests(reg.Digests)
	d.seedDone = reg.SeedDone
	c.reused.Store(t.BytesPresent())
	// Everything already present is news for the scheduler.
	for i := 0; i < l.NumPieces(); i++ {
		if t.Has(i) {
			d.unsynced = append(d.unsynced, i)
		}
	}
	return d, nil
}

func (d *download) run(ctx context.Context) (*Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// Stop the watchers and the sync loop first, then wait for them: a
	// watcher blocked in a long poll must not delay the result.
	defer func() {
		cancel()
		wg.Wait()
		d.release()
	}()
	d.ctx, d.wg = ctx, &wg
	if d.t.Complete() {
		d.log.Info("already in the local store")
		d.finalSync(ctx)
		return d.c.result(d.id, d.layout.Length, false), nil
	}
	d.log.WithFields(logrus.Fields{"bytes": d.layout.Length, "pieces": d.layout.NumPieces(),
		"present": d.t.Count(), "parents": len(d.parents)}).Info("downloading through P2P")
	wg.Add(1)
	go func() { defer wg.Done(); d.syncLoop(ctx) }()
	d.mu.Lock()
	for _, par := range d.parents {
		d.watch(ctx, &wg, par)
	}
	d.mu.Unlock()

	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !d.t.Complete() || d.lazy {
		if d.lazy && d.t.Complete() {
			d.finalSync(ctx)
			<-ctx.Done()
			return d.c.result(d.id, d.layout.Length, false), nil
		}
		d.dispatch(ctx)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("download %s: %w", manifest.RedactURL(d.req.URL), ctx.Err())
		case <-d.wake:
		case <-tick.C:
		}
		if err := d.checkStall(); err != nil && !d.lazy {
			if d.req.NoSource {
				return nil, fmt.Errorf("download %s: %v: %w", manifest.RedactURL(d.req.URL), err, ErrNoSource)
			}
			d.log.WithError(err).Warn("P2P stalled; fetching the remaining pieces from the origin")
			cancel()
			wg.Wait()
			return d.p.backToSource(context.WithoutCancel(ctx), d.id, d.req, d.c, d.knownDigests())
		}
	}
	d.finalSync(ctx)
	return d.c.result(d.id, d.layout.Length, false), nil
}

// dispatch starts piece fetches until Concurrency are in flight or nothing
// more can be fetched now.
func (d *download) dispatch(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for len(d.inflight) < d.p.cfg.Concurrency {
		i, par := d.pick()
		if par == nil {
			return
		}
		d.inflight[i] = true
		par.inflight++
		go d.fetch(ctx, i, par)
	}
}

// pick chooses the next piece and parent: among missing pieces not in
// flight, the one held by the fewest usable peer parents (rarest first,
// random among equals), from the least busy peer parent holding it; the
// seed only for pieces no peer parent has. Caller holds d.mu.
func (d *download) pick() (int, *parent) {
	n := d.layout.NumPieces()
	now := time.Now()
	usable := make([]*parent, 0, len(d.parents))
	// holders are live peer parents even if saturated: a piece one of them
	// holds is not worth the seed's upload.
	holders := make([]*parent, 0, len(d.parents))
	var seed *parent
	for _, par := range d.parents {
		if par.dropped || now.Before(par.busyUntil) {
			continue
		}
		if par.seed {
			seed = par
			continue
		}
		if par.count > 0 {
			holders = append(holders, par)
			if par.inflight < maxInflightPerParent {
				usable = append(usable, par)
			}
		}
	}
	if i, par := d.pickUrgent(usable, seed, now); par != nil {
		return i, par
	}
	if !d.prefetch {
		return -1, nil
	}
	if d.lazy && len(d.inflight) >= d.p.cfg.Concurrency-1 {
		// Keep a slot free for the next on-demand read.
		return -1, nil
	}
	bestPiece, bestCount := -1, 1<<30
	var bestParent *parent
	seedPiece := -1
	start := rand.IntN(n + 1)
	for k := 0; k < n; k++ {
		i := (start + k) % n
		if d.inflight[i] || d.t.Has(i) {
			continue
		}
		seedOK := seed != nil && seed.bitmap.Has(i) && !now.Before(d.deferred[i])
		if d.digests[i].IsZero() {
			// Only the seed vouches for unknown digests.
			if seedPiece < 0 && seedOK {
				seedPiece = i
			}
			continue
		}
		count := 0
		var choice *parent
		for _, par := range usable {
			if par.bitmap.Has(i) {
				count++
				if choice == nil || par.inflight < choice.inflight {
					choice = par
				}
			}
		}
		if choice != nil && count < bestCount {
			bestPiece, bestCount, bestParent = i, count, choice
		}
		if choice == nil && seedPiece < 0 && seedOK && !heldBy(holders, i) {
			seedPiece = i
		}
	}
	if bestParent != nil {
		return bestPiece, bestParent
	}
	// The seed is limited to a couple of requests per child while peers
	// can help; when it is the only source, it gets the whole window.
	seedLimit := maxInflightFromSeed
	if len(holders) == 0 {
		seedLimit = d.p.cfg.Concurrency
	}
	if seedPiece >= 0 && seed.inflight < seedLimit {
		return seedPiece, seed
	}
	return -1, nil
}

// pickUrgent returns a piece a reader waits for and a parent for it: the
// least busy peer parent that holds it (digest known), else the seed, which
// fetches it from the origin on demand if it must. Caller holds d.mu.
func (d *download) pickUrgent(usable []*parent, seed *parent, now time.Time) (int, *parent) {
	for i := range d.urgent {
		if d.inflight[i] || d.t.Has(i) {
			continue
		}
		var choice *parent
		if !d.digests[i].IsZero() {
			for _, par := range usable {
				if par.bitmap.Has(i) && (choice == nil || par.inflight < choice.inflight) {
					choice = par
				}
			}
		}
		if choice == nil && seed != nil && !now.Before(seed.busyUntil) {
			choice = seed
		}
		if choice != nil {
			return i, choice
		}
	}
	return -1, nil
}

func heldBy(ps []*parent, i int) bool {
	for _, par := range ps {
		if par.bitmap.Has(i) {
			return true
		}
	}
	return false
}

// fetch downloads piece i from par, verifies and stores it.
func (d *download) fetch(ctx context.Context, i int, par *parent) {
	data, digest, status, busy, holders, err := d.get(ctx, i, par)
	if len(holders) > 0 {
		// The seed says who just got this piece: make them parents.
		go d.adopt(d.addParents(holders))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	defer d.poke()
	// The piece stays in flight until it is stored, so that it is not
	// picked again meanwhile.
	defer delete(d.inflight, i)
	par.inflight--
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return
	case status == http.StatusServiceUnavailable && busy == "piece":
		// The seed just gave this piece to others: wait for them to relay it.
		d.deferred[i] = time.Now().Add(100*time.Millisecond + rand.N(200*time.Millisecond))
		return
	case status == http.StatusServiceUnavailable:
		par.busyUntil = time.Now().Add(50*time.Millisecond + rand.N(100*time.Millisecond))
		return
	case status == http.StatusNotFound:
		// Stale piece map: the parent no longer has it (or lost the task).
		if par.bitmap.Has(i) {
			par.bitmap.Clear(i)
			par.count--
		}
		return
	default:
		d.strike(par, reasonFor(err), err)
		return
	}
	want := d.digests[i]
	if want.IsZero() && par.seed && !digest.IsZero() {
		want = digest
		d.digests[i] = digest
		d.known++
	}
	if want.IsZero() {
		return
	}
	d.mu.Unlock()
	werr := d.t.WritePiece(i, data, want)
	d.mu.Lock()
	switch {
	case werr == nil:
		d.unsynced = append(d.unsynced, i)
		d.lastGain = time.Now()
		if par.seed {
			d.c.fromSeed.Add(int64(len(data)))
		} else {
			d.c.fromPeers.Add(int64(len(data)))
			par.failures = 0
		}
		if d.req.Progress != nil {
			d.req.Progress(d.t.BytesPresent(), d.layout.Length)
		}
	case errors.Is(werr, cache.ErrDigestMismatch), errors.Is(werr, cache.ErrBadPiece):
		d.log.WithFields(logrus.Fields{"piece": i, "parent": par.id}).Warn("parent served a corrupt piece; dropping it")
		par.failures = parentStrikes
		d.drop(par, wire.ReasonCorrupt)
	default:
		d.log.WithError(werr).WithField("piece", i).Error("store piece")
		d.storeErr = werr
	}
}

// get fetches piece i's bytes from par within the piece timeout.
func (d *download) get(ctx context.Context, i int, par *parent) (data []byte, sum cache.Sum, status int, busy string, holders []wire.Parent, err error) {
	ctx, cancel := context.WithTimeout(ctx, d.p.cfg.PieceTimeout)
	defer cancel()
	url := fmt.Sprintf("http://%s/peer/tasks/%s/pieces/%d", par.addr, d.id, i)
	d.mu.Lock()
	if d.urgent[i] > 0 {
		url += "?urgent=1"
	}
	d.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, sum, 0, "", nil, err
	}
	req.Header.Set(upload.PeerHeader, d.p.id+" "+d.p.host.UploadAddr)
	resp, err := d.p.client.Do(req)
	if err != nil {
		return nil, sum, 0, "", nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, sum, resp.StatusCode, resp.Header.Get(upload.BusyHeader), parseHolders(resp.Header.Get(upload.HoldersHeader)),
			fmt.Errorf("piece %d from %s: %s", i, par.addr, resp.Status)
	}
	_, n := d.layout.PieceRange(i)
	if resp.ContentLength >= 0 && resp.ContentLength != n {
		return nil, sum, resp.StatusCode, "", nil, fmt.Errorf("piece %d from %s: length %d, want %d: %w", i, par.addr, resp.ContentLength, n, cache.ErrBadPiece)
	}
	buf := make([]byte, n)
	limits := d.limits
	if d.prefetchLimit != nil && !strings.Contains(url, "urgent") {
		limits = append(limits[:len(limits):len(limits)], d.prefetchLimit)
	}
	if _, err := io.ReadFull(&ratelimit.Reader{R: resp.Body, Ctx: ctx, Limiters: limits}, buf); err != nil {
		return nil, sum, resp.StatusCode, "", nil, fmt.Errorf("piece %d from %s: %w", i, par.addr, err)
	}
	if h := resp.Header.Get(DigestHeader); h != "" {
		sum, _ = cache.ParseSum(h)
	}
	return buf, sum, resp.StatusCode, "", nil, nil
}

// parseHolders reads a HoldersHeader value.
func parseHolders(h string) []wire.Parent {
	var out []wire.Parent
	for _, item := range strings.Split(h, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(item), " ")
		if ok && id != "" && addr != "" {
			out = append(out, wire.Parent{PeerID: id, Addr: addr})
		}
	}
	return out
}

func reasonFor(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return wire.ReasonTimeout
	case errors.Is(err, cache.ErrBadPiece):
		return wire.ReasonBadResponse
	default:
		return wire.ReasonUnreachable
	}
}

// strike counts a failure against par and drops it after parentStrikes.
// Caller holds d.mu.
func (d *download) strike(par *parent, reason string, err error) {
	par.failures++
	d.log.WithError(err).WithFields(logrus.Fields{"parent": par.id, "strikes": par.failures}).Debug("parent failed")
	if par.failures >= parentStrikes {
		d.drop(par, reason)
	}
}

// drop stops using par and reports it. The seed is never dropped for good:
// it is the parent of last resort, so it only backs off.
func (d *download) drop(par *parent, reason string) {
	if par.seed {
		par.failures = 0
		par.busyUntil = time.Now().Add(time.Second)
		return
	}
	if par.dropped {
		return
	}
	par.dropped = true
	d.bad = append(d.bad, wire.ParentReport{PeerID: par.id, Reason: reason})
	d.log.WithFields(logrus.Fields{"parent": par.id, "reason": reason}).Info("dropped parent")
}

func (d *download) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// checkStall reports an error when no piece arrived for StallTimeout and
// nothing is in flight, or when the seed gave up and no parent can help.
func (d *download) checkStall() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.storeErr != nil {
		return fmt.Errorf("store pieces: %w", d.storeErr)
	}
	if d.seedErr != "" && len(d.inflight) == 0 && !d.anyPeerCanHelp() {
		return fmt.Errorf("seed failed: %s", d.seedErr)
	}
	if time.Since(d.lastGain) > d.p.cfg.StallTimeout {
		return fmt.Errorf("no progress for %s", d.p.cfg.StallTimeout)
	}
	return nil
}

func (d *download) anyPeerCanHelp() bool {
	for _, par := range d.parents {
		if par.dropped || par.seed {
			continue
		}
		for i := 0; i < d.layout.NumPieces(); i++ {
			if par.bitmap.Has(i) && !d.t.Has(i) {
				return true
			}
		}
	}
	return false
}

// addParents adds parents not known yet. Caller must not hold d.mu; new
// parents are watched once the download runs.
func (d *download) addParents(ps []wire.Parent) []*parent {
	d.mu.Lock()
	defer d.mu.Unlock()
	var added []*parent
	for _, ap := range ps {
		if ap.PeerID == d.p.id || ap.Addr == d.p.host.UploadAddr {
			continue
		}
		if old := d.parents[ap.PeerID]; old != nil {
			if ap.Seed && old.addr != ap.Addr {
				old.addr = ap.Addr
			}
			continue
		}
		par := &parent{id: ap.PeerID, addr: ap.Addr, seed: ap.Seed, bitmap: manifest.NewBitmap(d.layout.NumPieces())}
		d.parents[ap.PeerID] = par
		added = append(added, par)
	}
	return added
}

// watch long-polls par's piece map until the download ends or par is
// dropped. Caller holds d.mu.
func (d *download) watch(ctx context.Context, wg *sync.WaitGroup, par *parent) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		have := -1
		errs := 0
		for ctx.Err() == nil && !d.t.Complete() {
			d.mu.Lock()
			stop := par.dropped || par.count >= d.layout.NumPieces()
			d.mu.Unlock()
			if stop {
				return
			}
			bm, err := d.fetchBitmap(ctx, par, have)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				errs++
				d.mu.Lock()
				if errs >= 3 {
					d.drop(par, wire.ReasonUnreachable)
				}
				d.mu.Unlock()
				sleepCtx(ctx, time.Duration(errs)*300*time.Millisecond)
				continue
			}
			errs = 0
			d.mu.Lock()
			if len(bm.Bitmap) == len(par.bitmap) && bm.NumPieces == d.layout.NumPieces() {
				par.bitmap, par.count = bm.Bitmap, bm.Bitmap.Count()
			}
			have = par.count
			d.mu.Unlock()
			d.poke()
		}
	}()
}

func (d *download) fetchBitmap(ctx context.Context, par *parent, have int) (*upload.BitmapResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	url := fmt.Sprintf("http://%s/peer/tasks/%s/bitmap?have=%d&wait=5s", par.addr, d.id, have)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		// The parent has not opened the task yet: treat as empty.
		io.Copy(io.Discard, resp.Body)
		sleepCtx(ctx, 200*time.Millisecond)
		return &upload.BitmapResponse{NumPieces: d.layout.NumPieces(), Bitmap: manifest.NewBitmap(d.layout.NumPieces())}, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("piece map from %s: %s", par.addr, resp.Status)
	}
	var bm upload.BitmapResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&bm); err != nil {
		return nil, fmt.Errorf("piece map from %s: %w", par.addr, err)
	}
	return &bm, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
