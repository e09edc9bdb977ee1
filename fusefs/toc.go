package fusefs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/containerd/stargz-snapshotter/estargz/zstdchunked"
	"github.com/opencontainers/go-digest"
)

// Limits on what an eStargz TOC may ask for. Every TOC field that sizes an
// allocation or a read is checked against these and against the blob's
// length before the TOC is used, so a hostile layer fails its mount (or
// one file) instead of the process.
const (
	// MaxTOCCompressed bounds the TOC as stored in the blob.
	MaxTOCCompressed = 64 << 20
	// MaxTOCJSON bounds the decompressed TOC JSON.
	MaxTOCJSON = 256 << 20
	// MaxFileSize bounds a regular file's size (1 PiB).
	MaxFileSize = 1 << 50
	// MaxChunkAlloc bounds the decompressed bytes of one chunk held in
	// memory; a file with a larger chunk reads as EIO (the mount stays up).
	MaxChunkAlloc = 256 << 20
	// MaxNameLen and MaxComponentLen bound entry and link names.
	MaxNameLen      = 4096
	MaxComponentLen = 255
	maxXattrValue   = 64 << 10
)

// tocDecompressor is an eStargz decompressor that can also hand out the raw
// TOC JSON (all of estargz's own decompressors can).
type tocDecompressor interface {
	estargz.Decompressor
	DecompressTOC(io.Reader) (io.ReadCloser, error)
}

func decompressors() []tocDecompressor {
	return []tocDecompressor{new(estargz.GzipDecompressor), new(estargz.LegacyGzipDecompressor), new(zstdchunked.Decompressor)}
}

// rawTOC is a TOC read and checked by readTOC.
type rawTOC struct {
	toc       *estargz.JTOC
	tocOffset int64 // where payload ends and the TOC starts
	dec       tocDecompressor
	digests   map[chunkKey]digest.Digest
}

// chunkKey names one chunk the way the eStargz spec keys chunk digests:
// by file and offset within the file (several small files may share one
// compressed member at one blob offset, see --estargz-min-chunk-size).
type chunkKey struct {
	name string
	off  int64
}

// readTOC finds the footer of a gzip or zstd:chunked eStargz blob, reads
// its TOC with bounded sizes and checks every entry (see checkTOC).
func readTOC(sr *io.SectionReader) (*rawTOC, error) {
	size := sr.Size()
	var errs []error
	for _, d := range decompressors() {
		fs := d.FooterSize()
		if size < fs {
			errs = append(errs, fmt.Errorf("blob of %d bytes is smaller than a %d-byte footer", size, fs))
			continue
		}
		footer := make([]byte, fs)
		if _, err := sr.ReadAt(footer, size-fs); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read eStargz footer: %w", err)
		}
		_, tocOff, tocSize, err := d.ParseFooter(footer)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if tocOff < 0 || tocOff >= size-fs {
			errs = append(errs, fmt.Errorf("footer puts the TOC at %d, outside the %d-byte blob", tocOff, size))
			continue
		}
		if tocSize <= 0 {
			tocSize = size - fs - tocOff
		}
		if tocSize > size-fs-tocOff {
			errs = append(errs, fmt.Errorf("footer gives a %d-byte TOC at %d, past the end of the %d-byte blob", tocSize, tocOff, size))
			continue
		}
		if tocSize > MaxTOCCompressed {
			return nil, fmt.Errorf("eStargz TOC is %d bytes compressed; refusing more than %d", tocSize, MaxTOCCompressed)
		}
		buf := make([]byte, tocSize)
		if _, err := sr.ReadAt(buf, tocOff); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read eStargz TOC: %w", err)
		}
		rc, err := d.DecompressTOC(bytes.NewReader(buf))
		if err != nil {
			errs = append(errs, fmt.Errorf("decompress TOC: %w", err))
			continue
		}
		js, err := io.ReadAll(io.LimitReader(rc, MaxTOCJSON+1))
		rc.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("decompress TOC: %w", err))
			continue
		}
		if len(js) > MaxTOCJSON {
			return nil, fmt.Errorf("eStargz TOC JSON is over %d bytes; refused", MaxTOCJSON)
		}
		var toc estargz.JTOC
		if err := json.Unmarshal(js, &toc); err != nil {
			return nil, fmt.Errorf("decode eStargz TOC: %w", err)
		}
		rt := &rawTOC{toc: &toc, tocOffset: tocOff, dec: d}
		if err := rt.check(); err != nil {
			return nil, fmt.Errorf("eStargz TOC: %w", err)
		}
		return rt, nil
	}
	return nil, fmt.Errorf("not an eStargz blob: %w", errors.Join(errs...))
}

// cleanEntryName is estargz's normalisation of entry names.
func cleanEntryName(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

func checkName(what, name string) error {
	if len(name) > MaxNameLen {
		return fmt.Errorf("%s of %d bytes is longer than %d", what, len(name), MaxNameLen)
	}
	for _, c := range strings.Split(name, "/") {
		if len(c) > MaxComponentLen {
			return fmt.Errorf("%s %.40q…: a component is longer than %d bytes", what, name, MaxComponentLen)
		}
	}
	return nil
}

// check validates every entry of the TOC against the blob and sane limits
// and collects the chunk digests (the spec's verifier: every chunk of every
// non-empty file has a digest; a file in one chunk may use its file
// digest instead).
func (rt *rawTOC) check() error {
	if rt.toc.Version != 1 {
		return fmt.Errorf("version %d not supported", rt.toc.Version)
	}
	type fileState struct {
		size, next int64 // file size; file offset the next chunk must start at
		firstChunk int64 // the reg entry's chunk size
		chunks     int64
	}
	files := map[string]*fileState{}
	var last *fileState
	var lastName string
	rt.digests = map[chunkKey]digest.Digest{}
	names := map[string]string{} // cleaned name -> type, for hardlinks
	var links []*estargz.TOCEntry
	for i, e := range rt.toc.Entries {
		if e == nil {
			return fmt.Errorf("entry %d is null", i)
		}
		if err := checkName("entry name", e.Name); err != nil {
			return err
		}
		if err := checkName("link name", e.LinkName); err != nil {
			return fmt.Errorf("%s: %w", e.Name, err)
		}
		if n := trimDot(e.Name); n != "" {
			if _, err := CheckPath(n); err != nil {
				return err
			}
		}
		name := cleanEntryName(e.Name)
		for k, v := range e.Xattrs {
			if len(k) > MaxComponentLen || len(v) > maxXattrValue {
				return fmt.Errorf("%s: extended attribute %.40q too large", name, k)
			}
		}
		if e.Size < 0 || e.Size > MaxFileSize {
			return fmt.Errorf("%s: size %d outside [0, %d]", name, e.Size, int64(MaxFileSize))
		}
		if e.ChunkSize < 0 || e.ChunkOffset < 0 || e.InnerOffset < 0 || e.Offset < 0 {
			return fmt.Errorf("%s: negative chunk size, offset or inner offset", name)
		}
		switch e.Type {
		case "dir", "symlink", "char", "block", "fifo":
			names[name] = e.Type
		case "hardlink":
			if _, err := CheckPath(trimDot(e.LinkName)); err != nil {
				return fmt.Errorf("hardlink target: %w", err)
			}
			links = append(links, e)
		case "reg":
			names[name] = e.Type
			if e.ChunkOffset != 0 {
				return fmt.Errorf("%s: first chunk at file offset %d", name, e.ChunkOffset)
			}
			if e.Size == 0 {
				last, lastName = nil, ""
				continue
			}
			if e.Offset >= rt.tocOffset {
				return fmt.Errorf("%s: data at %d, past the payload's end %d", name, e.Offset, rt.tocOffset)
			}
			if e.ChunkSize > e.Size {
				return fmt.Errorf("%s: chunk size %d larger than the %d-byte file", name, e.ChunkSize, e.Size)
			}
			cs := e.ChunkSize
			if cs == 0 {
				cs = e.Size
			}
			if _, dup := files[name]; dup {
				return fmt.Errorf("%s: regular file listed twice", name)
			}
			last = &fileState{size: e.Size, next: cs, firstChunk: cs, chunks: 1}
			lastName = name
			files[name] = last
			if err := rt.addDigest(name, e, cs == e.Size); err != nil {
				return err
			}
		case "chunk":
			if last == nil || name != lastName {
				return fmt.Errorf("%s: chunk entry not after its file", name)
			}
			if e.ChunkOffset != last.next {
				return fmt.Errorf("%s: chunk at file offset %d, want %d", name, e.ChunkOffset, last.next)
			}
			if e.Offset >= rt.tocOffset {
				return fmt.Errorf("%s: chunk data at %d, past the payload's end %d", name, e.Offset, rt.tocOffset)
			}
			cs := e.ChunkSize
			if cs == 0 {
				cs = last.size - e.ChunkOffset
			}
			if cs <= 0 || cs > last.size-e.ChunkOffset {
				return fmt.Errorf("%s: chunk of %d bytes at %d overruns the %d-byte file", name, e.ChunkSize, e.ChunkOffset, last.size)
			}
			last.next += cs
			last.chunks++
			if err := rt.addDigest(name, e, false); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unknown entry type %q", name, e.Type)
		}
	}
	linkTo := map[string]string{}
	for _, l := range links {
		linkTo[cleanEntryName(l.Name)] = cleanEntryName(l.LinkName)
	}
	for _, l := range links {
		t := cleanEntryName(l.LinkName)
		for depth := 0; names[t] == ""; depth++ {
			next, ok := linkTo[t]
			if !ok {
				return fmt.Errorf("%s: hard link to %q, which is not in the layer", l.Name, l.LinkName)
			}
			if depth > 64 {
				return fmt.Errorf("%s: hard link chain too deep or cyclic", l.Name)
			}
			t = next
		}
		if names[t] == "dir" {
			return fmt.Errorf("%s: hard link to directory %q", l.Name, l.LinkName)
		}
	}
	for name, f := range files {
		if f.next != f.size {
			return fmt.Errorf("%s: chunks cover %d of %d bytes", name, f.next, f.size)
		}
		// estargz sizes its chunk index by size/first chunk size.
		if f.size/f.firstChunk > f.chunks {
			return fmt.Errorf("%s: first chunk size %d does not match its %d chunks", name, f.firstChunk, f.chunks)
		}
	}
	return nil
}

func (rt *rawTOC) addDigest(name string, e *estargz.TOCEntry, whole bool) error {
	s := e.ChunkDigest
	if s == "" && whole {
		s = e.Digest
	}
	if s == "" {
		return fmt.Errorf("%s: chunk at %d has no digest", name, e.ChunkOffset)
	}
	d, err := digest.Parse(s)
	if err != nil {
		return fmt.Errorf("%s: chunk digest: %w", name, err)
	}
	rt.digests[chunkKey{name, e.ChunkOffset}] = d
	return nil
}

// trimDot strips leading "./" and treats the root's own names as "".
func trimDot(name string) string {
	for strings.HasPrefix(name, "./") {
		name = name[2:]
	}
	if name == "." || name == "/" {
		return ""
	}
	return name
}
