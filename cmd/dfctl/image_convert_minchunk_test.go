package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/damselfly-p2p/damselfly/fusefs"
	"github.com/damselfly-p2p/damselfly/manifest/oci"
)

// blobContent is a converted layer blob in memory, as fusefs reads one.
type blobContent struct{ b []byte }

func (c *blobContent) Size() int64 { return int64(len(c.b)) }
func (c *blobContent) ReadAtContext(_ context.Context, p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(c.b)) {
		return 0, io.EOF
	}
	n := copy(p, c.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
func (c *blobContent) Present() int64   { return int64(len(c.b)) }
func (c *blobContent) Complete() bool   { return true }
func (c *blobContent) DataPath() string { return "" }

// minChunkFiles is a layer of many small files (which --min-chunk-size
// packs into shared gzip streams) and one large file.
func minChunkFiles() []tarFile {
	files := []tarFile{{name: "etc/"}}
	for i := 0; i < 40; i++ {
		files = append(files, tarFile{name: fmt.Sprintf("etc/conf%02d", i), body: strings.Repeat(fmt.Sprintf("line %d\n", i), 50+i)})
	}
	files = append(files,
		tarFile{name: "bin/"},
		tarFile{name: "bin/big", body: strings.Repeat("0123456789abcdef", 20000)}, // 320000 bytes
		tarFile{name: "bin/sh", link: "big"},
		tarFile{name: "zz-last", body: "tail\n"},
	)
	return files
}

// streamsOf groups a layer's regular-file chunks by the compressed
// stream (TOC offset) they live in.
func streamsOf(t *testing.T, r *estargz.Reader, files []tarFile) map[int64][]string {
	t.Helper()
	streams := map[int64][]string{}
	for _, f := range files {
		if f.link != "" || strings.HasSuffix(f.name, "/") {
			continue
		}
		e, ok := r.Lookup(f.name)
		if !ok {
			t.Fatalf("%s: not in the TOC", f.name)
		}
		for off := int64(0); off < e.Size || off == 0; {
			ce, ok := r.ChunkEntryForOffset(f.name, off)
			if !ok {
				t.Fatalf("%s: no chunk at %d", f.name, off)
			}
			streams[ce.Offset] = append(streams[ce.Offset], fmt.Sprintf("%s@%d+%d", f.name, ce.ChunkOffset, ce.InnerOffset))
			if ce.ChunkSize == 0 {
				break
			}
			off = ce.ChunkOffset + ce.ChunkSize
		}
	}
	return streams
}

// TestConvertMinChunkSize converts a layer with and without
// --min-chunk-size: with it, small files share gzip streams (several TOC
// chunks at one offset, found by innerOffset); the layer still mounts
// through fusefs with every file's content intact.
func TestConvertMinChunkSize(t *testing.T) {
	files := minChunkFiles()
	blob := gz(t, makeTar(t, files))
	tests := []struct {
		name         string
		minChunkSize int64
		wantShared   bool // some stream holds several small files
	}{
		{"default", 0, false},
		{"min-chunk-size 64K", 64 << 10, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := newMemRegistry()
			l := ocispec.Descriptor{MediaType: oci.MediaTypeOCILayerGzip, Digest: reg.add(blob), Size: int64(len(blob))}
			o := &convertOptions{compressionLevel: gzip.BestSpeed, jobs: 1, chunkSize: 64 << 10}
			o.minChunkSize.Set(fmt.Sprint(tc.minChunkSize))
			if err := o.validate(); err != nil {
				t.Fatal(err)
			}
			res, err := convertLayer(context.Background(), reg, reg, l, []string{"/etc/conf00"}, o)
			if err != nil {
				t.Fatal(err)
			}
			out := reg.blobs[res.desc.Digest]
			r := checkEStargzLayer(t, out, res.desc, res.diffID)
			streams := streamsOf(t, r, files)
			shared := 0
			for off, members := range streams {
				if len(members) > 1 {
					shared++
					t.Logf("stream at %d: %d chunks", off, len(members))
				}
			}
			if got := shared > 0; got != tc.wantShared {
				t.Errorf("%d streams shared by several chunks, want shared %v", shared, tc.wantShared)
			}
			if tc.wantShared && len(streams) >= 40 {
				t.Errorf("%d streams for 40 small files and one large: small files were not packed", len(streams))
			}
			mountAndCompare(t, out, res, files)
		})
	}
}

// mountAndCompare mounts a converted layer with fusefs (as dfmount and
// df-snapshotter do) and checks every file's content and every symlink.
func mountAndCompare(t *testing.T, blob []byte, res *layerResult, files []tarFile) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	sg, err := fusefs.OpenStargz(context.Background(), &blobContent{blob}, "converted", res.toc)
	if err != nil {
		t.Fatalf("open converted layer: %v", err)
	}
	ents, err := sg.Entries(fusefs.EntriesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	root, err := fusefs.NewTree(ents, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	server, err := fusefs.Mount(mnt, root, fusefs.MountOptions{})
	if err != nil {
		t.Fatalf("mount converted layer: %v", err)
	}
	t.Cleanup(func() {
		if err := server.Unmount(); err != nil {
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	})
	for _, f := range files {
		p := filepath.Join(mnt, f.name)
		switch {
		case f.link != "":
			if got, err := os.Readlink(p); err != nil || got != f.link {
				t.Errorf("%s: link %q %v, want %q", f.name, got, err, f.link)
			}
		case strings.HasSuffix(f.name, "/"):
			if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
				t.Errorf("%s: not a directory in the mount: %v", f.name, err)
			}
		default:
			got, err := os.ReadFile(p)
			if err != nil || !bytes.Equal(got, []byte(f.body)) {
				t.Errorf("%s: read %d bytes (%v), want the tar's %d", f.name, len(got), err, len(f.body))
			}
		}
	}
}
