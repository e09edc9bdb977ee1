package p2p

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/cache"
	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/p2p/upload"
	"github.com/damselfly-p2p/damselfly/wire"
)

// parentStrikes failed requests make a child drop a parent.
const parentStrikes = 2

// errCredentialRefused is a parent's 401 to our task credential.
var errCredentialRefused = errors.New("parent refused the task credential")

// parent is one source of pieces for a download: a peer the supernode
// suggested (or the seed named as a holder), or the supernode's seed. Its
// states, as the child sees them:
//
//	usable --(503)--> busy (until busyUntil) --> usable
//	usable --(parentStrikes failures | one corrupt piece)--> dropped (final)
//
// The seed is never dropped: it backs off (busy for a second) instead.
// bitmap and count are the parent's piece map as last polled (see watch);
// relaying and relayCount the pieces it was fetching then, which it serves
// as they arrive (cut-through relay), and relayGen the generation of that
// set; inflight counts this child's requests to it.
type parent struct {
	id, addr   string
	seed       bool
	bitmap     manifest.Bitmap
	count      int
	relaying   manifest.Bitmap
	relayCount int
	relayGen   uint64
	inflight   int
	failures   int
	dropped    bool
	busyUntil  time.Time
}

// has reports whether par holds piece i or is fetching it (relays it).
func (par *parent) has(i int) bool { return par.bitmap.Has(i) || par.relaying.Has(i) }

// offers reports whether par has or relays any piece.
func (par *parent) offers() bool { return par.count > 0 || par.relayCount > 0 }

// clearRelaying forgets that par relays piece i (it answered 404).
func (par *parent) clearRelaying(i int) {
	if par.relaying.Has(i) {
		par.relaying.Clear(i)
		par.relayCount--
	}
}

// reasonFor is the wire.ParentReport reason for a failed piece request.
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

// isRefused reports whether err says nothing listens at the parent's address
// (its process is gone): unlike a timeout, retrying will not help.
func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH)
}

// holderIDs are the peer IDs of holders named by the seed.
func holderIDs(hs []wire.Parent) []string {
	ids := make([]string, 0, len(hs))
	for _, h := range hs {
		ids = append(ids, h.PeerID)
	}
	return ids
}

// allDroppedLocked reports whether ids name at least one parent other than
// this peer and every such parent is dropped. Caller holds d.mu.
func (d *download) allDroppedLocked(ids []string) bool {
	named := false
	for _, id := range ids {
		if id == d.p.id {
			continue
		}
		par := d.parents[id]
		if par == nil || !par.dropped {
			return false
		}
		named = true
	}
	return named
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
		par.busyUntil = d.policy.now().Add(time.Second)
		return
	}
	if par.dropped {
		return
	}
	par.dropped = true
	d.bad = append(d.bad, wire.ParentReport{PeerID: par.id, Reason: reason})
	d.newsLocked()
	d.log.WithFields(logrus.Fields{"parent": par.id, "reason": reason}).Info("dropped parent")
	// Pieces the seed sent us to get from holders that are all gone now:
	// ask the seed again at once.
	for i, ids := range d.heldBy {
		if d.allDroppedLocked(ids) {
			delete(d.heldBy, i)
			delete(d.deferred, i)
			d.bypass[i] = true
			d.poke()
		}
	}
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
				// Another supernode's seed (a failover): it holds
				// other pieces; its map is learnt afresh.
				old.addr = ap.Addr
				old.bitmap, old.count = manifest.NewBitmap(d.layout.NumPieces()), 0
				old.relaying, old.relayCount = nil, 0
				d.markSeedLocked(old)
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
			d.mu.Lock()
			gen := par.relayGen
			d.mu.Unlock()
			bm, err := d.fetchBitmap(ctx, par, have, gen, !par.seed)
			if errors.Is(err, errCredentialRefused) {
				continue
			}
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				if isRefused(err) && !par.seed {
					// The parent's process is gone: drop it at once.
					d.mu.Lock()
					d.drop(par, wire.ReasonUnreachable)
					d.mu.Unlock()
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
				par.relaying, par.relayCount, par.relayGen = nil, 0, bm.RelayGen
				if len(bm.Relaying) == len(par.bitmap) {
					par.relaying, par.relayCount = bm.Relaying, bm.Relaying.Count()
				}
			}
			have = par.count
			if par.seed {
				d.markSeedLocked(par)
			}
			d.mu.Unlock()
			d.poke()
		}
	}()
}

// fetchBitmap long-polls par for its piece map once it holds more than have
// pieces or, with follow, the set of pieces it relays moved past generation
// gen (a parent without the task yet counts as holding none). The seed's
// set (the pieces it is fetching) is not followed: it changes twice per
// piece, and every child would poll on each change; the pieces it is
// fetching come with each answer to a stored piece instead.
func (d *download) fetchBitmap(ctx context.Context, par *parent, have int, gen uint64, follow bool) (*upload.BitmapResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	url := fmt.Sprintf("%s://%s/peer/tasks/%s/bitmap?have=%d&wait=5s", d.p.scheme, par.addr, d.id, have)
	if follow {
		url += fmt.Sprintf("&gen=%d", gen)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	d.cred.authorize(req)
	resp, err := d.p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized {
		// Our credential expired (or is not issued yet): ask for a new one
		// at the next sync and poll again later; this is not the parent's
		// fault.
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		d.cred.refusedBy()
		sleepCtx(ctx, 500*time.Millisecond)
		return nil, errCredentialRefused
	}
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

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
