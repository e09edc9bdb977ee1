package snapshotter

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/opencontainers/go-digest"

	"github.com/damselfly-p2p/damselfly/fusefs"
	"github.com/damselfly-p2p/damselfly/origin"
	"github.com/damselfly-p2p/damselfly/p2p"
	"github.com/damselfly-p2p/damselfly/supernode"
	"github.com/damselfly-p2p/damselfly/testenv"
	"github.com/damselfly-p2p/damselfly/trust/egress"
)

// eStargzLayer builds a small layer with a whiteout and a file big
// enough to span many pieces.
func eStargzLayer(t *testing.T) ([]byte, digest.Digest) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	big, err := io.ReadAll(testenv.RandomReader(3<<20, 5))
	if err != nil {
		t.Fatal(err)
	}
	files := []struct {
		name string
		data []byte
	}{{"etc/hostname", []byte("lazy\n")}, {"etc/.wh.gone", nil}, {"data/big.bin", big}}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f.data)), ModTime: time.Unix(1e9, 0)}); err != nil {
			t.Fatal(err)
		}
		tw.Write(f.data)
	}
	tw.Close()
	b := buf.Bytes()
	blob, err := estargz.Build(io.NewSectionReader(bytes.NewReader(b), 0, int64(len(b))), estargz.WithMinChunkSize(65536))
	if err != nil {
		t.Fatal(err)
	}
	defer blob.Close()
	data, err := io.ReadAll(blob)
	if err != nil {
		t.Fatal(err)
	}
	return data, blob.TOCDigest()
}

// swarmOpen starts a supernode and a peer and returns an OpenFunc reading
// through them, as df-snapshotter's.
func swarmOpen(t *testing.T, registryHost string) OpenFunc {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	policy, err := egress.New(egress.Options{Allow: []string{registryHost}})
	if err != nil {
		t.Fatal(err)
	}
	sn, err := supernode.New(supernode.Config{DataDir: t.TempDir(), AdvertiseAddr: ln.Addr().String(), Egress: policy, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: sn.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close(); sn.Close() })
	peer, err := p2p.New(p2p.Config{DataDir: t.TempDir(), Supernodes: []string{ln.Addr().String()}, UploadListen: "127.0.0.1:0",
		Log: quiet(), Egress: policy, Source: origin.New(origin.WithLogger(quiet()))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	return func(ctx context.Context, url string, header http.Header) (fusefs.Content, func(), error) {
		l, err := peer.OpenLazy(ctx, p2p.Request{URL: url, Header: header}, p2p.LazyOptions{Prefetch: true})
		if err != nil {
			return nil, nil, err
		}
		return l, func() { l.Close() }, nil
	}
}

// TestRefusedLayerUnpackedThroughTheSwarm: a layer whose lazy mount is
// refused (its TOC does not match the digest the image gives) is unpacked
// from the same swarm download; the registry serves about one copy.
func TestRefusedLayerUnpackedThroughTheSwarm(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("unpacking a layer needs root")
	}
	reg := testenv.NewFakeRegistry(t, testenv.FakeAuth{})
	blob, _ := eStargzLayer(t)
	d := reg.AddBlob(blob)
	f := &FUSELayers{Open: swarmOpen(t, reg.Host), Registry: &Registry{}, ReadTimeout: 30 * time.Second, Unpack: true, Log: quiet()}
	dir := filepath.Join(t.TempDir(), "fs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	layer := Layer{ImageRef: reg.Host + "/app:v1", Digest: d.String(), TOCDigest: digest.FromString("not the TOC").String()}
	if err := f.Mount(context.Background(), dir, layer); err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() { f.Unmount(dir) })
	if typ, mounted := fusefs.MountedType(dir); mounted {
		t.Fatalf("a %s mount at %s; want the layer unpacked", typ, dir)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "etc/hostname")); err != nil || string(b) != "lazy\n" {
		t.Fatalf("etc/hostname: %q %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "data/big.bin")); err != nil || fi.Size() != 3<<20 {
		t.Fatalf("data/big.bin: %v %v", fi, err)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(dir, "etc/gone"), &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFCHR || st.Rdev != 0 {
		t.Errorf("whiteout etc/gone: mode %o rdev %d %v, want an overlay whiteout", st.Mode, st.Rdev, err)
	}
	copies := float64(reg.BlobBytes()) / float64(len(blob))
	t.Logf("registry served %d bytes for a %d-byte layer (%.3f copies)", reg.BlobBytes(), len(blob), copies)
	if copies > 1.05 {
		t.Errorf("the registry served %.2f copies of the layer, want at most 1.05", copies)
	}
	// After a restart the unpacked layer is found as it is.
	f2 := &FUSELayers{Open: func(context.Context, string, http.Header) (fusefs.Content, func(), error) {
		t.Error("a second download after a restart")
		return nil, nil, io.EOF
	}, Registry: &Registry{}, Unpack: true, Log: quiet()}
	if err := f2.Mount(context.Background(), dir, layer); err != nil {
		t.Fatalf("mount after restart: %v", err)
	}
	f2.Unmount(dir)
}

// TestRefusedLayerWithoutUnpack: without Unpack the refusal is the error
// (containerd then downloads the layer).
func TestRefusedLayerWithoutUnpack(t *testing.T) {
	reg := testenv.NewFakeRegistry(t, testenv.FakeAuth{})
	blob, _ := eStargzLayer(t)
	d := reg.AddBlob(blob)
	f := &FUSELayers{Open: swarmOpen(t, reg.Host), Registry: &Registry{}, ReadTimeout: 10 * time.Second, Log: quiet()}
	dir := t.TempDir()
	err := f.Mount(context.Background(), dir, Layer{ImageRef: reg.Host + "/app:v1", Digest: d.String(), TOCDigest: digest.FromString("x").String()})
	if err == nil {
		f.Unmount(dir)
		t.Fatal("mounted a layer whose TOC does not match")
	}
}
