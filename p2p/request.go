package p2p

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/cache"
	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/p2p/ratelimit"
	"github.com/damselfly-p2p/damselfly/wire"
)

// Request is one download.
type Request struct {
	URL string
	// Header goes to the origin (through the supernode's seed, or directly
	// when going back to source) and nowhere else.
	Header  http.Header
	Tag     string
	Filters []string
	// Digest ("sha256:<hex>") and MD5 (hex) check the whole file.
	Digest string
	MD5    string
	// Output, when set, receives the file atomically.
	Output string
	// MoveOutput hands the store's finished copy to Output instead of
	// copying it (the task then leaves the store): a one-shot download
	// writes every byte once and keeps one copy on disk. It falls back to a
	// copy when the store and Output are on different file systems, or
	// when the task is in use (being served or downloaded by others).
	MoveOutput bool
	// Limit caps this download's bytes/s (0: only the host-wide cap).
	Limit int64
	// NoSource forbids going to the origin directly.
	NoSource bool
	// Remote marks a URL a remote party named (a dataset manifest's
	// entry) rather than the local user: going to the origin directly then
	// dials only where Config.Egress allows. (The supernode's seed applies
	// its own policy.)
	Remote bool
	// Progress, if set, is called as pieces arrive.
	Progress func(done, total int64)
}

// Result describes a finished download.
type Result struct {
	TaskID string
	Length int64
	// Reused is what was already in the local store; the rest came from
	// other peers, from the supernode's seed, or from the origin directly.
	Reused, FromPeers, FromSeed, FromOrigin int64
	Elapsed                                 time.Duration
	// BackToSource is set when the origin was used directly.
	BackToSource bool
}

// ErrNoSource is returned when P2P fails and going to the origin is not allowed.
var ErrNoSource = errors.New("P2P download failed and going to the origin is not allowed (--no-source)")

// counters tracks where a download's bytes came from.
type counters struct {
	reused, fromPeers, fromSeed, fromOrigin atomic.Int64
}

// Download fetches req.URL into the store (joining a download of the same
// task already running in this peer), checks the whole-file digests, and
// writes req.Output atomically.
func (p *Peer) Download(ctx context.Context, req Request) (*Result, error) {
	start := time.Now()
	if _, err := manifest.ParseURL(req.URL); err != nil {
		return nil, err
	}
	if req.Digest != "" {
		if _, err := cache.ParseSum(req.Digest); err != nil {
			return nil, fmt.Errorf("--digest: %w", err)
		}
	}
	taskID, err := manifest.TaskID(req.URL, req.Tag, req.Filters)
	if err != nil {
		return nil, err
	}
	var c counters
	v, err, shared := p.flights.Do(taskID, func() (any, error) {
		res, err := p.fetchTask(ctx, taskID, req, &c)
		if isMismatch(err) {
			p.dropTask(taskID)
		}
		return res, err
	})
	if err != nil {
		return nil, err
	}
	res := v.(*Result)
	if shared {
		// Another request of this peer did the work.
		res = &Result{TaskID: res.TaskID, Length: res.Length, Reused: res.Length}
	}
	t, release, ok := p.Lookup(taskID)
	if !ok {
		return nil, fmt.Errorf("task %s vanished from the store", taskID)
	}
	defer release()
	if err := verifyContent(t, contentDigest(req)); err != nil {
		if isMismatch(err) {
			p.purge(t)
			p.dropTask(taskID)
		}
		return nil, fmt.Errorf("download %s: %w", manifest.RedactURL(req.URL), err)
	}
	if err := checkWhole(t, "", req.MD5); err != nil {
		return nil, err
	}
	if req.Output != "" {
		moved := req.MoveOutput && p.exportOutput(taskID, req.Output)
		if !moved {
			if err := writeOutput(t, req.Output); err != nil {
				return nil, err
			}
		}
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// fetchTask makes the store hold the whole task, through P2P when a
// supernode answers, otherwise from the origin.
func (p *Peer) fetchTask(ctx context.Context, taskID string, req Request, c *counters) (*Result, error) {
	log := p.log.WithFields(logrus.Fields{"task": taskID[:12], "url": manifest.RedactURL(req.URL)})
	if p.snc == nil {
		if req.NoSource {
			return nil, fmt.Errorf("no supernode configured: %w", ErrNoSource)
		}
		log.Info("no supernode configured; downloading from the origin")
		return p.backToSource(ctx, taskID, req, c, nil)
	}
	reg, err := p.register(ctx, taskID, req)
	if err != nil {
		if errors.Is(err, wire.ErrUnreachable) {
			if req.NoSource {
				return nil, fmt.Errorf("%v: %w", err, ErrNoSource)
			}
			log.WithError(err).Warn("no supernode reachable; downloading straight from the origin")
			return p.backToSource(ctx, taskID, req, c, nil)
		}
		return nil, err
	}
	d, err := p.newDownload(ctx, taskID, req, reg, c, log)
	if err != nil {
		return nil, err
	}
	return d.run(ctx)
}

func (p *Peer) register(ctx context.Context, taskID string, req Request) (*wire.RegisterResponse, error) {
	return p.registerSealed(ctx, taskID, req, nil)
}

// registerSealed registers, presenting sealed (when not nil): the last
// sealed digest list the peer got for the task (sealed.go). An s3 object
// (or a pack of them) read lazily registers again (after a supernode
// restart or a failover) with fresh presigned URLs.
func (p *Peer) registerSealed(ctx context.Context, taskID string, req Request, sealed *wire.SealedDigests) (*wire.RegisterResponse, error) {
	presigned, err := p.s3Presigned(ctx, taskID)
	if err != nil {
		return nil, err
	}
	pack, err := p.s3Pack(ctx, taskID)
	if err != nil {
		return nil, err
	}
	reg, err := p.snc.Register(ctx, &wire.RegisterRequest{PeerID: p.id, Host: p.host, URL: req.URL,
		Header: req.Header, Tag: req.Tag, Filters: req.Filters, TaskID: taskID, Digest: blobDigest(req.URL),
		Sealed: sealed, S3Presigned: presigned, S3Pack: pack})
	if err != nil {
		var ae *wire.Error
		if errors.As(err, &ae) && ae.Code == wire.CodeOrigin {
			return nil, fmt.Errorf("download %s: %w", manifest.RedactURL(req.URL), ae)
		}
		return nil, fmt.Errorf("register with supernode: %w", err)
	}
	if err := reg.Layout().Validate(); err != nil {
		return nil, fmt.Errorf("supernode sent a bad layout: %w", err)
	}
	if len(reg.Digests) != reg.Layout().NumPieces() {
		return nil, fmt.Errorf("supernode sent %d digests for %d pieces", len(reg.Digests), reg.Layout().NumPieces())
	}
	return reg, nil
}

// result is the Result of a finished download with these counts.
func (c *counters) result(taskID string, length int64, backToSource bool) *Result {
	return &Result{TaskID: taskID, Length: length, Reused: c.reused.Load(), FromPeers: c.fromPeers.Load(),
		FromSeed: c.fromSeed.Load(), FromOrigin: c.fromOrigin.Load(), BackToSource: backToSource}
}

// blobDigest is the digest of an OCI blob URL ("" otherwise): the seed
// then checks the whole blob against it.
func blobDigest(rawURL string) string {
	if d, ok := manifest.BlobDigest(rawURL); ok {
		return d.String()
	}
	return ""
}

// limiters are the rate limits of one download: its own, then the host's.
func limiters(p *Peer, req Request) []*ratelimit.Limiter {
	return []*ratelimit.Limiter{ratelimit.New(req.Limit), p.dlLimit}
}
