package fusefs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/singleflight"
	"golang.org/x/sys/unix"
)

// Stargz is an eStargz layer blob read lazily: its TOC (at the end of the
// blob) gives the tree, and each file read fetches, decompresses and
// verifies only the chunks it touches. Verified chunks are kept in a small
// LRU so that sequential reads decompress each chunk once.
type Stargz struct {
	blob     Content
	source   string
	r        *estargz.Reader
	verifier estargz.TOCEntryVerifier

	flight singleflight.Group
	cache  *chunkLRU
}

// ctxReaderAt adapts a Content to io.ReaderAt with a fixed context.
type ctxReaderAt struct {
	c   Content
	ctx context.Context
}

func (r ctxReaderAt) ReadAt(p []byte, off int64) (int, error) {
	return r.c.ReadAtContext(r.ctx, p, off)
}

// OpenStargz reads blob's footer and TOC (fetching only the pieces that
// hold them) and checks every entry name. With tocDigest set, the TOC must
// match it, which makes every chunk digest trustworthy; without it the
// chunk digests still come from the TOC in the blob.
func OpenStargz(ctx context.Context, blob Content, source string, tocDigest digest.Digest) (*Stargz, error) {
	sr := io.NewSectionReader(ctxReaderAt{blob, ctx}, 0, blob.Size())
	if err := checkTOCNames(sr); err != nil {
		return nil, err
	}
	r, err := estargz.Open(sr)
	if err != nil {
		return nil, fmt.Errorf("open eStargz blob %s: %w", source, err)
	}
	var v estargz.TOCEntryVerifier
	if tocDigest != "" {
		v, err = r.VerifyTOC(tocDigest)
	} else {
		v, err = r.Verifiers()
	}
	if err != nil {
		return nil, fmt.Errorf("eStargz blob %s: verify TOC: %w", source, err)
	}
	return &Stargz{blob: blob, source: source, r: r, verifier: v, cache: newChunkLRU(64 << 20)}, nil
}

// checkTOCNames reads the raw TOC JSON and refuses names that would
// escape the mount (estargz.Open cleans names, hiding such entries).
func checkTOCNames(sr *io.SectionReader) error {
	tocOff, footerSize, err := estargz.OpenFooter(sr)
	if err != nil {
		return fmt.Errorf("read eStargz footer: %w", err)
	}
	tocSize := sr.Size() - footerSize - tocOff
	if tocOff < 0 || tocSize <= 0 {
		return errors.New("eStargz footer points outside the blob")
	}
	zr, err := gzip.NewReader(io.NewSectionReader(sr, tocOff, tocSize))
	if err != nil {
		return fmt.Errorf("read eStargz TOC: %w", err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err != nil {
			return fmt.Errorf("read eStargz TOC: no %s: %w", estargz.TOCTarName, err)
		}
		if h.Name != estargz.TOCTarName {
			continue
		}
		var toc estargz.JTOC
		if err := json.NewDecoder(tr).Decode(&toc); err != nil {
			return fmt.Errorf("decode eStargz TOC: %w", err)
		}
		return checkEntryNames(toc.Entries)
	}
}

func checkEntryNames(ents []*estargz.TOCEntry) error {
	for _, e := range ents {
		name := e.Name
		for len(name) > 2 && name[:2] == "./" {
			name = name[2:]
		}
		if name == "" || name == "." || name == "./" || name == "/" {
			continue // the root itself (umoci names it "/")
		}
		if _, err := CheckPath(name); err != nil {
			return fmt.Errorf("eStargz TOC: %w", err)
		}
		if e.Type == "hardlink" {
			if _, err := CheckPath(e.LinkName); err != nil {
				return fmt.Errorf("eStargz TOC: hardlink target: %w", err)
			}
		}
	}
	return nil
}

// EntriesOptions tunes how a layer's TOC becomes a tree.
type EntriesOptions struct {
	// OverlayWhiteouts turns OCI whiteouts into overlayfs ones, for use as
	// an overlay lower layer: ".wh.NAME" becomes a 0/0 character device
	// NAME, and ".wh..wh..opq" marks its directory opaque
	// (trusted.overlay.opaque=y).
	OverlayWhiteouts bool
}

const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
	opaqueXattr    = "trusted.overlay.opaque"
)

// Entries returns the layer's tree with modes, owners, times, symlink
// targets, device numbers and extended attributes from the TOC.
func (s *Stargz) Entries(opt EntriesOptions) ([]Entry, error) {
	root, ok := s.r.Lookup("")
	if !ok {
		return nil, errors.New("eStargz TOC has no root")
	}
	var out []Entry
	index := map[string]int{}
	var walk func(dir string, e *estargz.TOCEntry)
	walk = func(dir string, e *estargz.TOCEntry) {
		e.ForeachChild(func(base string, ent *estargz.TOCEntry) bool {
			p := base
			if dir != "" {
				p = dir + "/" + base
			} else if base == estargz.TOCTarName || base == estargz.PrefetchLandmark || base == estargz.NoPrefetchLandmark {
				return true // eStargz's own bookkeeping, not part of the layer
			}
			if opt.OverlayWhiteouts && strings.HasPrefix(base, whiteoutPrefix) {
				if base == whiteoutOpaque {
					if i, ok := index[dir]; ok {
						if out[i].Xattrs == nil {
							out[i].Xattrs = map[string][]byte{}
						}
						out[i].Xattrs[opaqueXattr] = []byte("y")
					}
					return true
				}
				name := strings.TrimPrefix(base, whiteoutPrefix)
				if dir != "" {
					name = dir + "/" + name
				}
				out = append(out, Entry{Path: name, Mode: os.ModeDevice | os.ModeCharDevice, ModTime: ent.ModTime()})
				return true
			}
			en := Entry{Path: p, Mode: tocMode(ent), ModTime: ent.ModTime(), UID: uint32(ent.UID), GID: uint32(ent.GID),
				Xattrs: ent.Xattrs}
			switch ent.Type {
			case "dir":
				en.Mode |= os.ModeDir
				index[p] = len(out)
				out = append(out, en)
				walk(p, ent)
				return true
			case "symlink":
				en.Mode = os.ModeSymlink | 0o777
				en.Target = ent.LinkName
			case "reg":
				en.Size = ent.Size
				en.Digest = ent.Digest
				en.Source = s.source
				en.Data = &stargzFile{s: s, name: p, size: ent.Size}
			case "char", "block":
				en.Mode |= os.ModeDevice
				if ent.Type == "char" {
					en.Mode |= os.ModeCharDevice
				}
				en.Rdev = uint32(unix.Mkdev(uint32(ent.DevMajor), uint32(ent.DevMinor)))
			default:
				return true // fifos are not served
			}
			out = append(out, en)
			return true
		})
	}
	walk("", root)
	return out, nil
}

// tocMode turns a TOC entry's Unix mode into permissions plus setuid,
// setgid and sticky.
func tocMode(e *estargz.TOCEntry) os.FileMode {
	m := os.FileMode(e.Mode) & os.ModePerm
	if e.Mode&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	if e.Mode&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if e.Mode&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return m
}

// PrefetchRange returns the blob range holding the files eStargz marks as
// prioritized (everything before the prefetch landmark), or 0 when the
// layer has none.
func (s *Stargz) PrefetchRange() int64 {
	if e, ok := s.r.Lookup(estargz.PrefetchLandmark); ok {
		return e.Offset
	}
	return 0
}

// stargzFile reads one regular file of the layer.
type stargzFile struct {
	s    *Stargz
	name string
	size int64
}

func (f *stargzFile) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) && off < f.size {
		ce, ok := f.s.r.ChunkEntryForOffset(f.name, off)
		if !ok {
			return n, fmt.Errorf("%s: no chunk at offset %d", f.name, off)
		}
		data, err := f.s.chunk(ctx, ce, f.size)
		if err != nil {
			return n, err
		}
		in := off - ce.ChunkOffset
		if in < 0 || in >= int64(len(data)) {
			return n, fmt.Errorf("%s: chunk at %d does not cover offset %d", f.name, ce.ChunkOffset, off)
		}
		c := copy(p[n:], data[in:])
		n += c
		off += int64(c)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *stargzFile) Progress() (int64, int64) { return f.s.blob.Present(), f.s.blob.Size() }
func (f *stargzFile) PassthroughPath() string  { return "" }

// chunk returns the verified, decompressed bytes of a chunk entry.
func (s *Stargz) chunk(ctx context.Context, ce *estargz.TOCEntry, fileSize int64) ([]byte, error) {
	key := ce.Offset
	if b, ok := s.cache.get(key); ok {
		return b, nil
	}
	v, err, _ := s.flight.Do(fmt.Sprint(key), func() (any, error) {
		if b, ok := s.cache.get(key); ok {
			return b, nil
		}
		size := ce.ChunkSize
		if size == 0 {
			size = fileSize
		}
		compressed := ce.NextOffset() - ce.Offset
		if compressed <= 0 {
			return nil, fmt.Errorf("chunk at %d: bad compressed size %d", ce.Offset, compressed)
		}
		buf := make([]byte, compressed)
		if _, err := s.blob.ReadAtContext(ctx, buf, ce.Offset); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("fetch chunk at %d: %w", ce.Offset, err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(buf))
		if err != nil {
			return nil, fmt.Errorf("decompress chunk at %d: %w", ce.Offset, err)
		}
		if _, err := io.CopyN(io.Discard, zr, ce.InnerOffset); err != nil {
			return nil, fmt.Errorf("decompress chunk at %d: %w", ce.Offset, err)
		}
		data := make([]byte, size)
		if _, err := io.ReadFull(zr, data); err != nil {
			return nil, fmt.Errorf("decompress chunk at %d: %w", ce.Offset, err)
		}
		ver, err := s.verifier.Verifier(ce)
		if err != nil {
			return nil, fmt.Errorf("chunk at %d: %w", ce.Offset, err)
		}
		ver.Write(data)
		if !ver.Verified() {
			return nil, fmt.Errorf("chunk at %d of %s: digest mismatch", ce.Offset, s.source)
		}
		s.cache.put(key, data)
		return data, nil
	})
	if err != nil {
		return nil, err
	}
	return v.([]byte), nil
}

// chunkLRU keeps recently used decompressed chunks up to a byte budget.
type chunkLRU struct {
	mu     sync.Mutex
	budget int64
	used   int64
	ll     *list.List
	m      map[int64]*list.Element
}

type lruItem struct {
	key  int64
	data []byte
}

func newChunkLRU(budget int64) *chunkLRU {
	return &chunkLRU{budget: budget, ll: list.New(), m: map[int64]*list.Element{}}
}

func (c *chunkLRU) get(k int64) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*lruItem).data, true
	}
	return nil, false
}

func (c *chunkLRU) put(k int64, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; ok {
		return
	}
	c.m[k] = c.ll.PushFront(&lruItem{k, data})
	c.used += int64(len(data))
	for c.used > c.budget && c.ll.Len() > 1 {
		e := c.ll.Back()
		it := e.Value.(*lruItem)
		c.ll.Remove(e)
		delete(c.m, it.key)
		c.used -= int64(len(it.data))
	}
}
