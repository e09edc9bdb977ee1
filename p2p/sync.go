package p2p

import (
	"context"
	"errors"
	"time"

	"github.com/damselfly-p2p/damselfly/cache"
	"github.com/damselfly-p2p/damselfly/wire"
)

// How often a download syncs with the supernode: at most every
// syncInterval while it has news (batching what arrives meanwhile), every
// idleSync otherwise. Between syncs the loop sleeps until news arrives
// (syncNews) or idleSync passes, rather than waking on a ticker.
const (
	syncInterval = 250 * time.Millisecond
	idleSync     = 2 * time.Second
)

// newsLocked wakes the sync loop: a piece was stored or a parent is to be
// reported. Caller holds d.mu.
func (d *download) newsLocked() {
	select {
	case d.syncNews <- struct{}{}:
	default:
	}
}

// syncLoop reports finished pieces and failing parents to the supernode in
// batches, learns new piece digests and asks for more parents when the ones
// it has cannot help. If the supernode forgot the peer (it restarted), the
// peer registers again and re-reports everything it holds. While no
// supernode answers, the download goes on with the parents it knows.
func (d *download) syncLoop(ctx context.Context) {
	timer := time.NewTimer(syncInterval)
	defer timer.Stop()
	last := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-d.syncNews:
			// Let the news of the next moments join this sync.
			if wait := syncInterval - time.Since(last); wait > 0 {
				sleepCtx(ctx, wait)
			}
		}
		if d.t.Complete() {
			return
		}
		if d.syncPending() || time.Since(last) >= idleSync {
			last = time.Now()
			d.syncOnce(ctx, false)
		}
		next := idleSync - time.Since(last)
		if d.syncPending() {
			next = syncInterval
		}
		timer.Reset(max(next, time.Millisecond))
	}
}

// syncPending reports whether the supernode has news to hear or digests to
// tell.
func (d *download) syncPending() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.unsynced) > 0 || len(d.bad) > 0 || d.known < d.layout.NumPieces()
}

// syncOnce sends one SyncRequest. Reports are put back when it fails.
// When the supernode forgot the peer, the peer registers again and syncs
// at once, re-reporting every piece it holds: the new owner then knows
// where pieces are before children ask its seed for them.
func (d *download) syncOnce(ctx context.Context, done bool) {
	if d.syncOnceOrRegister(ctx, done) {
		d.syncOnceOrRegister(ctx, done)
	}
}

// syncOnceOrRegister is syncOnce without the sync that follows a
// registration; it returns true when it registered again.
func (d *download) syncOnceOrRegister(ctx context.Context, done bool) bool {
	d.mu.Lock()
	req := wire.SyncRequest{PeerID: d.p.id, TaskID: d.id, Finished: d.unsynced, KnownDigests: d.known,
		BadParents: d.bad, Done: done, WantParents: !done && d.wantParents(),
		BytesFromPeers: d.c.fromPeers.Load(), BytesFromSeed: d.c.fromSeed.Load(),
		RefreshTaskCredential: !done && d.cred.wantRefresh()}
	d.unsynced, d.bad = nil, nil
	d.mu.Unlock()

	resp, err := d.p.snc.Sync(ctx, &req)
	if err != nil {
		d.mu.Lock()
		d.unsynced = append(req.Finished, d.unsynced...)
		d.bad = append(req.BadParents, d.bad...)
		d.mu.Unlock()
		if wire.IsCode(err, wire.CodeUnknownPeer) || wire.IsCode(err, wire.CodeUnknownTask) {
			d.log.Info("supernode forgot this peer (restarted?); registering again")
			return d.registerAgain(ctx)
		} else if ctx.Err() == nil {
			d.log.WithError(err).Debug("sync with supernode failed; carrying on with known parents")
		}
		return false
	}
	d.cred.set(resp.TaskCredential)
	d.mu.Lock()
	d.applyDigests(resp.Digests)
	d.keepSealedLocked(resp.Digests, resp.Seal, nil)
	d.seedDone = resp.SeedDone
	d.seedErr = resp.SeedError
	d.mu.Unlock()
	d.adopt(d.addParents(resp.Parents))
	d.poke()
	return false
}

// registerAgain re-registers after a supernode restart or a failover
// (presenting the last sealed digest list, sealed.go) and queues every
// present piece for the next sync. It returns whether it registered.
func (d *download) registerAgain(ctx context.Context) bool {
	reg, err := d.p.registerSealed(ctx, d.id, d.req, d.sealedToPresent())
	if err != nil {
		d.log.WithError(err).Warn("register again")
		return false
	}
	if reg.Length != d.layout.Length || reg.PieceSize != d.layout.PieceSize {
		d.mu.Lock()
		d.storeErr = errors.New("content changed at the origin during the download")
		d.mu.Unlock()
		return false
	}
	d.cred.set(reg.TaskCredential)
	d.mu.Lock()
	d.applyDigests(reg.Digests)
	d.keepSealedLocked(reg.Digests, reg.Seal, reg)
	d.unsynced = d.unsynced[:0]
	for i := 0; i < d.layout.NumPieces(); i++ {
		if d.t.Has(i) {
			d.unsynced = append(d.unsynced, i)
		}
	}
	d.mu.Unlock()
	d.adopt(d.addParents(reg.Parents))
	return true
}

// adopt starts watching newly added parents.
func (d *download) adopt(added []*parent) {
	if len(added) == 0 || d.ctx == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, par := range added {
		d.watch(d.ctx, d.wg, par)
	}
}

// wantParents is true when fewer than two peer parents are usable or when
// missing pieces are known to nobody we know but the seed. Caller holds d.mu.
func (d *download) wantParents() bool {
	usable := 0
	for _, par := range d.parents {
		if !par.seed && !par.dropped {
			usable++
		}
	}
	return usable < 4
}

// applyDigests merges digests from the supernode. Caller holds d.mu (or
// owns d exclusively).
func (d *download) applyDigests(ds []string) {
	for i, s := range ds {
		if i >= len(d.digests) || s == "" || !d.digests[i].IsZero() {
			continue
		}
		if sum, err := cache.ParseSum(s); err == nil {
			d.digests[i] = sum
			d.known++
		}
	}
	if seed := d.seedParent(); seed != nil {
		d.markSeedLocked(seed)
	}
}

// markSeedLocked marks in the seed's piece map every piece whose digest
// is known: the seed serves those, holding them or (after a failover,
// for digests it vouches for without holding the pieces) fetching them
// on demand or naming the peers that hold them. Caller holds d.mu.
func (d *download) markSeedLocked(seed *parent) {
	for i, sum := range d.digests {
		if !sum.IsZero() && !seed.bitmap.Has(i) {
			seed.bitmap.Set(i)
			seed.count++
		}
	}
}

func (d *download) seedParent() *parent {
	for _, par := range d.parents {
		if par.seed {
			return par
		}
	}
	return nil
}

// knownDigests returns a copy of the digests known so far.
func (d *download) knownDigests() []cache.Sum {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]cache.Sum(nil), d.digests...)
}

// finalSync tells the supernode the peer is done (best effort).
func (d *download) finalSync(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	d.syncOnce(ctx, true)
}
