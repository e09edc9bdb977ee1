package p2p

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
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

// ErrStoreFull is wrapped by the error of a download whose piece store ran
// out of disk space. The download fails at once: the origin is not asked
// for pieces there is no room for.
var ErrStoreFull = errors.New("store disk full")

// download is one P2P download of a task, from registration to the last
// piece. Its dispatcher keeps Concurrency piece fetches in flight, letting
// its pickPolicy choose pieces and parents (urgent reads first, then the
// rarest piece among its parents' piece maps, the seed only for what no
// parent has). Each piece moves through the pieceState machine; each parent
// through the states documented on parent.
type download struct {
	p      *Peer
	req    Request
	id     string
	t      *cache.Task
	layout manifest.Layout
	log    logrus.FieldLogger
	c      *counters
	limits []*ratelimit.Limiter
	cred   *taskCredential

	wake   chan struct{}
	policy pickPolicy
	// syncNews wakes the sync loop (newsLocked).
	syncNews chan struct{}

	mu       sync.Mutex
	digests  []cache.Sum
	known    int
	parents  map[string]*parent
	inflight map[int]bool      // pieces in state pieceInFlight
	deferred map[int]time.Time // pieces the seed asked us to get elsewhere, until when
	// heldBy names, per deferred piece, the holders the seed sent us to;
	// once every one of them is dropped (gone), the piece is asked of the
	// seed again at once, past its fan-out (bypass).
	heldBy map[int][]string
	bypass map[int]bool
	// urgent counts readers waiting for each piece (lazy reads); those
	// pieces go first, from any parent, and the seed fetches them on demand.
	urgent map[int]int
	// lazy downloads run until closed; prefetch fetches pieces nobody is
	// waiting for (always true for plain downloads).
	lazy, prefetch bool
	// prefetchHeld keeps a lazy download's background fetch from starting
	// until the first reads were served (or a short delay passed).
	prefetchHeld  bool
	prefetchLimit *ratelimit.Limiter
	unsynced      []int
	bad           []wire.ParentReport
	servedBy      map[string]bool // parents that served stored pieces
	// sealed is the last sealed digest list from the supernode, presented
	// to the task's next owner after a failover (sealed.go).
	sealed *wire.SealedDigests
	// pieceSeals are digests learnt with pieces from the seed, each
	// sealed alone (PieceSealHeader), that no kept list covers yet;
	// headerSeals holds the seal of a piece being fetched from the seed.
	pieceSeals, headerSeals map[int]wire.SealedPiece
	seedDone                bool
	seedErr                 string
	lastGain                time.Time
	storeErr                error

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
		wake: make(chan struct{}, 1), syncNews: make(chan struct{}, 1), policy: newPickPolicy(p.cfg.Concurrency), digests: make([]cache.Sum, l.NumPieces()),
		parents: map[string]*parent{}, inflight: map[int]bool{}, deferred: map[int]time.Time{}, heldBy: map[int][]string{}, bypass: map[int]bool{}, urgent: map[int]int{}, servedBy: map[string]bool{}, prefetch: true, lastGain: time.Now(), release: release,
		cred: newTaskCredential(p.taskKeys, nil)}
	d.cred.set(reg.TaskCredential)
	d.addParents(reg.Parents)
	d.applyDigests(reg.Digests)
	d.keepSealedLocked(reg.Digests, reg.Seal, reg)
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
	// Pieces that rotted on disk are dropped here, so that the loop below
	// fetches them again from peers.
	if _, err := d.CheckStore(); err != nil {
		return nil, err
	}
	if d.t.Complete() {
		d.log.Info("already in the local store")
		if err := d.verify(ctx); err != nil {
			return nil, err
		}
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

	tick := time.NewTimer(time.Hour)
	defer tick.Stop()
	for !d.t.Complete() || d.lazy {
		if d.lazy && d.t.Complete() {
			d.finalSync(ctx)
			<-ctx.Done()
			return d.c.result(d.id, d.layout.Length, false), nil
		}
		d.dispatch(ctx)
		tick.Reset(d.nextDispatch())
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("download %s: %w", manifest.RedactURL(d.req.URL), ctx.Err())
		case <-d.wake:
		case <-tick.C:
		}
		err := d.checkStall()
		if errors.Is(err, ErrStoreFull) && !d.lazy {
			return nil, fmt.Errorf("download %s: %w", manifest.RedactURL(d.req.URL), err)
		}
		if err != nil && !d.lazy {
			if d.req.NoSource {
				return nil, fmt.Errorf("download %s: %v: %w", manifest.RedactURL(d.req.URL), err, ErrNoSource)
			}
			d.log.WithError(err).Warn("P2P stalled; fetching the remaining pieces from the origin")
			cancel()
			wg.Wait()
			return d.p.backToSource(context.WithoutCancel(ctx), d.id, d.req, d.c, d.knownDigests())
		}
	}
	if err := d.verify(ctx); err != nil {
		return nil, err
	}
	d.finalSync(ctx)
	return d.c.result(d.id, d.layout.Length, false), nil
}

// Dispatch timing: every event that can make a piece fetchable (a fetch
// ended, a piece map or sync arrived, a parent was dropped) pokes the
// loop; only back-offs end without one, so the loop wakes at the earliest
// of those, and otherwise every idleDispatch (stall checks). A lazy
// download polls every busyDispatch, as its readers and prefetch hold
// change on their own.
const (
	busyDispatch = 100 * time.Millisecond
	idleDispatch = time.Second
)

// nextDispatch is how long the dispatch loop may sleep without a poke.
func (d *download) nextDispatch() time.Duration {
	if d.lazy {
		return busyDispatch
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.policy.now()
	next := idleDispatch
	until := func(t time.Time) {
		if w := t.Sub(now); w < next {
			next = max(w, time.Millisecond)
		}
	}
	for i, t := range d.deferred {
		if !d.t.Has(i) && t.After(now) {
			until(t)
		}
	}
	for _, par := range d.parents {
		if !par.dropped && par.busyUntil.After(now) {
			until(par.busyUntil)
		}
	}
	return next
}

// dispatch starts piece fetches until Concurrency are in flight or nothing
// more can be fetched now; d.policy chooses what to fetch from whom.
func (d *download) dispatch(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for len(d.inflight) < d.p.cfg.Concurrency {
		i, par := d.policy.next(d.view())
		if par == nil {
			return
		}
		d.inflight[i] = true
		par.inflight++
		go d.fetch(ctx, i, par)
	}
}

// pieceState is piece i's state (see pieceState). Caller holds d.mu.
func (d *download) pieceState(i int) pieceState {
	switch {
	case d.t.Has(i):
		return pieceStored
	case d.inflight[i]:
		return pieceInFlight
	}
	return pieceMissing
}

// view is what the pick policy sees of d now. Caller holds d.mu.
func (d *download) view() *pickView {
	parents := make([]*parent, 0, len(d.parents))
	for _, par := range d.parents {
		parents = append(parents, par)
	}
	background := 0
	for i := range d.inflight {
		if d.urgent[i] == 0 {
			background++
		}
	}
	return &pickView{numPieces: d.layout.NumPieces(), state: d.pieceState,
		digestKnown: func(i int) bool { return !d.digests[i].IsZero() },
		parents:     parents, urgent: d.urgent, deferred: d.deferred, inflight: len(d.inflight), background: background,
		lazy: d.lazy, prefetch: d.prefetch && !d.prefetchHeld}
}

// fetch downloads piece i from par, verifies and stores it.
func (d *download) fetch(ctx context.Context, i int, par *parent) {
	start := time.Now()
	data, digest, status, busy, holders, end, err := d.get(ctx, i, par)
	took := time.Since(start)
	// The store copies the bytes to its file; end lets the relayed streams
	// of the piece finish (or cut them) and gives the buffer back once they
	// are done with it. It runs after the piece is stored.
	stored := false
	if end != nil {
		defer func() { end(stored) }()
	}
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
	case status == http.StatusUnauthorized:
		// The credential expired or the parent does not know our cluster
		// key yet: the next sync asks for a new one; back off meanwhile.
		d.cred.refusedBy()
		par.busyUntil = d.policy.now().Add(300 * time.Millisecond)
		return
	case status == http.StatusServiceUnavailable && busy == "piece":
		// The seed just gave this piece to others: wait for them to relay it,
		// unless they are all gone already.
		ids := holderIDs(holders)
		if d.allDroppedLocked(ids) {
			d.bypass[i] = true
			return
		}
		d.heldBy[i] = ids
		d.deferred[i] = d.policy.now().Add(100*time.Millisecond + rand.N(200*time.Millisecond))
		return
	case status == http.StatusServiceUnavailable:
		par.busyUntil = d.policy.now().Add(50*time.Millisecond + rand.N(100*time.Millisecond))
		return
	case status == http.StatusNotFound:
		// Stale piece map: the parent no longer has it (or lost the task),
		// or its fetch of it ended without it.
		if par.bitmap.Has(i) {
			par.bitmap.Clear(i)
			par.count--
		}
		par.clearRelaying(i)
		return
	case isRefused(err):
		// Nothing listens there any more: the parent is gone, no need
		// for a second try.
		d.drop(par, wire.ReasonUnreachable)
		return
	default:
		d.strike(par, reasonFor(err), err)
		return
	}
	want := d.digests[i]
	fromHeader := false
	if want.IsZero() && par.seed && !digest.IsZero() {
		want = digest
		d.digests[i] = digest
		d.known++
		fromHeader = true
	}
	if want.IsZero() {
		return
	}
	d.mu.Unlock()
	werr := d.t.WritePiece(i, data, want)
	d.mu.Lock()
	switch {
	case werr == nil:
		stored = true
		if fromHeader {
			d.keepPieceSealLocked(i)
		}
		delete(d.bypass, i)
		delete(d.heldBy, i)
		d.unsynced = append(d.unsynced, i)
		d.newsLocked()
		d.servedBy[par.id] = true
		d.lastGain = time.Now()
		source := "peers"
		if par.seed {
			source = "seed"
			d.c.fromSeed.Add(int64(len(data)))
		} else {
			d.c.fromPeers.Add(int64(len(data)))
			par.failures = 0
		}
		if on := d.p.onPiece.Load(); on != nil {
			(*on)(source, len(data), took)
		}
		if d.req.Progress != nil {
			d.req.Progress(d.t.BytesPresent(), d.layout.Length)
		}
	case errors.Is(werr, cache.ErrDigestMismatch), errors.Is(werr, cache.ErrBadPiece):
		d.log.WithFields(logrus.Fields{"piece": i, "parent": par.id}).Warn("parent served a corrupt piece; dropping it")
		par.failures = parentStrikes
		d.drop(par, wire.ReasonCorrupt)
	case errors.Is(werr, syscall.ENOSPC):
		// Asking the origin instead would not help: fail the download.
		d.log.WithError(werr).WithField("piece", i).Error("store piece: the store's disk is full")
		d.storeErr = fmt.Errorf("%w: %w", ErrStoreFull, werr)
	default:
		d.log.WithError(werr).WithField("piece", i).Error("store piece")
		d.storeErr = werr
	}
}

// get fetches piece i's bytes from par within the piece timeout. While
// they arrive, the peer relays them to children that ask (relay.go); the
// caller must call end, when not nil, once the piece is stored or not.
func (d *download) get(ctx context.Context, i int, par *parent) (data []byte, sum cache.Sum, status int, busy string, holders []wire.Parent, end func(stored bool), err error) {
	ctx, cancel := context.WithTimeout(ctx, d.p.cfg.PieceTimeout)
	defer cancel()
	url := fmt.Sprintf("%s://%s/peer/tasks/%s/pieces/%d", d.p.scheme, par.addr, d.id, i)
	d.mu.Lock()
	if d.urgent[i] > 0 || (par.seed && d.bypass[i]) {
		// Urgent requests pass the seed's fan-out limit.
		url += "?urgent=1"
	}
	d.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, sum, 0, "", nil, nil, err
	}
	req.Header.Set(upload.PeerHeader, d.p.id+" "+d.p.host.UploadAddr)
	d.cred.authorize(req)
	resp, err := d.p.client.Do(req)
	if err != nil {
		return nil, sum, 0, "", nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, sum, resp.StatusCode, resp.Header.Get(upload.BusyHeader), parseHolders(resp.Header.Get(upload.HoldersHeader)), nil,
			fmt.Errorf("piece %d from %s: %s", i, par.addr, resp.Status)
	}
	_, n := d.layout.PieceRange(i)
	if h := resp.Header.Get(upload.RelayHeader); h != "" && h != strconv.FormatInt(n, 10) {
		return nil, sum, resp.StatusCode, "", nil, nil, fmt.Errorf("piece %d from %s: relayed length %s, want %d: %w", i, par.addr, h, n, cache.ErrBadPiece)
	}
	if resp.ContentLength >= 0 && resp.ContentLength != n {
		return nil, sum, resp.StatusCode, "", nil, nil, fmt.Errorf("piece %d from %s: length %d, want %d: %w", i, par.addr, resp.ContentLength, n, cache.ErrBadPiece)
	}
	buf := getPieceBuf(n)
	limits := d.limits
	if d.prefetchLimit != nil && !strings.Contains(url, "urgent") {
		limits = append(limits[:len(limits):len(limits)], d.prefetchLimit)
	}
	rp, end := d.p.relays.Start(d.id, i, buf, putPieceBuf)
	body := &ratelimit.Reader{R: resp.Body, Ctx: ctx, Limiters: limits}
	for off := 0; off < len(buf); {
		k, err := body.Read(buf[off:])
		off += k
		rp.Land(off)
		if err == io.EOF && off < len(buf) {
			err = io.ErrUnexpectedEOF
			if resp.Trailer.Get(upload.RelayStatusTrailer) == "failed" {
				// The parent's own fetch of the piece failed: not its
				// fault; ask again elsewhere, as for a piece it lacks.
				end(false)
				return nil, sum, http.StatusNotFound, "", nil, nil, fmt.Errorf("piece %d from %s: %w", i, par.addr, upload.ErrRelayFailed)
			}
		}
		if err != nil && err != io.EOF {
			end(false)
			return nil, sum, resp.StatusCode, "", nil, nil, fmt.Errorf("piece %d from %s: %w", i, par.addr, err)
		}
	}
	if resp.Header.Get(upload.RelayHeader) != "" {
		// Read the end of the relayed stream (its trailer), so that the
		// connection can be used again.
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1))
	}
	h, seal := resp.Header.Get(DigestHeader), resp.Header.Get(upload.PieceSealHeader)
	if h == "" {
		// A relayed piece's digest comes after its bytes (the seed hashes
		// it as it lands).
		h, seal = resp.Trailer.Get(DigestHeader), resp.Trailer.Get(upload.PieceSealHeader)
	}
	if h != "" {
		sum, _ = cache.ParseSum(h)
		if seal != "" && par.seed {
			d.noteHeaderSeal(i, h, seal)
		}
	}
	return buf, sum, resp.StatusCode, "", nil, end, nil
}

// pieceBufs holds piece buffers between fetches, by capacity (piece sizes
// are powers of two from 1 MiB to 16 MiB; a last piece is shorter and
// reuses a larger buffer), so that a download does not allocate (and zero)
// one per piece.
var pieceBufs sync.Map // capacity -> *sync.Pool of *[]byte

// getPieceBuf returns a buffer of n bytes (contents undefined).
func getPieceBuf(n int64) []byte {
	c := max(int64(1)<<20, int64(1)<<bits.Len64(uint64(n-1)))
	pool, _ := pieceBufs.LoadOrStore(c, &sync.Pool{})
	if b, ok := pool.(*sync.Pool).Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, c)
}

// putPieceBuf gives b (from getPieceBuf; nil is ignored) back for reuse.
func putPieceBuf(b []byte) {
	c := int64(cap(b))
	if c == 0 || c&(c-1) != 0 {
		return
	}
	if pool, ok := pieceBufs.Load(c); ok {
		pool.(*sync.Pool).Put(&b)
	}
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
	if err := d.seedFailureLocked(); err != nil {
		return err
	}
	if time.Since(d.lastGain) > d.p.cfg.StallTimeout {
		return fmt.Errorf("no progress for %s", d.p.cfg.StallTimeout)
	}
	return nil
}

// seedFailure reports the seed's error when it gave up on the task and no
// parent can help.
func (d *download) seedFailure() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.seedFailureLocked()
}

func (d *download) seedFailureLocked() error {
	if d.seedErr != "" && len(d.inflight) == 0 && !d.anyPeerCanHelp() {
		return fmt.Errorf("seed failed: %s", d.seedErr)
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
