package p2p

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/cache"
	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/objstore"
	"github.com/damselfly-p2p/damselfly/origin"
	"github.com/damselfly-p2p/damselfly/p2p/ratelimit"
	"github.com/damselfly-p2p/damselfly/wire"
)

// LazyOptions configures a lazily read task.
type LazyOptions struct {
	// Prefetch fetches the whole task in the background, behind reads.
	Prefetch bool
	// PrefetchLimit caps the prefetcher's bytes/s (0: only host limits).
	PrefetchLimit int64
	// ReadTimeout bounds how long ReadAt waits for missing pieces (60s).
	ReadTimeout time.Duration
	// ReadAheadAfter is how many pieces a reader must move through in
	// order before the pieces after its reads are asked for ahead of them
	// (0: readAheadAfter). A snapshotter sets more: a program reading a
	// few MiB of a layer should cost the registry what it reads.
	ReadAheadAfter int
	// PrefetchDelay is the longest the background fetch waits for the
	// first reads before it starts anyway (2s). It starts earlier once a
	// read was served and no read has waited for prefetchQuiet.
	PrefetchDelay time.Duration
	// ObjectStore reads s3://BUCKET/KEY URLs (required for them). Such a
	// task is named by objstore.Identity (bucket, key, ETag). With a
	// supernode that takes it, it is registered with a presigned GET URL
	// signed by this client and read through the swarm (s3swarm.go);
	// otherwise this peer reads its pieces from the store (mode direct).
	ObjectStore *objstore.Client
	// Object, when set for an s3:// URL naming the same bucket and key, is
	// the version to read as a listing gave it (size and ETag): the open
	// then sends no HEAD, so mounting a prefix costs one LIST per
	// directory, not one HEAD per file.
	Object *objstore.ObjectInfo
	// Range, when set, is the content to read (req.URL then only names
	// the task in logs): the task is named by RangeTaskID and this peer
	// fetches its pieces from Range directly, as for an s3 object.
	Range RangeSource
}

// prefetchQuiet is how long after the last read the background fetch may
// start, once at least one read was served.
const prefetchQuiet = 500 * time.Millisecond

// ErrReadTimeout is returned by ReadAt when pieces did not arrive in time.
var ErrReadTimeout = errors.New("pieces did not arrive within the read timeout")

// Lazy is a task opened for random-access reads before it is downloaded:
// a read asks for the pieces it touches at top priority (ahead of the
// prefetcher) and waits for them. Concurrent reads of one piece share one
// fetch. With no supernode reachable, a task already in the store is
// served from what it holds and the pieces reads touch are fetched
// straight from the origin (direct mode), while registration is retried in
// the background. Lazy implements
// io.ReaderAt.
type Lazy struct {
	p    *Peer
	req  Request
	opt  LazyOptions
	id   string
	t    *cache.Task
	log  logrus.FieldLogger
	done func()

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex
	d  *download // nil while offline
	// lastPiece is where the previous read ended; ahead holds pieces asked
	// for by readahead (see Ensure).
	lastPiece int
	streak    int
	ahead     map[int]bool
	// served counts reads served; lastRead is when the last one ended.
	served   int
	lastRead time.Time
	// direct fetches from the origin while no supernode answers (nil once
	// the task was opened through one).
	direct *direct
	// s3 presigns the object's GET URL for the supernode (nil for other
	// tasks, and for s3 objects opened without a supernode).
	s3 *s3Source
	// stopSwarm stops the swarm download d (a seed that gave up on an s3
	// object hands the reads back to the store, s3swarm.go).
	stopSwarm context.CancelFunc
}

// readAheadPieces is how many pieces past a sequential read are asked for
// at read priority without waiting for them: a reader going through a file
// then finds its next pieces arriving instead of paying one round trip
// through the swarm per piece. The window doubles with every four pieces
// the reader moves on to in order, up to readAheadMax, or, in direct
// mode, directReadAheadMax: a store such as an S3 server answers large
// ranges far faster than many small ones (README, "dfmount on its own,
// and S3 objects": SeaweedFS on loopback, 1 GiB in 64 MiB ranges 1.5 s one
// at a time, 1.05 s four at once; in 1 MiB ranges 33 s and 10 s), so a
// sequential reader keeps two directRunPieces runs in flight.
const (
	// readAheadAfter is the default LazyOptions.ReadAheadAfter.
	readAheadAfter     = 4
	readAheadPieces    = 4
	readAheadMax       = 32
	directReadAheadMax = 2 * directRunPieces
)

// OpenLazy opens req.URL for lazy reads.
func (p *Peer) OpenLazy(ctx context.Context, req Request, opt LazyOptions) (*Lazy, error) {
	if opt.ReadTimeout <= 0 {
		opt.ReadTimeout = 60 * time.Second
	}
	if opt.PrefetchDelay <= 0 {
		opt.PrefetchDelay = 2 * time.Second
	}
	if opt.ReadAheadAfter <= 0 {
		opt.ReadAheadAfter = readAheadAfter
	}
	if opt.Range != nil {
		return p.openLazyRange(ctx, req, opt)
	}
	if objstore.IsURL(req.URL) {
		return p.openLazyS3(ctx, req, opt)
	}
	if _, err := manifest.ParseURL(req.URL); err != nil {
		return nil, err
	}
	id, err := manifest.TaskID(req.URL, req.Tag, req.Filters)
	if err != nil {
		return nil, err
	}
	l := p.newLazy(req, opt, id)
	var reg *wire.RegisterResponse
	if p.snc != nil {
		reg, err = p.registerLazy(ctx, id, req, true)
		if err != nil && !errors.Is(err, wire.ErrUnreachable) {
			return nil, err
		}
	}
	if reg != nil {
		if err := l.start(ctx, reg); err != nil {
			return nil, err
		}
		return l, nil
	}
	// No supernode: serve what the store holds, fetch the rest straight
	// from the origin, and keep trying to register (joining the swarm
	// without reopening).
	if err := l.openDirect(ctx, nil); err != nil {
		return nil, err
	}
	if p.snc != nil {
		l.wg.Add(1)
		go l.reconnect()
	}
	return l, nil
}

func (p *Peer) newLazy(req Request, opt LazyOptions, id string) *Lazy {
	l := &Lazy{p: p, req: req, opt: opt, id: id,
		log: p.log.WithFields(logrus.Fields{"task": id[:12], "url": manifest.RedactURL(req.URL)})}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	return l
}

// openLazyS3 opens one object of an S3-compatible store: its HEAD names the
// task (bucket, key and ETag, never a signature), and its pieces are read
// with ranged GETs pinned to that version.
func (p *Peer) openLazyS3(ctx context.Context, req Request, opt LazyOptions) (*Lazy, error) {
	u, err := objstore.ParseURL(req.URL)
	if err != nil {
		return nil, err
	}
	if u.IsPrefix() {
		return nil, fmt.Errorf("open %s: a prefix, not an object (mounting prefixes as trees is not supported yet)", u)
	}
	if opt.ObjectStore == nil {
		return nil, fmt.Errorf("open %s: no object store client configured", u)
	}
	var oi objstore.ObjectInfo
	if o := opt.Object; o != nil && o.Bucket == u.Bucket && o.Key == u.Key && (o.ETag != "" || o.VersionID != "") {
		oi = *o
	} else if oi, err = opt.ObjectStore.Head(ctx, u.Bucket, u.Key); err != nil {
		return nil, fmt.Errorf("open %s: %w", u, err)
	}
	l := p.newLazy(req, opt, S3TaskID(oi, req.Tag))
	l.log.WithField("identity", objstore.Identity(oi)).Debug("s3 object")
	reconnect := false
	if p.snc != nil {
		l.s3 = p.s3.add(l.id, &s3Source{obj: opt.ObjectStore, oi: oi})
		joined, err := l.joinS3(ctx, oi)
		switch {
		case joined:
			l.log.Info("s3: reading the object through the swarm (the supernode's seed fetches it from the store)")
			return l, nil
		case ctx.Err() != nil:
			p.s3.drop(l.id)
			return nil, fmt.Errorf("open %s: %w", u, ctx.Err())
		case errors.Is(err, wire.ErrUnreachable):
			reconnect = true
		default:
			l.log.WithError(err).Info("s3: the supernode does not share this object; reading it straight from the store")
		}
	}
	if err := l.openDirectRetrying(ctx, &oi, reconnect); err != nil {
		return nil, err
	}
	return l, nil
}

// openDirectRetrying opens the task for direct reads (oi: the s3 object,
// or nil) and, with reconnect, keeps trying to register it with the
// supernode; on failure it forgets the task's s3 source.
func (l *Lazy) openDirectRetrying(ctx context.Context, oi *objstore.ObjectInfo, reconnect bool) error {
	if err := l.openDirect(ctx, oi); err != nil {
		if l.s3 != nil {
			l.p.s3.drop(l.id)
		}
		return err
	}
	if reconnect {
		l.wg.Add(1)
		go l.reconnect()
	}
	return nil
}

// S3TaskID is the task ID of one version of an object: a sha256 of its
// objstore.Identity (and the tag, when there is one); see objstore.TaskID.
func S3TaskID(oi objstore.ObjectInfo, tag string) string {
	return objstore.TaskID(oi, tag)
}

// registerLazy registers for a lazily read task. The seed fetches only
// the pieces peers ask for while lazy is set; a registration without it
// (made when the background fetch starts) has it fill the whole task.
func (p *Peer) registerLazy(ctx context.Context, id string, req Request, lazy bool) (*wire.RegisterResponse, error) {
	presigned, err := p.s3Presigned(ctx, id)
	if err != nil {
		return nil, err
	}
	pack, err := p.s3Pack(ctx, id)
	if err != nil {
		return nil, err
	}
	reg, err := p.snc.Register(ctx, &wire.RegisterRequest{PeerID: p.id, Host: p.host, URL: req.URL,
		Header: req.Header, Tag: req.Tag, Filters: req.Filters, TaskID: id, Lazy: lazy,
		Digest: blobDigest(req.URL), S3Presigned: presigned, S3Pack: pack})
	if err != nil {
		var ae *wire.Error
		if errors.As(err, &ae) && ae.Code == wire.CodeOrigin {
			return nil, fmt.Errorf("open %s: %w", manifest.RedactURL(req.URL), ae)
		}
		return nil, err
	}
	if err := reg.Layout().Validate(); err != nil {
		return nil, fmt.Errorf("supernode sent a bad layout: %w", err)
	}
	return reg, nil
}

// start begins the lazy download loop for a registered task.
func (l *Lazy) start(ctx context.Context, reg *wire.RegisterResponse) error {
	var c counters
	d, err := l.p.newDownload(ctx, l.id, l.req, reg, &c, l.log)
	if err != nil {
		return err
	}
	l.mu.Lock()
	d.lazy, d.prefetch, d.prefetchHeld = true, l.opt.Prefetch, true
	d.prefetchLimit = ratelimit.New(l.opt.PrefetchLimit)
	if l.t == nil {
		l.t = d.t
		ht, release, _ := l.p.Lookup(l.id)
		l.t, l.done = ht, release
	}
	l.d = d
	dctx, stop := context.WithCancel(l.ctx)
	l.stopSwarm = stop
	l.mu.Unlock()
	l.wg.Add(2)
	go l.holdPrefetch(d)
	go func() {
		defer l.wg.Done()
		if _, err := d.run(dctx); err != nil && dctx.Err() == nil {
			l.log.WithError(err).Warn("lazy download stopped")
		}
	}()
	return nil
}

// holdPrefetch lets d's background fetch start once the first reads were
// served and none has waited for prefetchQuiet, or after PrefetchDelay at
// the latest: reads that a container's start blocks on go first.
func (l *Lazy) holdPrefetch(d *download) {
	defer l.wg.Done()
	deadline := time.Now().Add(l.opt.PrefetchDelay)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case now := <-tick.C:
			l.mu.Lock()
			quiet := l.served > 0 && now.Sub(l.lastRead) >= prefetchQuiet
			l.mu.Unlock()
			d.mu.Lock()
			reading := len(d.urgent) > 0
			d.mu.Unlock()
			if (quiet && !reading) || !now.Before(deadline) {
				d.mu.Lock()
				d.prefetchHeld = false
				on := d.prefetch
				d.mu.Unlock()
				d.poke()
				if on && l.p.snc != nil {
					// Now the seed may fill the whole task from the origin.
					if _, err := l.p.registerLazy(l.ctx, l.id, l.req, false); err != nil && l.ctx.Err() == nil {
						l.log.WithError(err).Debug("background fetch: registration for the seed's fill failed")
					}
				}
				return
			}
		}
	}
}

// SetPrefetch turns the background fetch of the whole content on or off
// (a layer marked .no.prefetch.landmark turns it off).
func (l *Lazy) SetPrefetch(on bool) {
	l.mu.Lock()
	l.opt.Prefetch = on
	d := l.d
	l.mu.Unlock()
	if d != nil {
		d.mu.Lock()
		d.prefetch = on
		d.mu.Unlock()
		d.poke()
	}
}

// reconnect retries registration while offline.
func (l *Lazy) reconnect() {
	defer l.wg.Done()
	for wait := time.Second; ; wait = min(2*wait, 15*time.Second) {
		select {
		case <-l.ctx.Done():
			return
		case <-time.After(wait):
		}
		if l.s3 != nil {
			joined, err := l.joinS3(l.ctx, l.s3.oi)
			switch {
			case joined:
				l.log.Info("supernode reachable; reading the object through the swarm")
				return
			case errors.Is(err, wire.ErrUnreachable):
				continue
			}
			if l.ctx.Err() == nil {
				l.log.WithError(err).Info("s3: the supernode does not share this object; reading it straight from the store")
			}
			return
		}
		reg, err := l.p.registerLazy(l.ctx, l.id, l.req, true)
		if err != nil {
			continue
		}
		if reg.Length != l.t.Meta().Length || reg.PieceSize != l.t.Meta().PieceSize {
			l.log.Error("content changed at the origin; cached copy kept as is, not mixing versions")
			return
		}
		if err := l.start(l.ctx, reg); err == nil {
			l.log.Info("supernode reachable; joined the swarm, no longer fetching straight from the origin")
		}
		return
	}
}

// Size is the content length.
func (l *Lazy) Size() int64 { return l.t.Meta().Length }

// TaskID is the task's ID.
func (l *Lazy) TaskID() string { return l.id }

// Task is the underlying store entry (for its data file and piece map).
func (l *Lazy) Task() *cache.Task { return l.t }

// Present is how many bytes are in the store.
func (l *Lazy) Present() int64 { return l.t.BytesPresent() }

// Complete reports whether every piece is present.
func (l *Lazy) Complete() bool { return l.t.Complete() }

// Ensure makes [off, off+n) present, asking for missing pieces at top
// priority and waiting for them until ctx ends.
func (l *Lazy) Ensure(ctx context.Context, off, n int64) error {
	if off < 0 || off >= l.Size() || n <= 0 {
		return nil
	}
	if off+n > l.Size() {
		n = l.Size() - off
	}
	if l.t.Complete() {
		return nil
	}
	first, last := l.t.Layout().PiecesIn(off, n)
	l.mu.Lock()
	d := l.d
	// Reads that go on from where the last ones ended make a sequential
	// reader, the streak growing with every piece they move into; a lone
	// random read never triggers readahead. Every read counts, also one
	// of pieces readahead already brought (else the next read that finds
	// a piece missing would look like a jump). A read may start in the
	// piece the last one ended in (reads need not be aligned to pieces)
	// or a little behind it (the kernel's concurrent readahead requests
	// arrive out of order).
	switch {
	case first >= l.lastPiece-readAheadPieces && first <= l.lastPiece+1:
		if last > l.lastPiece {
			l.streak++
			l.lastPiece = last
		}
	default:
		l.streak = 0
		l.lastPiece = last
	}
	sequential := l.streak >= l.opt.ReadAheadAfter
	window := readAheadMax
	if d == nil {
		window = directReadAheadMax
	}
	window = min(readAheadPieces<<min(l.streak/4, 10), window)
	from := l.lastPiece + 1
	l.mu.Unlock()
	if sequential {
		l.readAhead(d, from, window)
	}
	var missing []int
	for i := first; i <= last; i++ {
		if !l.t.Has(i) {
			missing = append(missing, i)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	l.want(d, missing, +1)
	defer l.want(d, missing, -1)
	for _, i := range missing {
		if err := l.wait(ctx, d, i); err != nil {
			return fmt.Errorf("wait for piece %d: %w", i, err)
		}
	}
	l.mu.Lock()
	l.served++
	l.lastRead = time.Now()
	l.mu.Unlock()
	return nil
}

// seedCheckInterval is how often a reader waiting for a piece checks that
// the seed has not given up on the task.
const seedCheckInterval = 250 * time.Millisecond

// wait waits for piece i until ctx ends, or fails as soon as the seed gave
// up on the task (an origin error, or content that failed its digest
// check: the seed then serves nothing more) and no parent can help.
func (l *Lazy) wait(ctx context.Context, d *download, i int) error {
	if d == nil {
		return l.waitDirect(ctx, i)
	}
	start := time.Now()
	// A read bounded by a deadline no later than the stall timeout (a
	// mount's read timeout) goes back to the store at half its time, so
	// that it still gets its bytes.
	stall := l.p.cfg.StallTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= stall {
		stall = time.Until(dl) / 2
	}
	for {
		wctx, cancel := context.WithTimeout(ctx, seedCheckInterval)
		err := l.t.Wait(wctx, i)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		if l.swarmStopped(d) {
			// Another read sent the task back to the store (s3swarm.go).
			l.want(nil, []int{i}, +1)
			defer l.want(nil, []int{i}, -1)
			return l.waitDirect(ctx, i)
		}
		ferr := d.seedFailure()
		if ferr == nil && l.s3 != nil && time.Since(start) >= stall && !d.gainedSince(start) {
			ferr = fmt.Errorf("no piece arrived through the swarm for %s", stall.Round(time.Millisecond))
		}
		if ferr == nil {
			continue
		}
		if l.fallbackS3(d, ferr) {
			l.want(nil, []int{i}, +1)
			defer l.want(nil, []int{i}, -1)
			return l.waitDirect(ctx, i)
		}
		return ferr
	}
}

// readAhead asks for the window pieces from from on that are neither
// present nor already asked for, and drops the request once each arrives
// (or after the read timeout).
func (l *Lazy) readAhead(d *download, from, window int) {
	var ra []int
	l.mu.Lock()
	if l.ahead == nil {
		l.ahead = map[int]bool{}
	}
	for i := from; i < from+window && i < l.t.NumPieces(); i++ {
		if !l.ahead[i] && !l.t.Has(i) {
			ra = append(ra, i)
		}
	}
	// Asked in batches of at least half the window (while the pieces
	// right ahead are on their way): adjacent pieces asked together go to
	// the origin as one ranged request in direct mode, instead of one
	// request per piece the reader moves on.
	if len(ra) > 0 && len(ra) < window/2 && ra[0] != from && ra[len(ra)-1] < l.t.NumPieces()-1 {
		ra = nil
	}
	for _, i := range ra {
		l.ahead[i] = true
	}
	l.mu.Unlock()
	if len(ra) == 0 {
		return
	}
	l.want(d, ra, +1)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		ctx, cancel := context.WithTimeout(l.ctx, l.opt.ReadTimeout)
		defer cancel()
		for _, i := range ra {
			l.t.Wait(ctx, i)
		}
		l.want(d, ra, -1)
		l.mu.Lock()
		for _, i := range ra {
			delete(l.ahead, i)
		}
		l.mu.Unlock()
	}()
}

// ReadAt reads through Ensure, within the read timeout; a timeout returns
// an error wrapping ErrReadTimeout.
func (l *Lazy) ReadAt(p []byte, off int64) (int, error) {
	ctx, cancel := context.WithTimeout(l.ctx, l.opt.ReadTimeout)
	defer cancel()
	return l.ReadAtContext(ctx, p, off)
}

// ReadAtContext is ReadAt bounded by ctx instead of the read timeout.
func (l *Lazy) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	size := l.Size()
	if off >= size {
		return 0, io.EOF
	}
	n := int64(len(p))
	if off+n > size {
		n = size - off
	}
	if err := l.Ensure(ctx, off, n); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return 0, fmt.Errorf("read %d bytes at %d: %w", n, off, ErrReadTimeout)
		}
		return 0, err
	}
	m, err := l.t.ReadAt(p[:n], off)
	if err == nil && int64(m) < int64(len(p)) {
		err = io.EOF
	}
	return m, err
}

// Close stops the background download and releases the task (it stays in
// the store).
func (l *Lazy) Close() error {
	l.cancel()
	l.wg.Wait()
	if l.s3 != nil {
		l.p.s3.drop(l.id)
	}
	if l.done != nil {
		l.done()
	}
	return nil
}

// want adds delta waiters to each piece and wakes the dispatcher.
func (d *download) want(pieces []int, delta int) {
	d.mu.Lock()
	for _, i := range pieces {
		if d.urgent[i] += delta; d.urgent[i] <= 0 {
			delete(d.urgent, i)
		}
	}
	d.mu.Unlock()
	d.poke()
}

// DataPath is the store's data file of the task (content at its offsets).
func (l *Lazy) DataPath() string { return l.t.DataPath() }

// Mode is how the task's missing pieces are fetched now: "p2p" through a
// supernode and the swarm, or "direct" straight from the origin.
func (l *Lazy) Mode() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.d != nil {
		return "p2p"
	}
	return "direct"
}

// want adds delta waiters to each piece: to the swarm download d, or, with
// none, to the direct fetcher.
func (l *Lazy) want(d *download, pieces []int, delta int) {
	if d != nil {
		d.want(pieces, delta)
		return
	}
	l.mu.Lock()
	dr := l.direct
	if dr != nil {
		for _, i := range pieces {
			if dr.want[i] += delta; dr.want[i] <= 0 {
				delete(dr.want, i)
			}
		}
	}
	l.mu.Unlock()
	if dr != nil {
		dr.poke()
	}
}

// direct is the state of fetching pieces straight from the origin (guarded
// by Lazy.mu): pieces reads wait for first, then readahead, then, with
// prefetch on, the rest in order.
type direct struct {
	src     *origin.Client
	obj     *objstore.Client     // for an s3 object, with oi
	oi      *objstore.ObjectInfo // the version being read
	rng     RangeSource          // LazyOptions.Range, when set
	opened  time.Time
	want    map[int]int
	flight  map[int]bool
	failed  map[int]error
	err     error        // the origin's last answer to a probe, nil once it answered
	info    *origin.Info // the origin's validators, nil until probed
	cursor  int          // prefetch scans on from here
	wake    chan struct{}
	limiter *ratelimit.Limiter
}

func (dr *direct) poke() {
	select {
	case dr.wake <- struct{}{}:
	default:
	}
}

// openDirect opens the task from the store, or, when it is not there,
// creates it from a probe of the origin, and starts fetching from the
// origin what reads ask for. oi, when not nil, is the s3 object read
// (already looked up).
func (l *Lazy) openDirect(ctx context.Context, oi *objstore.ObjectInfo) error {
	p := l.p
	src := p.src
	if l.req.Remote {
		src = p.guarded
	}
	dr := &direct{src: src, opened: time.Now(), want: map[int]int{}, flight: map[int]bool{},
		failed: map[int]error{}, wake: make(chan struct{}, 1), limiter: ratelimit.New(l.opt.PrefetchLimit)}
	if oi != nil {
		dr.obj, dr.oi = l.opt.ObjectStore, oi
		// Validators for the task's metadata; pieces come through dr.obj.
		dr.info = &origin.Info{Length: oi.Size, ETag: oi.ETag, AcceptRanges: true}
	}
	if l.opt.Range != nil {
		dr.rng = l.opt.Range
		dr.info = &origin.Info{Length: dr.rng.Size(), AcceptRanges: true}
	}
	t, err := p.store.Open(ctx, l.id)
	switch {
	case err == nil:
		p.hold(t)
		ht, release, _ := p.Lookup(l.id)
		l.t, l.done = ht, release
		if oi != nil || dr.rng != nil {
			l.log.WithField("present", t.Count()).Info("resuming the object from the stored pieces")
		} else {
			l.log.WithField("present", t.Count()).Warn("no supernode reachable; serving the stored pieces and fetching the rest straight from the origin")
		}
	case errors.Is(err, cache.ErrNotFound):
		info, err := origin.Info{}, error(nil)
		if dr.info != nil {
			info = *dr.info
		} else {
			info, err = src.Probe(ctx, l.req.URL, l.req.Header)
		}
		if err != nil {
			return fmt.Errorf("open %s: no supernode reachable, and the origin did not answer: %w", manifest.RedactURL(l.req.URL), err)
		}
		if info.Length < 0 {
			return fmt.Errorf("open %s: no supernode reachable, and the origin sent no Content-Length", manifest.RedactURL(l.req.URL))
		}
		lay := manifest.NewLayout(info.Length)
		t, release, err := p.openTaskFor(ctx, cache.Meta{TaskID: l.id, URL: manifest.RedactURL(l.req.URL), Length: lay.Length,
			PieceSize: lay.PieceSize, ETag: info.ETag, LastModified: info.LastModified})
		if err != nil {
			return fmt.Errorf("open %s: %w", manifest.RedactURL(l.req.URL), err)
		}
		if t.Layout() != lay {
			release()
			return fmt.Errorf("open %s: content changed at the origin (length %d, stored layout %+v)",
				manifest.RedactURL(l.req.URL), info.Length, t.Layout())
		}
		l.t, l.done = t, release
		if dr.oi != nil || dr.rng != nil {
			l.log.Info("reading the object straight from the store")
		} else {
			dr.info = &info
			l.log.Warn("no supernode reachable; fetching straight from the origin")
		}
	default:
		return fmt.Errorf("open %s: %w", manifest.RedactURL(l.req.URL), err)
	}
	l.mu.Lock()
	l.direct = dr
	l.mu.Unlock()
	if l.t.Complete() {
		return nil
	}
	l.wg.Add(1)
	go l.runDirect(dr)
	return nil
}

// directRetry is how long the direct fetcher waits before asking an origin
// that did not answer again.
const directRetry = 2 * time.Second

// runDirect dispatches piece fetches from the origin until the task is
// complete, the swarm takes over, or the task is closed.
func (l *Lazy) runDirect(dr *direct) {
	defer l.wg.Done()
	slots := max(l.p.cfg.Concurrency/2, 2)
	sem := make(chan struct{}, slots)
	var fetches sync.WaitGroup
	defer fetches.Wait()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if l.ctx.Err() != nil || l.t.Complete() {
			return
		}
		l.mu.Lock()
		joined := l.d != nil
		info := dr.info
		l.mu.Unlock()
		if joined {
			return
		}
		if info == nil && !l.probeDirect(dr) {
			select {
			case <-l.ctx.Done():
				return
			case <-time.After(directRetry):
			}
			continue
		}
		for {
			first, n, prefetch, ok := l.pickDirect(dr, len(sem) < slots-1)
			if !ok {
				break
			}
			select {
			case sem <- struct{}{}:
			case <-l.ctx.Done():
				return
			}
			fetches.Add(1)
			go func() {
				defer fetches.Done()
				defer func() { <-sem; dr.poke() }()
				l.fetchDirect(dr, first, n, prefetch)
			}()
		}
		select {
		case <-l.ctx.Done():
			return
		case <-dr.wake:
		case <-tick.C:
		}
	}
}

// probeDirect asks the origin for the validators of a task resumed from
// the store, and checks that the content did not change.
func (l *Lazy) probeDirect(dr *direct) bool {
	info, err := dr.src.Probe(l.ctx, l.req.URL, l.req.Header)
	if err == nil && info.Length != l.t.Meta().Length {
		err = fmt.Errorf("content changed at the origin (length %d, stored %d); the stored copy is kept as is, not mixing versions",
			info.Length, l.t.Meta().Length)
	}
	if m := l.t.Meta(); err == nil && m.ETag != "" && info.ETag != "" && m.ETag != info.ETag {
		err = fmt.Errorf("content changed at the origin (ETag %s, stored %s); the stored copy is kept as is, not mixing versions",
			info.ETag, m.ETag)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		if dr.err == nil {
			l.log.WithError(err).Warn("origin unreachable; only the stored pieces can be read")
		}
		dr.err = fmt.Errorf("fetch from the origin: %w", err)
		return false
	}
	dr.err, dr.info = nil, &info
	return true
}

// directRunPieces is the most pieces one direct fetch asks the origin for
// in one ranged request: adjacent pieces a sequential reader (or the
// prefetcher) wants go as one GET whose bytes are stored piece by piece as
// they arrive, instead of one request per piece.
const directRunPieces = 64

// pickDirect chooses the next run of pieces to fetch: pieces reads wait for
// first (the lowest, with the wanted pieces right after it), else, when
// prefetchOK and the background fetch may run, the next missing ones.
func (l *Lazy) pickDirect(dr *direct, prefetchOK bool) (first, n int, prefetch, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.d != nil {
		return 0, 0, false, false
	}
	free := func(i int) bool { return !dr.flight[i] && dr.failed[i] == nil && !l.t.Has(i) }
	// A range source (a pack) answers a range only once all of it is in,
	// so a run would hold its first piece back: its pieces go one by one.
	runMax := directRunPieces
	if dr.rng != nil {
		runMax = 1
	}
	best := -1
	for i := range dr.want {
		if free(i) && (best < 0 || i < best) {
			best = i
		}
	}
	if best >= 0 {
		n = 1
		for n < runMax && dr.want[best+n] > 0 && free(best+n) {
			n++
		}
		dr.claim(best, n)
		return best, n, false, true
	}
	// The background fetch yields to reads: it waits while reads keep
	// waiting for pieces (one did within prefetchQuiet), so that a random
	// reader's requests do not queue behind it at the origin, and starts
	// once they pause (or, before any read, after PrefetchDelay).
	now := time.Now()
	reading := l.served > 0 && now.Sub(l.lastRead) < prefetchQuiet
	quiet := l.served > 0 && !reading && len(dr.want) == 0
	if !prefetchOK || !l.opt.Prefetch || reading || !(quiet || now.Sub(dr.opened) >= l.opt.PrefetchDelay) {
		return 0, 0, false, false
	}
	last := l.t.NumPieces()
	for ; dr.cursor < last; dr.cursor++ {
		if first = dr.cursor; free(first) {
			n = 1
			for n < runMax && first+n < last && free(first+n) {
				n++
			}
			dr.claim(first, n)
			dr.cursor += n
			return first, n, true, true
		}
	}
	return 0, 0, false, false
}

// claim marks pieces [first, first+n) in flight (Lazy.mu held).
func (dr *direct) claim(first, n int) {
	for i := first; i < first+n; i++ {
		dr.flight[i] = true
	}
}

// fetchDirect fetches pieces [first, first+n) from the origin into the
// store, each stored (and its flight ended) as soon as its bytes are in:
// checked against its digest when the store knows it, hashed as it is
// stored otherwise (as the seed would). A failure is the failure of the
// piece it happened in; the pieces after it are left for another fetch.
func (l *Lazy) fetchDirect(dr *direct, first, n int, prefetch bool) {
	l.mu.Lock()
	info := *dr.info
	l.mu.Unlock()
	lims := limiters(l.p, l.req)
	if prefetch {
		lims = append(lims, dr.limiter)
	}
	lay := l.t.Layout()
	i := first
	store := func(data []byte, err error) bool {
		if err == nil {
			if sum, known := l.t.PieceDigest(i); known && !sum.IsZero() {
				err = l.t.WritePiece(i, data, sum)
			} else {
				_, err = l.t.PutPiece(i, data)
			}
		}
		l.mu.Lock()
		delete(dr.flight, i)
		if err != nil && l.ctx.Err() == nil {
			dr.failed[i] = fmt.Errorf("fetch piece %d from the origin: %w", i, err)
		}
		l.mu.Unlock()
		dr.poke()
		if err != nil {
			if l.ctx.Err() == nil {
				l.log.WithError(err).WithField("piece", i).Warn("direct fetch from the origin failed")
			}
			return false
		}
		i++
		return true
	}
	defer func() {
		// Pieces of the run not reached go back to the picker.
		l.mu.Lock()
		for j := i; j < first+n; j++ {
			delete(dr.flight, j)
		}
		l.mu.Unlock()
	}()
	switch {
	case dr.rng != nil || dr.oi != nil:
		body, err := l.openDirectRun(dr, lay, first, n, prefetch)
		if err != nil {
			store(nil, err)
			return
		}
		defer body.Close()
		// One buffer for the run: the store keeps no reference to it.
		buf := make([]byte, lay.PieceSize)
		for i < first+n {
			_, size := lay.PieceRange(i)
			data := buf[:size]
			err := readLimited(l.ctx, body, data, lims)
			if err != nil {
				err = fmt.Errorf("fetch piece %d: %w", i, err)
			}
			if !store(data, err) {
				return
			}
		}
	case n == 1:
		store(dr.src.FetchPiece(l.ctx, l.req.URL, l.req.Header, info, lay, i, origin.FillOptions{Limiters: lims}))
	default:
		// One ranged GET for the run, each piece stored as soon as its
		// bytes are in, through one reused piece buffer.
		off, size := lay.RunRange(first, n)
		errStored := errors.New("piece not stored")
		err := dr.src.StreamRange(l.ctx, l.req.URL, l.req.Header, info, off, size, make([]byte, lay.PieceSize),
			func(data []byte) error {
				if !store(data, nil) {
					return errStored
				}
				return nil
			}, origin.FillOptions{Limiters: lims})
		if err != nil && err != errStored {
			store(nil, err)
		}
	}
	if l.t.Complete() {
		if err := verifyContent(l.t, contentDigest(l.req)); err != nil {
			l.log.WithError(err).Error("content from the origin failed its digest check")
		}
	}
}

// openDirectRun opens one ranged read of pieces [first, first+n) of an s3
// object or a range source; a prefetch says so to a range source
// (objstore.WithBackground), which may then hold it behind reads.
func (l *Lazy) openDirectRun(dr *direct, lay manifest.Layout, first, n int, prefetch bool) (io.ReadCloser, error) {
	off, size := lay.RunRange(first, n)
	var body io.ReadCloser
	var err error
	if dr.rng != nil {
		ctx := l.ctx
		if prefetch {
			ctx = objstore.WithBackground(ctx)
		}
		body, err = dr.rng.GetRange(ctx, off, size)
	} else {
		body, err = dr.obj.GetRange(l.ctx, *dr.oi, off, size)
	}
	if err != nil {
		return nil, fmt.Errorf("fetch pieces %d-%d: %w", first, first+n-1, err)
	}
	return body, nil
}

// waitDirect waits for piece i while no swarm download runs: it fails as
// soon as fetching the piece from the origin failed (the failure is then
// forgotten, so the next read tries again) or the origin does not answer,
// and hands the wait over to the swarm download when one starts.
func (l *Lazy) waitDirect(ctx context.Context, i int) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, seedCheckInterval)
		err := l.t.Wait(wctx, i)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		l.mu.Lock()
		d, dr := l.d, l.direct
		var ferr error
		if dr != nil && d == nil {
			if ferr = dr.failed[i]; ferr != nil {
				delete(dr.failed, i)
			} else if dr.info == nil {
				ferr = dr.err
			}
		}
		l.mu.Unlock()
		if d != nil {
			d.want([]int{i}, +1)
			defer d.want([]int{i}, -1)
			return l.wait(ctx, d, i)
		}
		if ferr != nil {
			return ferr
		}
	}
}
