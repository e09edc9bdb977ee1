package fusefs

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/containerd/stargz-snapshotter/estargz/zstdchunked"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/pkg/xattr"
)

// memContent is a layer blob in memory; reads of offsets in failAt fail.
type memContent struct{ b []byte }

func (m *memContent) Size() int64 { return int64(len(m.b)) }
func (m *memContent) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 || off > int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
func (m *memContent) Present() int64   { return int64(len(m.b)) }
func (m *memContent) Complete() bool   { return true }
func (m *memContent) DataPath() string { return "" }

// tarFile is one member of a test layer.
type tarFile struct {
	name, link string
	typ        byte
	mode       int64
	data       []byte
	xattrs     map[string]string
	dev        int64
}

var mtime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// layerCorpus is one tar covering the layer shapes that must mount: small
// files sharing chunks, files in many chunks, empty files, hard links,
// symlinks, whiteouts, opaque dirs, xattrs, devices, non-ASCII names.
func layerCorpus() []tarFile {
	big := make([]byte, 300_000)
	for i := range big {
		big[i] = byte(i*7 + i/1000)
	}
	var fs []tarFile
	fs = append(fs, tarFile{name: "./", typ: tar.TypeDir, mode: 0o755})
	fs = append(fs, tarFile{name: "bin/", typ: tar.TypeDir, mode: 0o755})
	fs = append(fs, tarFile{name: "bin/busybox", typ: tar.TypeReg, mode: 0o4755, data: big})
	fs = append(fs, tarFile{name: "bin/sh", typ: tar.TypeLink, link: "bin/busybox"})
	fs = append(fs, tarFile{name: "bin/ls", typ: tar.TypeLink, link: "bin/busybox"})
	fs = append(fs, tarFile{name: "bin/abs", typ: tar.TypeSymlink, link: "/bin/busybox"})
	fs = append(fs, tarFile{name: "etc/", typ: tar.TypeDir, mode: 0o750})
	for i := 0; i < 20; i++ {
		fs = append(fs, tarFile{name: fmt.Sprintf("etc/small-%02d", i), typ: tar.TypeReg, mode: 0o644,
			data: []byte(strings.Repeat(fmt.Sprintf("line %d\n", i), i*37))})
	}
	fs = append(fs, tarFile{name: "etc/empty", typ: tar.TypeReg, mode: 0o600})
	fs = append(fs, tarFile{name: "etc/attrs", typ: tar.TypeReg, mode: 0o644, data: []byte("x"),
		xattrs: map[string]string{"user.color": "blue", "trusted.test": "v\x00\x01"}})
	fs = append(fs, tarFile{name: "etc/ünïcødé 名前", typ: tar.TypeReg, mode: 0o644, data: []byte("héllo")})
	fs = append(fs, tarFile{name: "etc/.wh.gone", typ: tar.TypeReg, mode: 0o644})
	fs = append(fs, tarFile{name: "var/", typ: tar.TypeDir, mode: 0o1777})
	fs = append(fs, tarFile{name: "var/opaque/", typ: tar.TypeDir, mode: 0o755})
	fs = append(fs, tarFile{name: "var/opaque/.wh..wh..opq", typ: tar.TypeReg, mode: 0o644})
	fs = append(fs, tarFile{name: "var/opaque/kept", typ: tar.TypeReg, mode: 0o644, data: []byte("kept\n")})
	fs = append(fs, tarFile{name: "dev/", typ: tar.TypeDir, mode: 0o755})
	fs = append(fs, tarFile{name: "dev/null", typ: tar.TypeChar, mode: 0o666, dev: 1<<8 | 3})
	fs = append(fs, tarFile{name: "zeros", typ: tar.TypeReg, mode: 0o644, data: make([]byte, 200_000)})
	return fs
}

func buildTar(t testing.TB, files []tarFile) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Typeflag: f.typ, Mode: f.mode, Linkname: f.link, ModTime: mtime,
			Uid: 1000, Gid: 100, Size: int64(len(f.data)), Format: tar.FormatPAX,
			Devmajor: f.dev >> 8, Devminor: f.dev & 0xff}
		if f.typ != tar.TypeReg {
			h.Size = 0
		}
		if len(f.xattrs) > 0 {
			h.PAXRecords = map[string]string{}
			for k, v := range f.xattrs {
				h.PAXRecords["SCHILY.xattr."+k] = v
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type zstdCompression struct {
	*zstdchunked.Compressor
	*zstdchunked.Decompressor
}

// buildLayer converts a tar to eStargz with opts.
func buildLayer(t testing.TB, tarb []byte, opts ...estargz.Option) ([]byte, digest.Digest) {
	blob, err := estargz.Build(io.NewSectionReader(bytes.NewReader(tarb), 0, int64(len(tarb))), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer blob.Close()
	b, err := io.ReadAll(blob)
	if err != nil {
		t.Fatal(err)
	}
	return b, blob.TOCDigest()
}

var layerOptions = []struct {
	name string
	opts []estargz.Option
}{
	{"defaults", nil},
	{"min-chunk-size 65536", []estargz.Option{estargz.WithMinChunkSize(65536)}},
	{"chunk-size 4096", []estargz.Option{estargz.WithChunkSize(4096)}},
	{"chunk-size 4096 min-chunk-size 16384", []estargz.Option{estargz.WithChunkSize(4096), estargz.WithMinChunkSize(16384)}},
	{"chunk-size 1MiB", []estargz.Option{estargz.WithChunkSize(1 << 20)}},
	{"prioritized", []estargz.Option{estargz.WithPrioritizedFiles([]string{"bin/busybox", "etc/small-03"})}},
	{"zstd:chunked", []estargz.Option{estargz.WithCompression(&zstdCompression{&zstdchunked.Compressor{CompressionLevel: zstd.SpeedDefault}, new(zstdchunked.Decompressor)})}},
	{"zstd:chunked min-chunk-size", []estargz.Option{estargz.WithMinChunkSize(65536),
		estargz.WithCompression(&zstdCompression{&zstdchunked.Compressor{CompressionLevel: zstd.SpeedDefault}, new(zstdchunked.Decompressor)})}},
}

// want is what a path looks like unpacked from the tar.
type want struct {
	mode   uint32 // S_IFMT | perm | special bits
	size   int64
	nlink  uint32
	sum    string
	target string
	rdev   uint64
	xattrs map[string]string
	linkOf string // hard link group
}

func unixMode(f tarFile) uint32 {
	m := uint32(f.mode) & 0o7777
	switch f.typ {
	case tar.TypeDir:
		return syscall.S_IFDIR | m
	case tar.TypeSymlink:
		return syscall.S_IFLNK | 0o777
	case tar.TypeChar:
		return syscall.S_IFCHR | m
	}
	return syscall.S_IFREG | m
}

// expected computes each path's attributes as the tar unpacked gives them
// (directories: size 4096, nlink 2 + subdirectories).
func expected(files []tarFile) map[string]*want {
	out := map[string]*want{}
	byName := map[string]tarFile{}
	for _, f := range files {
		byName[path.Clean(f.name)] = f
	}
	for _, f := range files {
		name := path.Clean(f.name)
		src := f
		if f.typ == tar.TypeLink {
			src = byName[path.Clean(f.link)]
		}
		w := &want{mode: unixMode(src), size: int64(len(src.data)), nlink: 1, xattrs: src.xattrs}
		switch src.typ {
		case tar.TypeDir:
			w.size, w.nlink = dirSize, 2
		case tar.TypeSymlink:
			w.target, w.size = src.link, int64(len(src.link))
		case tar.TypeChar:
			w.size, w.rdev = 0, uint64(src.dev)
		default:
			s := sha256.Sum256(src.data)
			w.sum = hex.EncodeToString(s[:])
		}
		if f.typ == tar.TypeLink {
			w.linkOf = path.Clean(f.link)
		}
		out[name] = w
	}
	for _, f := range files {
		name := path.Clean(f.name)
		if f.typ == tar.TypeDir && name != "." {
			out[path.Dir(name)].nlink++
		}
		if f.typ == tar.TypeLink {
			out[path.Clean(f.link)].nlink++
		}
	}
	for name, w := range out {
		if w.linkOf != "" {
			w.nlink = out[w.linkOf].nlink
		}
		_ = name
	}
	return out
}

// TestStargzLayerCorpus mounts one tar converted with each set of options
// and compares every path's stat fields and contents with the tar's.
func TestStargzLayerCorpus(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	files := layerCorpus()
	tarb := buildTar(t, files)
	exp := expected(files)
	for _, lo := range layerOptions {
		t.Run(lo.name, func(t *testing.T) {
			blob, tocDigest := buildLayer(t, tarb, lo.opts...)
			sg, err := OpenStargz(context.Background(), &memContent{blob}, "test", tocDigest)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			ents, err := sg.Entries(EntriesOptions{})
			if err != nil {
				t.Fatal(err)
			}
			root, err := NewTree(ents, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			mnt := t.TempDir()
			server, err := Mount(mnt, root, MountOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := server.Unmount(); err != nil {
					syscall.Unmount(mnt, syscall.MNT_DETACH)
				}
			})
			seen := map[string]bool{}
			err = filepath.Walk(mnt, func(p string, fi os.FileInfo, err error) error {
				if err != nil {
					return err
				}
				rel, _ := filepath.Rel(mnt, p)
				seen[rel] = true
				w, ok := exp[rel]
				if !ok {
					t.Errorf("%s: in the mount, not in the tar", rel)
					return nil
				}
				st := fi.Sys().(*syscall.Stat_t)
				if st.Mode != w.mode || st.Uid != 1000 || st.Gid != 100 || st.Size != w.size || uint32(st.Nlink) != w.nlink ||
					st.Mtim.Sec != mtime.Unix() || st.Rdev != w.rdev {
					t.Errorf("%s: mode %o uid %d gid %d size %d nlink %d mtime %d rdev %d; want mode %o 1000 100 size %d nlink %d mtime %d rdev %d",
						rel, st.Mode, st.Uid, st.Gid, st.Size, st.Nlink, st.Mtim.Sec, st.Rdev, w.mode, w.size, w.nlink, mtime.Unix(), w.rdev)
				}
				if w.target != "" {
					if got, _ := os.Readlink(p); got != w.target {
						t.Errorf("%s: target %q, want %q", rel, got, w.target)
					}
				}
				if w.sum != "" {
					b, err := os.ReadFile(p)
					s := sha256.Sum256(b)
					if err != nil || hex.EncodeToString(s[:]) != w.sum {
						t.Errorf("%s: read %d bytes, %v; sha256 differs from the tar's", rel, len(b), err)
					}
				}
				for k, v := range w.xattrs {
					if got, err := xattr.LGet(p, k); err != nil || string(got) != v {
						t.Errorf("%s: xattr %s = %q %v, want %q", rel, k, got, err, v)
					}
				}
				if w.linkOf != "" {
					var tst syscall.Stat_t
					if err := syscall.Lstat(filepath.Join(mnt, w.linkOf), &tst); err != nil || tst.Ino != st.Ino {
						t.Errorf("%s: inode %d, its link target %s has %d", rel, st.Ino, w.linkOf, tst.Ino)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			for p := range exp {
				if !seen[p] {
					t.Errorf("%s: in the tar, not in the mount", p)
				}
			}
		})
	}
}

// TestStargzOverlayWhiteouts checks the snapshotter's view of the layer:
// whiteouts become 0/0 character devices, opaque markers an xattr.
func TestStargzOverlayWhiteouts(t *testing.T) {
	blob, td := buildLayer(t, buildTar(t, layerCorpus()), estargz.WithMinChunkSize(65536))
	sg, err := OpenStargz(context.Background(), &memContent{blob}, "test", td)
	if err != nil {
		t.Fatal(err)
	}
	ents, err := sg.Entries(EntriesOptions{OverlayWhiteouts: true})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Entry{}
	for _, e := range ents {
		got[e.Path] = e
	}
	if e, ok := got["etc/gone"]; !ok || e.Mode&os.ModeCharDevice == 0 || e.Rdev != 0 {
		t.Errorf("whiteout etc/.wh.gone = %+v, want a 0/0 character device etc/gone", e)
	}
	if _, ok := got["etc/.wh.gone"]; ok {
		t.Error("whiteout file kept under its tar name")
	}
	if string(got["var/opaque"].Xattrs[opaqueXattr]) != "y" {
		t.Errorf("opaque dir xattrs = %v", got["var/opaque"].Xattrs)
	}
	if _, ok := got["var/opaque/.wh..wh..opq"]; ok {
		t.Error("opaque marker kept as a file")
	}
}

func TestStargzTOCDigestMismatch(t *testing.T) {
	blob, _ := buildLayer(t, buildTar(t, layerCorpus()))
	_, err := OpenStargz(context.Background(), &memContent{blob}, "test", digest.FromString("other"))
	if err == nil || !strings.Contains(err.Error(), "verify TOC") {
		t.Fatalf("open with a wrong TOC digest: %v", err)
	}
}

// TestStargzPrefetchLandmarks: files before .prefetch.landmark form the
// prefetch range; .no.prefetch.landmark turns prefetch off.
func TestStargzPrefetchLandmarks(t *testing.T) {
	tarb := buildTar(t, layerCorpus())
	tests := []struct {
		name string
		opts []estargz.Option
		want bool
	}{
		{"prioritized", []estargz.Option{estargz.WithPrioritizedFiles([]string{"bin/busybox"})}, true},
		{"none", nil, false},
	}
	for _, tt := range tests {
		blob, td := buildLayer(t, tarb, tt.opts...)
		sg, err := OpenStargz(context.Background(), &memContent{blob}, "test", td)
		if err != nil {
			t.Fatal(err)
		}
		n := sg.PrefetchRange()
		if (n > 0) != tt.want {
			t.Errorf("%s: prefetch range %d, want some: %v", tt.name, n, tt.want)
		}
		if tt.want != !sg.NoPrefetch() {
			t.Errorf("%s: NoPrefetch = %v", tt.name, sg.NoPrefetch())
		}
	}
	_ = errors.New
}

// TestStargzChunkReadAhead: a reader moving from one chunk of a file into
// the next gets the chunk after that decompressed ahead; reads that stay in
// one chunk or jump start nothing.
func TestStargzChunkReadAhead(t *testing.T) {
	const chunk = 64 << 10
	data := make([]byte, 8*chunk)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	files := []tarFile{{name: "big", typ: tar.TypeReg, mode: 0o644, data: data}}
	tests := []struct {
		name      string
		offsets   []int64 // 4 KiB reads
		wantAhead int64
		chunkIn   int64 // a chunk that must end up in the cache (-1: none)
	}{
		{"sequential into the second chunk", []int64{0, 4096, chunk - 4096, chunk, chunk + 4096}, 1, 2},
		{"on through four chunks", []int64{0, chunk, 2 * chunk, 3 * chunk}, 3, 4},
		{"within one chunk", []int64{0, 4096, 8192, chunk - 4096}, 0, -1},
		{"jumps", []int64{0, 5 * chunk, 2 * chunk, 7 * chunk}, 0, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blob, td := buildLayer(t, buildTar(t, files), estargz.WithChunkSize(chunk))
			sg, err := OpenStargz(context.Background(), &memContent{blob}, "test", td)
			if err != nil {
				t.Fatal(err)
			}
			entries, err := sg.Entries(EntriesOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var f FileData
			for _, e := range entries {
				if e.Path == "big" {
					f = e.Data
				}
			}
			if f == nil {
				t.Fatal("no entry big")
			}
			buf := make([]byte, 4096)
			for _, off := range tt.offsets {
				if _, err := f.ReadAt(context.Background(), buf, off); err != nil {
					t.Fatalf("read at %d: %v", off, err)
				}
				if !bytes.Equal(buf, data[off:off+4096]) {
					t.Fatalf("bytes at %d differ from the file's", off)
				}
			}
			if got := sg.ahead.Load(); got != tt.wantAhead {
				t.Errorf("%d chunks decompressed ahead, want %d", got, tt.wantAhead)
			}
			if tt.chunkIn < 0 {
				return
			}
			ce, ok := sg.r.ChunkEntryForOffset("big", tt.chunkIn*chunk)
			if !ok {
				t.Fatalf("no chunk %d", tt.chunkIn)
			}
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
				if b, ok := sg.cache.get(chunkID{ce.Offset, ce.InnerOffset}); ok {
					if !bytes.Equal(b, data[tt.chunkIn*chunk:(tt.chunkIn+1)*chunk]) {
						t.Fatal("the chunk decompressed ahead differs from the file's bytes")
					}
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("chunk %d was not decompressed ahead", tt.chunkIn)
				}
			}
		})
	}
}
