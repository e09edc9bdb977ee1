package snapshotter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/fusefs"
	"github.com/damselfly-p2p/damselfly/manifest"
)

// OpenFunc opens a URL lazily through the P2P engine; header goes to the
// origin only. The returned function releases the content.
type OpenFunc func(ctx context.Context, url string, header http.Header) (fusefs.Content, func(), error)

// FUSELayers mounts eStargz layers with fusefs, reading blobs through P2P.
type FUSELayers struct {
	Open     OpenFunc
	Registry *Registry
	// PrefetchTimeout bounds fetching the layer's prioritized files (the
	// eStargz prefetch landmark) before Mount returns; 0 skips it.
	PrefetchTimeout time.Duration
	// ReadTimeout bounds each read of a missing chunk (EIO after it).
	ReadTimeout time.Duration
	Log         logrus.FieldLogger

	mu     sync.Mutex
	mounts map[string]*layerMount
}

type layerMount struct {
	server *fuse.Server
	close  func()
}

var _ LayerMounter = (*FUSELayers)(nil)

// Mount implements LayerMounter.
func (f *FUSELayers) Mount(ctx context.Context, dir string, layer Layer) error {
	if _, err := digest.Parse(layer.Digest); err != nil {
		return fmt.Errorf("layer digest %q: %w", layer.Digest, err)
	}
	tocDigest, err := digest.Parse(layer.TOCDigest)
	if err != nil {
		return fmt.Errorf("TOC digest %q: %w", layer.TOCDigest, err)
	}
	blobURL, header, err := f.Registry.BlobURL(ctx, layer.ImageRef, layer.Digest)
	if err != nil {
		return err
	}
	content, release, err := f.Open(ctx, blobURL, header)
	if err != nil {
		return fmt.Errorf("open layer blob: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			release()
		}
	}()
	sg, err := fusefs.OpenStargz(ctx, content, manifest.RedactURL(blobURL), tocDigest)
	if err != nil {
		return err
	}
	entries, err := sg.Entries(fusefs.EntriesOptions{OverlayWhiteouts: true})
	if err != nil {
		return err
	}
	root, err := fusefs.NewTree(entries, f.ReadTimeout)
	if err != nil {
		return err
	}
	server, err := fusefs.Mount(dir, root, fusefs.MountOptions{AllowOther: true})
	if err != nil {
		return err
	}
	ok = true
	f.mu.Lock()
	if f.mounts == nil {
		f.mounts = map[string]*layerMount{}
	}
	f.mounts[dir] = &layerMount{server: server, close: release}
	f.mu.Unlock()
	if n := sg.PrefetchRange(); n > 0 && f.PrefetchTimeout > 0 {
		start := time.Now()
		if err := prefetch(ctx, content, n, f.PrefetchTimeout); err != nil {
			f.Log.WithError(err).WithField("layer", layer.Digest).Warn("prefetch of prioritized files incomplete")
		} else {
			f.Log.WithFields(logrus.Fields{"layer": layer.Digest, "bytes": n, "took": time.Since(start).Round(time.Millisecond)}).Info("prefetched prioritized files")
		}
	}
	return nil
}

// prefetch reads blob bytes [0, n) so their pieces are local.
func prefetch(ctx context.Context, c fusefs.Content, n int64, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	buf := make([]byte, 8<<20)
	for off := int64(0); off < n; off += int64(len(buf)) {
		m := int64(len(buf))
		if off+m > n {
			m = n - off
		}
		if _, err := c.ReadAtContext(ctx, buf[:m], off); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
	}
	return nil
}

// Unmount implements LayerMounter.
func (f *FUSELayers) Unmount(dir string) error {
	f.mu.Lock()
	m := f.mounts[dir]
	delete(f.mounts, dir)
	f.mu.Unlock()
	if m == nil {
		// Not ours (e.g. stale from before a restart): detach if mounted.
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			return err
		}
		return nil
	}
	err := m.server.Unmount()
	if err != nil {
		syscall.Unmount(dir, syscall.MNT_DETACH)
	}
	m.close()
	return nil
}
