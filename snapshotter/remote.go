package snapshotter

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/archive"
	"github.com/containerd/containerd/archive/compression"
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
	// Unpack, when a layer's lazy mount is refused (a TOC that fails its
	// digest or its checks), reads the whole blob through the same lazy
	// task (so through the swarm, one copy from the registry) and unpacks
	// it into the snapshot instead of leaving the download to containerd,
	// which would fetch a second copy from the registry directly.
	Unpack bool
	// Observer, if set, sees every read of the layers' files (metrics).
	Observer fusefs.Observer
	Log      logrus.FieldLogger

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
	if _, err := os.Stat(unpackedMarker(dir)); err == nil {
		// Unpacked before a restart: a plain directory, nothing to mount.
		f.mu.Lock()
		if f.mounts == nil {
			f.mounts = map[string]*layerMount{}
		}
		f.mounts[dir] = &layerMount{close: func() {}}
		f.mu.Unlock()
		return nil
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
	server, sg, err := f.mountLazy(ctx, dir, content, manifest.RedactURL(blobURL), tocDigest)
	if err != nil {
		var refused *refusedError
		if !f.Unpack || !errors.As(err, &refused) {
			return err
		}
		f.Log.WithError(err).WithField("layer", layer.Digest).Warn("lazy mount refused; unpacking the layer through the swarm")
		start := time.Now()
		if uerr := unpack(ctx, dir, content, digest.Digest(layer.Digest)); uerr != nil {
			return fmt.Errorf("%w; unpacking it instead: %v", err, uerr)
		}
		if uerr := os.WriteFile(unpackedMarker(dir), nil, 0o600); uerr != nil {
			return fmt.Errorf("unpack layer %s: %w", layer.Digest, uerr)
		}
		f.Log.WithFields(logrus.Fields{"layer": layer.Digest, "took": time.Since(start).Round(time.Millisecond)}).Info("layer unpacked")
		// The whole blob is local now; the lazy task has nothing left to do.
		release()
		ok = true
		f.mu.Lock()
		if f.mounts == nil {
			f.mounts = map[string]*layerMount{}
		}
		f.mounts[dir] = &layerMount{close: func() {}}
		f.mu.Unlock()
		return nil
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
	if m.server != nil {
		if err := m.server.Unmount(); err != nil {
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	}
	m.close()
	return nil
}

// refusedError is a lazy mount refused because of the layer itself (its
// TOC), not because the blob could not be reached.
type refusedError struct{ err error }

func (e *refusedError) Error() string { return e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

// mountLazy opens the layer's TOC and mounts its tree at dir.
func (f *FUSELayers) mountLazy(ctx context.Context, dir string, content fusefs.Content, source string, tocDigest digest.Digest) (*fuse.Server, *fusefs.Stargz, error) {
	sg, err := fusefs.OpenStargz(ctx, content, source, tocDigest)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, err
		}
		return nil, nil, &refusedError{err}
	}
	entries, err := sg.Entries(fusefs.EntriesOptions{OverlayWhiteouts: true})
	if err != nil {
		return nil, nil, &refusedError{err}
	}
	root, err := fusefs.NewTree(entries, f.ReadTimeout)
	if err != nil {
		return nil, nil, &refusedError{err}
	}
	root.Observe(f.Observer)
	server, err := fusefs.Mount(dir, root, fusefs.MountOptions{AllowOther: true})
	if err != nil {
		return nil, nil, err
	}
	return server, sg, nil
}

// unpackedMarker is the file saying that the layer at dir was unpacked
// rather than mounted (it sits next to dir, in the snapshot's directory).
func unpackedMarker(dir string) string { return filepath.Join(filepath.Dir(dir), "unpacked") }

// unpack reads the whole layer blob through content (sequential reads, so
// the lazy task reads ahead), checks it against the layer's digest and
// applies it to dir as an overlay lower layer: whiteouts become overlayfs
// whiteouts, as containerd would do.
func unpack(ctx context.Context, dir string, content fusefs.Content, want digest.Digest) error {
	verifier := want.Verifier()
	blob := io.TeeReader(io.NewSectionReader(ctxReaderAt{content, ctx}, 0, content.Size()), verifier)
	br := bufio.NewReaderSize(blob, 4<<20)
	ds, err := compression.DecompressStream(br)
	if err != nil {
		return fmt.Errorf("decompress layer: %w", err)
	}
	defer ds.Close()
	if _, err := archive.Apply(ctx, dir, ds, archive.WithConvertWhiteout(archive.OverlayConvertWhiteout)); err != nil {
		return fmt.Errorf("apply layer: %w", err)
	}
	// The rest of the blob (the eStargz TOC and footer) counts for the
	// digest: let the decompressor finish the stream, then read what it
	// left.
	if _, err := io.Copy(io.Discard, ds); err != nil {
		return fmt.Errorf("decompress layer: %w", err)
	}
	ds.Close()
	if _, err := io.Copy(io.Discard, br); err != nil {
		return fmt.Errorf("read layer: %w", err)
	}
	if !verifier.Verified() {
		return fmt.Errorf("layer blob does not match its digest %s", want)
	}
	return nil
}

// ctxReaderAt adapts a Content to io.ReaderAt with a fixed context.
type ctxReaderAt struct {
	c   fusefs.Content
	ctx context.Context
}

func (r ctxReaderAt) ReadAt(p []byte, off int64) (int, error) {
	return r.c.ReadAtContext(r.ctx, p, off)
}
