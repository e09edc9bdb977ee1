package p2p

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/damselfly-p2p/damselfly/cache"
	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/wire"
)

// contentDigest is the whole-content digest a request names: --digest, else
// the digest of an OCI blob URL ("" when neither). Such content is checked
// whole once complete on every peer.
func contentDigest(req Request) string {
	if req.Digest != "" {
		return strings.ToLower(req.Digest)
	}
	return blobDigest(req.URL)
}

// verifyContent checks the complete task t against want once: a task whose
// meta already records want as its digest was checked before. It returns a
// *manifest.DigestMismatchError (wrapped) when the bytes do not match.
func verifyContent(t *cache.Task, want string) error {
	if want == "" || t.Meta().Digest == want {
		return nil
	}
	if err := checkWhole(t, want, ""); err != nil {
		return err
	}
	// Only a marker that spares a rerun the read: not fatal when lost.
	_ = t.SetDigest(want)
	return nil
}

// isMismatch reports whether err says the content does not match its digest.
func isMismatch(err error) bool {
	var dm *manifest.DigestMismatchError
	return errors.As(err, &dm)
}

// purge drops every stored piece of t, so that the peer neither serves nor
// outputs content that failed its digest check. dropTask then removes the
// emptied task once no download uses it.
func (p *Peer) purge(t *cache.Task) {
	meta := t.Meta()
	meta.Digest = ""
	if err := t.Reset(meta); err != nil {
		p.log.WithError(err).WithField("task", t.ID()).Error("purge pieces that failed the digest check")
	}
	p.upload.Forget(t.ID())
}

// dropTask stops holding taskID and removes it from the store, unless a
// download still uses it (best effort: a task in use stays, emptied by
// purge).
func (p *Peer) dropTask(taskID string) {
	p.mu.Lock()
	ot := p.open[taskID]
	if ot != nil {
		if ot.active > 0 {
			p.mu.Unlock()
			return
		}
		delete(p.open, taskID)
		p.relays.Forget(taskID)
		ot.t.Close()
	}
	p.mu.Unlock()
	if err := p.store.Remove(taskID); err != nil && !errors.Is(err, cache.ErrNotFound) {
		p.log.WithError(err).WithField("task", taskID).Warn("remove the purged task from the store")
	}
}

// CheckStore re-hashes the task's stored pieces that the data file may no
// longer hold as recorded (see cache.Task.CheckPieces) and drops the rotten
// ones, so that the download loop fetches them again. It reports whether
// any was dropped. Call it before deciding that the task is complete.
func (d *download) CheckStore() (bool, error) {
	bad, err := d.t.CheckPieces()
	if err != nil {
		return false, fmt.Errorf("download %s: check the stored pieces: %w", manifest.RedactURL(d.req.URL), err)
	}
	if len(bad) > 0 {
		d.log.WithField("pieces", bad).Error("stored pieces rotted on disk (their bytes no longer match their digests); fetching them again")
	}
	return len(bad) > 0, nil
}

// verify checks the finished download: pieces that rotted on disk are
// fetched again (from the origin, checked against the published digests:
// the P2P loop is over by now), then the content is checked against the
// digest it names. On a mismatch it purges the pieces, reports every parent
// that served some of them as corrupt and fails.
func (d *download) verify(ctx context.Context) error {
	rotten, err := d.CheckStore()
	if err != nil {
		return err
	}
	if rotten {
		if d.req.NoSource {
			return fmt.Errorf("download %s: stored pieces were corrupt: %w", manifest.RedactURL(d.req.URL), ErrNoSource)
		}
		if _, err := d.p.backToSource(ctx, d.id, d.req, d.c, d.knownDigests()); err != nil {
			return fmt.Errorf("fetch again the pieces that rotted on disk: %w", err)
		}
	}
	err = verifyContent(d.t, contentDigest(d.req))
	if err == nil {
		return nil
	}
	if !isMismatch(err) {
		return fmt.Errorf("download %s: %w", manifest.RedactURL(d.req.URL), err)
	}
	d.mu.Lock()
	var culprits []string
	for id := range d.servedBy {
		d.bad = append(d.bad, wire.ParentReport{PeerID: id, Reason: wire.ReasonCorrupt})
		culprits = append(culprits, id)
	}
	d.unsynced = nil
	d.mu.Unlock()
	d.log.WithError(err).WithField("parents", culprits).Error("downloaded content failed its digest check; dropping it")
	d.p.purge(d.t)
	if d.p.snc != nil && len(culprits) > 0 {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
		d.syncOnce(rctx, false)
		cancel()
	}
	return fmt.Errorf("download %s: %w", manifest.RedactURL(d.req.URL), err)
}
