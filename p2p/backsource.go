package p2p

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/cache"
	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/origin"
)

// backToSource fetches the task's missing pieces straight from the origin.
// Pieces whose digest the supernode published (known) are checked against
// it; the rest are hashed as they arrive, as the seed would.
func (p *Peer) backToSource(ctx context.Context, taskID string, req Request, c *counters, known []cache.Sum) (*Result, error) {
	src := p.src
	if req.Remote {
		src = p.guarded
	}
	info, err := src.Probe(ctx, req.URL, req.Header)
	if err != nil {
		return nil, fmt.Errorf("download %s from the origin: %w", manifest.RedactURL(req.URL), err)
	}
	if info.Length < 0 {
		return nil, fmt.Errorf("download %s from the origin: no Content-Length in the answer", manifest.RedactURL(req.URL))
	}
	l := manifest.NewLayout(info.Length)
	t, release, err := p.openTaskFor(ctx, cache.Meta{TaskID: taskID, URL: manifest.RedactURL(req.URL), Length: l.Length,
		PieceSize: l.PieceSize, ETag: info.ETag, LastModified: info.LastModified})
	if err != nil {
		return nil, err
	}
	defer release()
	if t.Layout() != l {
		// The task was created from a supernode's layout that no longer matches the origin.
		return nil, fmt.Errorf("download %s from the origin: content changed (length %d, cached layout %+v)",
			manifest.RedactURL(req.URL), info.Length, t.Layout())
	}
	// Pieces that rotted on disk are dropped here, to be fetched again.
	if bad, err := t.CheckPieces(); err != nil {
		return nil, fmt.Errorf("download %s from the origin: check the stored pieces: %w", manifest.RedactURL(req.URL), err)
	} else if len(bad) > 0 {
		p.log.WithFields(logrus.Fields{"task": taskID, "pieces": bad}).
			Error("stored pieces rotted on disk (their bytes no longer match their digests); fetching them again")
	}
	if c.reused.Load() == 0 {
		c.reused.Store(t.BytesPresent())
	}
	if len(known) != l.NumPieces() {
		known = nil
	}
	err = src.Fill(ctx, req.URL, req.Header, info, verifyingSink{t: t, known: known}, origin.FillOptions{
		Concurrency: p.cfg.Concurrency,
		// The download's own --limit and the host's --totallimit, as for
		// bytes from peers.
		Limiters: limiters(p, req),
		OnBytes:  func(n int) { c.fromOrigin.Add(int64(n)) },
	})
	if errors.Is(err, syscall.ENOSPC) {
		return nil, fmt.Errorf("download %s from the origin: %w: %w", manifest.RedactURL(req.URL), ErrStoreFull, err)
	}
	if err != nil {
		return nil, fmt.Errorf("download %s from the origin: %w", manifest.RedactURL(req.URL), err)
	}
	if err := verifyContent(t, contentDigest(req)); err != nil {
		if isMismatch(err) {
			p.log.WithError(err).WithField("task", taskID).Error("content from the origin failed its digest check; dropping it")
			p.purge(t)
		}
		return nil, fmt.Errorf("download %s from the origin: %w", manifest.RedactURL(req.URL), err)
	}
	if req.Progress != nil {
		req.Progress(l.Length, l.Length)
	}
	return c.result(taskID, l.Length, true), nil
}

// verifyingSink stores pieces from the origin, checking them against digests
// the supernode published when there are any.
type verifyingSink struct {
	t     *cache.Task
	known []cache.Sum
}

func (s verifyingSink) Layout() manifest.Layout { return s.t.Layout() }
func (s verifyingSink) Has(i int) bool          { return s.t.Has(i) }
func (s verifyingSink) PutPiece(i int, data []byte) error {
	if s.known != nil && !s.known[i].IsZero() {
		return s.t.WritePiece(i, data, s.known[i])
	}
	_, err := s.t.PutPiece(i, data)
	return err
}
