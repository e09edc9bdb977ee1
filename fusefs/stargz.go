package fusefs

import (
	"bufio"
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/containerd/stargz-snapshotter/estargz/zstdchunked"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/singleflight"
	"golang.org/x/sys/unix"
)

// Stargz is an eStargz layer blob (gzip or zstd:chunked) read lazily: its
// TOC (at the end of the blob) gives the tree, and each file read fetches,
// decompresses and verifies only the chunks it touches (and, for a reader
// moving through a file in order, the chunk after its current one, in the
// background: stargzFile.readAhead). The TOC is checked
// before use (see readTOC); chunk digests are keyed by file and offset in
// the file, as the eStargz spec does, so layers whose small files share a
// compressed member (--estargz-min-chunk-size) mount too. Verified chunks
// are kept in a small LRU so that sequential reads decompress each chunk
// once.
type Stargz struct {
	blob   Content
	source string
	r      *estargz.Reader
	toc    *rawTOC

	flight singleflight.Group
	cache  *chunkLRU
	ahead  atomic.Int64 // chunks decompressed ahead of their readers
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
// hold them) and checks every entry. With tocDigest set, the TOC must
// match it, which makes every chunk digest trustworthy; without it the
// chunk digests still come from the TOC in the blob.
func OpenStargz(ctx context.Context, blob Content, source string, tocDigest digest.Digest) (*Stargz, error) {
	sr := io.NewSectionReader(ctxReaderAt{blob, ctx}, 0, blob.Size())
	rt, err := readTOC(sr)
	if err != nil {
		return nil, fmt.Errorf("eStargz blob %s: %w", source, err)
	}
	r, err := estargz.Open(sr, estargz.WithDecompressors(new(zstdchunked.Decompressor)))
	if err != nil {
		return nil, fmt.Errorf("open eStargz blob %s: %w", source, err)
	}
	if tocDigest != "" && r.TOCDigest() != tocDigest {
		return nil, fmt.Errorf("eStargz blob %s: verify TOC: its digest is %s, want %s", source, r.TOCDigest(), tocDigest)
	}
	return &Stargz{blob: blob, source: source, r: r, toc: rt, cache: newChunkLRU(64 << 20)}, nil
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
// targets, device numbers, link counts and extended attributes from the
// TOC, as tar gives them. The root comes first (path "."); a hard link is
// an entry whose Link names the first path of the same file.
func (s *Stargz) Entries(opt EntriesOptions) ([]Entry, error) {
	root, ok := s.r.Lookup("")
	if !ok {
		return nil, errors.New("eStargz TOC has no root")
	}
	out := []Entry{{Path: ".", Mode: os.ModeDir | tocMode(root), ModTime: root.ModTime(), UID: uint32(root.UID),
		GID: uint32(root.GID), Xattrs: root.Xattrs}}
	if root.ModTime().IsZero() {
		out[0].ModTime = time.Now() // as the directory containerd unpacks into
		out[0].Mode = os.ModeDir | 0o755
	}
	index := map[string]int{"": 0}
	first := map[*estargz.TOCEntry]string{}
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
						x := map[string][]byte{}
						for k, v := range out[i].Xattrs {
							x[k] = v
						}
						x[opaqueXattr] = []byte("y")
						out[i].Xattrs = x
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
			if ent.Type != "dir" {
				if f, ok := first[ent]; ok {
					out = append(out, Entry{Path: p, Link: f})
					return true
				}
				first[ent] = p
			}
			en := Entry{Path: p, Mode: tocMode(ent), ModTime: ent.ModTime(), UID: uint32(ent.UID), GID: uint32(ent.GID),
				Xattrs: ent.Xattrs}
			if ent.Type != "dir" && ent.NumLink > 1 {
				en.Nlink = uint32(ent.NumLink)
			}
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
				// ent.Name is the file's own name, also when p is a hard link to it.
				en.Data = &stargzFile{s: s, name: ent.Name, size: ent.Size}
			case "char", "block":
				en.Mode |= os.ModeDevice
				if ent.Type == "char" {
					en.Mode |= os.ModeCharDevice
				}
				en.Rdev = uint32(unix.Mkdev(uint32(ent.DevMajor), uint32(ent.DevMinor)))
			case "fifo":
				en.Mode |= os.ModeNamedPipe
			default:
				return true
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
// layer has none or says not to prefetch (.no.prefetch.landmark).
func (s *Stargz) PrefetchRange() int64 {
	if _, ok := s.r.Lookup(estargz.NoPrefetchLandmark); ok {
		return 0
	}
	if e, ok := s.r.Lookup(estargz.PrefetchLandmark); ok && e.Offset <= s.toc.tocOffset {
		return e.Offset
	}
	return 0
}

// NoPrefetch reports whether the layer carries .no.prefetch.landmark: its
// author asks that nothing be fetched ahead of reads.
func (s *Stargz) NoPrefetch() bool {
	_, ok := s.r.Lookup(estargz.NoPrefetchLandmark)
	return ok
}

// stargzFile reads one regular file of the layer.
type stargzFile struct {
	s    *Stargz
	name string
	size int64

	// Chunk readahead (see readAhead), guarded by mu.
	mu     sync.Mutex
	seen   bool  // a read happened
	cur    int64 // ChunkOffset of the chunk the last read ended in
	next   int64 // ChunkOffset of the chunk after it
	queued int64 // ChunkOffset+1 of the last chunk decompressed ahead (0: none)
}

func (f *stargzFile) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	n := 0
	var last *estargz.TOCEntry
	for n < len(p) && off < f.size {
		ce, ok := f.s.r.ChunkEntryForOffset(f.name, off)
		if !ok {
			return n, fmt.Errorf("%s: no chunk at offset %d", f.name, off)
		}
		data, err := f.s.chunk(ctx, f.name, ce, f.size)
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
		last = ce
	}
	if last != nil {
		f.readAhead(last)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// chunkAheadTimeout bounds one chunk decompressed ahead of its reader
// (its compressed bytes may still have to come through the swarm).
const chunkAheadTimeout = time.Minute

// readAhead is told the chunk a read ended in. Once reads move from one
// chunk into the next, the chunk after that is decompressed and verified in
// the background into the chunk cache, so that a sequential reader (cat, a
// checksum, a loader) finds it ready instead of waiting for its fetch,
// decompression and digest check between two reads: the work overlaps the
// reader's own. A read that stays in its chunk, or jumps, starts nothing,
// so a random reader's bytes from the registry stay what it reads.
func (f *stargzFile) readAhead(ce *estargz.TOCEntry) {
	if ce.ChunkSize <= 0 {
		return // the file is one chunk
	}
	f.mu.Lock()
	if f.seen && ce.ChunkOffset == f.cur {
		f.mu.Unlock()
		return
	}
	moved := f.seen && ce.ChunkOffset == f.next
	f.seen, f.cur, f.next = true, ce.ChunkOffset, ce.ChunkOffset+ce.ChunkSize
	ahead := f.next
	if !moved || ahead >= f.size || f.queued == ahead+1 {
		f.mu.Unlock()
		return
	}
	f.queued = ahead + 1
	f.mu.Unlock()
	ne, ok := f.s.r.ChunkEntryForOffset(f.name, ahead)
	if !ok {
		return
	}
	if _, ok := f.s.cache.get(chunkID{ne.Offset, ne.InnerOffset}); ok {
		return
	}
	f.s.ahead.Add(1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), chunkAheadTimeout)
		defer cancel()
		// A failure is the reader's to meet and report when it gets there.
		_, _ = f.s.chunk(ctx, f.name, ne, f.size)
	}()
}

func (f *stargzFile) Progress() (int64, int64) { return f.s.blob.Present(), f.s.blob.Size() }
func (f *stargzFile) PassthroughPath() string  { return "" }

// chunkID names a decompressed chunk: its compressed member's blob offset
// and its offset inside that member.
type chunkID struct{ off, inner int64 }

// chunk returns the verified, decompressed bytes of a chunk entry of the
// named file.
func (s *Stargz) chunk(ctx context.Context, name string, ce *estargz.TOCEntry, fileSize int64) ([]byte, error) {
	key := chunkID{ce.Offset, ce.InnerOffset}
	if b, ok := s.cache.get(key); ok {
		return b, nil
	}
	v, err, _ := s.flight.Do(fmt.Sprint(key), func() (any, error) {
		if b, ok := s.cache.get(key); ok {
			return b, nil
		}
		size := ce.ChunkSize
		if size == 0 {
			size = fileSize - ce.ChunkOffset
		}
		if size <= 0 || size > fileSize-ce.ChunkOffset {
			return nil, fmt.Errorf("%s: chunk at %d: bad size %d", name, ce.ChunkOffset, size)
		}
		if size > MaxChunkAlloc {
			return nil, fmt.Errorf("%s: chunk at %d is %d bytes decompressed; refusing more than %d", name, ce.ChunkOffset, size, MaxChunkAlloc)
		}
		end := ce.NextOffset()
		if end > s.toc.tocOffset || end <= ce.Offset {
			end = s.toc.tocOffset
		}
		if ce.Offset < 0 || ce.Offset >= end {
			return nil, fmt.Errorf("%s: chunk data at %d outside the payload [0, %d)", name, ce.Offset, s.toc.tocOffset)
		}
		want, ok := s.toc.digests[chunkKey{cleanEntryName(name), ce.ChunkOffset}]
		if !ok {
			return nil, fmt.Errorf("%s: no digest for the chunk at %d", name, ce.ChunkOffset)
		}
		sr := io.NewSectionReader(ctxReaderAt{s.blob, ctx}, ce.Offset, end-ce.Offset)
		zr, err := s.toc.dec.Reader(bufio.NewReaderSize(sr, 1<<20))
		if err != nil {
			return nil, fmt.Errorf("%s: decompress chunk at %d: %w", name, ce.Offset, err)
		}
		defer zr.Close()
		if _, err := io.CopyN(io.Discard, zr, ce.InnerOffset); err != nil {
			return nil, fmt.Errorf("%s: decompress chunk at %d+%d: %w", name, ce.Offset, ce.InnerOffset, noEOF(err))
		}
		data := make([]byte, size)
		if _, err := io.ReadFull(zr, data); err != nil {
			return nil, fmt.Errorf("%s: decompress chunk at %d+%d: %w", name, ce.Offset, ce.InnerOffset, noEOF(err))
		}
		if got := want.Algorithm().FromBytes(data); got != want {
			return nil, fmt.Errorf("%s: chunk at %d of %s: digest mismatch", name, ce.ChunkOffset, s.source)
		}
		s.cache.put(key, data)
		return data, nil
	})
	if err != nil {
		return nil, err
	}
	return v.([]byte), nil
}

// noEOF turns the end of a chunk's data into an error of its own: a short
// chunk is a broken layer, not the end of the file.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// chunkLRU keeps recently used decompressed chunks up to a byte budget.
type chunkLRU struct {
	mu     sync.Mutex
	budget int64
	used   int64
	ll     *list.List
	m      map[chunkID]*list.Element
}

type lruItem struct {
	key  chunkID
	data []byte
}

func newChunkLRU(budget int64) *chunkLRU {
	return &chunkLRU{budget: budget, ll: list.New(), m: map[chunkID]*list.Element{}}
}

func (c *chunkLRU) get(k chunkID) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*lruItem).data, true
	}
	return nil, false
}

func (c *chunkLRU) put(k chunkID, data []byte) {
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
