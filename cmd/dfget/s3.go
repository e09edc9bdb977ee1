package main

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/damselfly-p2p/damselfly/cmd/internal/peerflags"
	"github.com/damselfly-p2p/damselfly/p2p"
)

// ensurer makes a range of lazily opened content present (p2p.Lazy).
type ensurer interface {
	Ensure(ctx context.Context, off, n int64) error
}

// downloadS3 fetches one object of an S3-compatible store through the
// embedded peer's store: with a supernode that takes s3 objects, through
// the swarm (the seed fetches it with a presigned URL this process signs);
// otherwise its pieces are read with ranged GETs pinned to the object's
// version (its ETag). Pieces are hashed and kept in --data-dir so that a
// rerun resumes, and FILE appears only once complete (and matching
// --digest/--md5).
func downloadS3(ctx context.Context, o *options, src *peerflags.Source, req p2p.Request) (*p2p.Result, error) {
	if src.Peer() == nil {
		return nil, errors.New("s3:// URLs are read by an embedded peer, not through dfdaemon")
	}
	store, err := o.s3.Client(ctx)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	c, closeFn, err := src.OpenLazy(ctx, req, p2p.LazyOptions{ObjectStore: store})
	if err != nil {
		return nil, err
	}
	defer closeFn()
	e, ok := c.(ensurer)
	if !ok {
		return nil, fmt.Errorf("download %s: the content cannot be fetched as a whole", req.URL)
	}
	size, reused := c.Size(), c.Present()
	if req.Progress != nil {
		pctx, stop := context.WithCancel(ctx)
		defer stop()
		go func() {
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for {
				req.Progress(c.Present(), size)
				select {
				case <-pctx.Done():
					return
				case <-tick.C:
				}
			}
		}()
	}
	if err := e.Ensure(ctx, 0, size); err != nil {
		return nil, fmt.Errorf("download %s: %w", req.URL, err)
	}
	if err := copyVerified(c.DataPath(), req.Output, size, req.Digest, req.MD5); err != nil {
		return nil, fmt.Errorf("download %s: %w", req.URL, err)
	}
	res := &p2p.Result{Length: size, Reused: reused, Elapsed: time.Since(start)}
	if s, ok := c.(swarmSources); ok {
		res.FromPeers, res.FromSeed = s.Sources()
	}
	// What neither the swarm nor the data dir gave came from the store.
	res.FromOrigin = max(size-reused-res.FromPeers-res.FromSeed, 0)
	res.BackToSource = res.FromOrigin > 0
	return res, nil
}

// swarmSources tells how many bytes came through the swarm (p2p.Lazy).
type swarmSources interface {
	Sources() (peers, seed int64)
}

// copyVerified copies the first size bytes of from to a temporary file
// beside to, checks the whole-file digests when given, and renames it to to.
func copyVerified(from, to string, size int64, wantSHA, wantMD5 string) (err error) {
	in, err := os.Open(from)
	if err != nil {
		return fmt.Errorf("open the stored copy: %w", err)
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(to), "."+filepath.Base(to)+".dfget-*")
	if err != nil {
		return fmt.Errorf("create the output: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	sh, mh := sha256.New(), md5.New()
	if _, err := io.Copy(io.MultiWriter(tmp, sh, mh), io.LimitReader(in, size)); err != nil {
		return fmt.Errorf("write the output: %w", err)
	}
	if err := checkSum(sh, "sha256", strings.TrimPrefix(wantSHA, "sha256:")); err != nil {
		return err
	}
	if err := checkSum(mh, "md5", wantMD5); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write the output: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write the output: %w", err)
	}
	if err := os.Rename(tmp.Name(), to); err != nil {
		return fmt.Errorf("move the output in place: %w", err)
	}
	return nil
}

func checkSum(h hash.Hash, name, want string) error {
	if want == "" {
		return nil
	}
	if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, want) {
		return fmt.Errorf("%s of the object is %s, want %s", name, got, want)
	}
	return nil
}
