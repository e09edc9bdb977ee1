package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/containerd/content"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/damselfly-p2p/damselfly/manifest/oci"
)

// memRegistry is an in-memory remotes.Fetcher and remotes.Pusher.
type memRegistry struct {
	mu     sync.Mutex
	blobs  map[digest.Digest][]byte
	pushes int
}

func newMemRegistry() *memRegistry { return &memRegistry{blobs: map[digest.Digest][]byte{}} }

func (r *memRegistry) add(data []byte) digest.Digest {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := digest.FromBytes(data)
	r.blobs[d] = data
	return d
}

func (r *memRegistry) Fetch(_ context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.blobs[desc.Digest]
	if !ok {
		return nil, fmt.Errorf("%s: %w", desc.Digest, errdefs.ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (r *memRegistry) Push(_ context.Context, desc ocispec.Descriptor) (content.Writer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.blobs[desc.Digest]; ok {
		return nil, fmt.Errorf("%s: %w", desc.Digest, errdefs.ErrAlreadyExists)
	}
	return &memWriter{r: r}, nil
}

type memWriter struct {
	r   *memRegistry
	buf bytes.Buffer
}

func (w *memWriter) Write(p []byte) (int, error) { return w.buf.Write(p) }
func (w *memWriter) Close() error                { return nil }
func (w *memWriter) Digest() digest.Digest       { return digest.FromBytes(w.buf.Bytes()) }
func (w *memWriter) Status() (content.Status, error) {
	return content.Status{Offset: int64(w.buf.Len())}, nil
}
func (w *memWriter) Truncate(int64) error { return nil }
func (w *memWriter) Commit(_ context.Context, size int64, expected digest.Digest, _ ...content.Opt) error {
	if int64(w.buf.Len()) != size || w.Digest() != expected {
		return fmt.Errorf("commit: got %d bytes %s, want %d %s", w.buf.Len(), w.Digest(), size, expected)
	}
	w.r.add(w.buf.Bytes())
	w.r.mu.Lock()
	w.r.pushes++
	w.r.mu.Unlock()
	return nil
}

var specsV2 = specs.Versioned{SchemaVersion: 2}

type tarFile struct {
	name, body, link string
}

func makeTar(t *testing.T, files []tarFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: 0o755, Size: int64(len(f.body)), Typeflag: tar.TypeReg}
		switch {
		case f.link != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, f.link, 0
		case strings.HasSuffix(f.name, "/"):
			h.Typeflag = tar.TypeDir
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(f.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gz(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zst(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	w, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	r, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkEStargzLayer verifies a converted layer blob against its
// descriptor and diff ID, and returns the reader of its TOC.
func checkEStargzLayer(t *testing.T, blob []byte, d ocispec.Descriptor, diffID digest.Digest) *estargz.Reader {
	t.Helper()
	if d.MediaType != oci.MediaTypeOCILayerGzip {
		t.Errorf("media type %q", d.MediaType)
	}
	if digest.FromBytes(blob) != d.Digest || int64(len(blob)) != d.Size {
		t.Errorf("descriptor %s/%d does not match blob %s/%d", d.Digest, d.Size, digest.FromBytes(blob), len(blob))
	}
	r, err := estargz.Open(io.NewSectionReader(bytes.NewReader(blob), 0, int64(len(blob))))
	if err != nil {
		t.Fatalf("estargz.Open: %v", err)
	}
	if got := r.TOCDigest().String(); got != d.Annotations[estargz.TOCJSONDigestAnnotation] {
		t.Errorf("TOC digest %s, annotation %q", got, d.Annotations[estargz.TOCJSONDigestAnnotation])
	}
	raw := gunzip(t, blob)
	if got := digest.FromBytes(raw); got != diffID {
		t.Errorf("diff id %s, sha256 of the uncompressed layer %s", diffID, got)
	}
	if got := d.Annotations[estargz.StoreUncompressedSizeAnnotation]; got != strconv.Itoa(len(raw)) {
		t.Errorf("uncompressed size annotation %q, real %d", got, len(raw))
	}
	return r
}

func TestConvertLayerFormats(t *testing.T) {
	files := []tarFile{
		{name: "bin/"},
		{name: "bin/busybox", body: strings.Repeat("busybox!", 5000)},
		{name: "bin/sh", link: "busybox"},
		{name: "etc/"},
		{name: "etc/hello", body: "hello\n"},
		{name: "etc/.wh.gone", body: ""},
	}
	rawTar := makeTar(t, files)
	for name, blob := range map[string][]byte{
		"gzip":  gz(t, rawTar),
		"plain": rawTar,
		"zstd":  zst(t, rawTar),
		"estargz-again": func() []byte { // a layer converted twice keeps one TOC
			b, err := estargz.Build(io.NewSectionReader(bytes.NewReader(rawTar), 0, int64(len(rawTar))))
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			out, _ := io.ReadAll(b)
			return out
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			reg := newMemRegistry()
			l := ocispec.Descriptor{MediaType: oci.MediaTypeDockerLayerGzip, Digest: reg.add(blob), Size: int64(len(blob)),
				Annotations: map[string]string{"keep": "me", "containerd.io/snapshot/stargz/toc.digest": "sha256:stale"}}
			o := &convertOptions{compressionLevel: gzip.BestSpeed, chunkSize: 4096, jobs: 1}
			res, err := convertLayer(context.Background(), reg, reg, l, []string{"/bin/sh", "/etc/hello", "/not/there"}, o)
			if err != nil {
				t.Fatal(err)
			}
			if res.existed || reg.pushes != 1 {
				t.Errorf("existed %v pushes %d", res.existed, reg.pushes)
			}
			if res.desc.Annotations["keep"] != "me" {
				t.Errorf("annotations %v", res.desc.Annotations)
			}
			if len(res.missed) != 1 || res.missed[0] != "/not/there" {
				t.Errorf("missed %v", res.missed)
			}
			r := checkEStargzLayer(t, reg.blobs[res.desc.Digest], res.desc, res.diffID)
			if res.toc != r.TOCDigest() {
				t.Errorf("result toc %s, blob %s", res.toc, r.TOCDigest())
			}
			if _, ok := r.Lookup(estargz.PrefetchLandmark); !ok {
				t.Error("no prefetch landmark with prioritized files")
			}
			e, ok := r.Lookup("bin/busybox")
			if !ok || e.Size != 40000 {
				t.Fatalf("bin/busybox: %v %+v", ok, e)
			}
			if e.ChunkSize != 4096 { // --chunk-size 4K splits the 40000-byte file
				t.Errorf("chunk size not applied: %+v", e)
			}
			sr, err := r.OpenFile("bin/busybox")
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(io.NewSectionReader(sr, 0, e.Size))
			if string(got) != files[1].body {
				t.Error("bin/busybox content differs")
			}
			if _, ok := r.Lookup(".wh.gone"); ok {
				t.Error("whiteout at wrong path")
			}
			if _, ok := r.Lookup("etc/.wh.gone"); !ok {
				t.Error("whiteout lost")
			}

			// Converting again pushes nothing new (same options, same bytes).
			o.buildWorkers = 1
			a, err := convertLayer(context.Background(), reg, reg, l, nil, o)
			if err != nil {
				t.Fatal(err)
			}
			b, err := convertLayer(context.Background(), reg, reg, l, nil, o)
			if err != nil {
				t.Fatal(err)
			}
			if a.desc.Digest != b.desc.Digest || !b.existed {
				t.Errorf("reconversion: %s vs %s, existed %v", a.desc.Digest, b.desc.Digest, b.existed)
			}
		})
	}
}

func TestConvertLayerBadBlob(t *testing.T) {
	reg := newMemRegistry()
	blob := gz(t, makeTar(t, []tarFile{{name: "a", body: "x"}}))
	d := reg.add(blob)
	o := &convertOptions{compressionLevel: 1, jobs: 1}
	// Wrong digest: registry served other bytes.
	reg.blobs[d] = append([]byte(nil), blob...)
	reg.blobs[d][len(blob)-1] ^= 0xff
	if _, err := convertLayer(context.Background(), reg, reg, ocispec.Descriptor{MediaType: oci.MediaTypeOCILayerGzip, Digest: d, Size: int64(len(blob))}, nil, o); err == nil || !strings.Contains(err.Error(), "digest") {
		t.Errorf("corrupt blob: %v", err)
	}
	// Not a tar at all.
	junk := gz(t, []byte(strings.Repeat("not a tar", 100)))
	jd := reg.add(junk)
	if _, err := convertLayer(context.Background(), reg, reg, ocispec.Descriptor{MediaType: oci.MediaTypeOCILayerGzip, Digest: jd, Size: int64(len(junk))}, nil, o); err == nil {
		t.Error("junk layer: want error")
	}
	if reg.pushes != 0 {
		t.Errorf("pushed %d blobs for bad input", reg.pushes)
	}
}

func TestFetchImageManifest(t *testing.T) {
	reg := newMemRegistry()
	put := func(v any) ocispec.Descriptor {
		b, _ := json.Marshal(v)
		return ocispec.Descriptor{Digest: reg.add(b), Size: int64(len(b))}
	}
	cfg := []byte(`{"rootfs":{"type":"layers","diff_ids":[]}}`)
	mk := func(arch string) ocispec.Descriptor {
		d := put(ocispec.Manifest{Versioned: specsV2, MediaType: oci.MediaTypeOCIManifest,
			Config:      ocispec.Descriptor{MediaType: oci.MediaTypeOCIConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))},
			Annotations: map[string]string{"arch": arch}})
		d.MediaType = oci.MediaTypeOCIManifest
		d.Platform = &ocispec.Platform{OS: "linux", Architecture: arch}
		return d
	}
	amd, arm := mk("amd64"), mk("arm64")
	inner := put(ocispec.Index{Versioned: specsV2, MediaType: oci.MediaTypeOCIIndex, Manifests: []ocispec.Descriptor{amd, arm}})
	inner.MediaType = oci.MediaTypeOCIIndex
	inner.Platform = &ocispec.Platform{OS: "linux", Architecture: "arm64"}
	inner2 := inner
	inner2.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	top := put(ocispec.Index{Versioned: specsV2, Manifests: []ocispec.Descriptor{inner, inner2}})
	top.MediaType = "application/octet-stream" // registry did not say; detected from the document

	for _, arch := range []string{"amd64", "arm64"} {
		d, m, err := fetchImageManifest(context.Background(), reg, top, ocispec.Platform{OS: "linux", Architecture: arch})
		if err != nil {
			t.Fatal(err)
		}
		if m.Annotations["arch"] != arch {
			t.Errorf("%s: got manifest %s for %s", arch, d.Digest, m.Annotations["arch"])
		}
	}
	if _, _, err := fetchImageManifest(context.Background(), reg, top, ocispec.Platform{OS: "linux", Architecture: "riscv64"}); err == nil ||
		!strings.Contains(err.Error(), "riscv64") {
		t.Errorf("riscv64: %v", err)
	}
	// A manifest whose bytes do not match the digest is refused.
	bad := amd
	reg.blobs[bad.Digest] = bytes.Replace(reg.blobs[bad.Digest], []byte("amd64"), []byte("AMD64"), 1)
	if _, _, err := fetchImageManifest(context.Background(), reg, bad, ocispec.Platform{OS: "linux", Architecture: "amd64"}); err == nil {
		t.Error("tampered manifest: want error")
	}
}

func TestConvertOptions(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "files")
	os.WriteFile(list, []byte("# record\n/bin/sh\n\n/lib/ld.so\n"), 0o644)
	o := &convertOptions{prioritized: []string{"/etc/a", "@" + list, " "}, compressionLevel: 9, jobs: 1}
	got, err := o.prioritizedFiles()
	if err != nil || strings.Join(got, ",") != "/etc/a,/bin/sh,/lib/ld.so" {
		t.Errorf("prioritized %v %v", got, err)
	}
	o.prioritized = []string{"@" + filepath.Join(dir, "missing")}
	if _, err := o.prioritizedFiles(); err == nil {
		t.Error("missing @file: want error")
	}
	if err := o.validate(); err != nil {
		t.Error(err)
	}
	for _, bad := range []convertOptions{{compressionLevel: 10, jobs: 1}, {compressionLevel: 9, jobs: 0}, {compressionLevel: 9, jobs: 1, chunkSize: -1}, {compressionLevel: 9, jobs: 1, minChunkSize: -1}, {compressionLevel: 9, jobs: 1, minChunkSize: 2 << 30}} {
		if err := bad.validate(); err == nil {
			t.Errorf("%+v: want error", bad)
		}
	}
	if nf := notFoundInAny([]string{"/a", "/b", "/c"}, [][]string{{"/a", "/b"}, {"/b"}}); strings.Join(nf, ",") != "/b" {
		t.Errorf("notFoundInAny %v", nf)
	}
}

func TestEsgzLayerDescriptor(t *testing.T) {
	old := ocispec.Descriptor{MediaType: oci.MediaTypeDockerLayerGzip, Digest: digest.FromString("old"), Size: 3, URLs: []string{"http://x"},
		Annotations: map[string]string{"org.opencontainers.image.title": "t", "containerd.io/uncompressed": "sha256:old",
			"containerd.io/snapshot/stargz/toc.digest": "sha256:old"}}
	toc := digest.FromString("toc")
	d := esgzLayerDescriptor(old, digest.FromString("new"), 42, toc, 1234)
	want := map[string]string{"org.opencontainers.image.title": "t", estargz.TOCJSONDigestAnnotation: toc.String(), estargz.StoreUncompressedSizeAnnotation: "1234"}
	if fmt.Sprint(d.Annotations) != fmt.Sprint(want) {
		t.Errorf("annotations %v, want %v", d.Annotations, want)
	}
	if d.MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" || d.Size != 42 || d.URLs != nil {
		t.Errorf("descriptor %+v", d)
	}
	if estargz.TOCJSONDigestAnnotation != "containerd.io/snapshot/stargz/toc.digest" || estargz.StoreUncompressedSizeAnnotation != "io.containers.estargz.uncompressed-size" {
		t.Error("estargz annotation names changed")
	}
}
