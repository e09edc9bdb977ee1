//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/pkg/xattr"

	"github.com/damselfly-p2p/damselfly/fusefs"
	"github.com/damselfly-p2p/damselfly/testenv"
)

// startMount runs dfmount URL MNT with args and waits until the mount is
// live. Cleanup detaches the mount even if the process was killed.
func startMount(t *testing.T, bin, url, mnt string, args ...string) *testenv.Proc {
	t.Helper()
	p := testenv.Start(t, bin, "dfmount", append(append([]string{}, args...), url, mnt)...)
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		// A stale mount from a killed dfmount also shows in mountinfo;
		// only a mount whose root answers is live.
		if typ, ok := fusefs.MountedType(mnt); ok && typ == "fuse."+fusefs.FSName && fusefs.Alive(mnt) {
			return p
		}
		if p.Exited() {
			t.Fatalf("dfmount exited before mounting:\n%s", p.Tail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("dfmount did not mount within a minute:\n%s", p.Tail(30))
	return nil
}

// stopMount sends SIGTERM and waits for a clean exit.
func stopMount(t *testing.T, p *testenv.Proc) {
	t.Helper()
	p.Signal(syscall.SIGTERM)
	if code, err := p.Wait(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("dfmount did not exit cleanly: %d %v\n%s", code, err, p.Tail(20))
	}
}

func rangeGet(t *testing.T, url string, off, n int64) []byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+n-1))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}

func progress(t *testing.T, path string) (present, size int64) {
	t.Helper()
	v, err := xattr.Get(path, fusefs.XattrProgress)
	if err != nil {
		t.Fatalf("getxattr %s: %v", path, err)
	}
	a, b, _ := strings.Cut(string(v), "/")
	present, _ = strconv.ParseInt(a, 10, 64)
	size, _ = strconv.ParseInt(b, 10, 64)
	return present, size
}

func waitComplete(t *testing.T, path string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if p, s := progress(t, path); p == s {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	p, s := progress(t, path)
	t.Fatalf("%s: only %d of %d bytes after %s", path, p, s, timeout)
}

func sha256Of(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestMountLazyThenPrefetch: scattered 4 KiB reads of a cold 1 GiB file
// fetch only a few pieces; a remount with prefetch completes the file and
// its sha256 through the mount equals the origin's.
func TestMountLazyThenPrefetch(t *testing.T) {
	bin := bins(t)
	const size = 1 << 30
	origin := testenv.NewOrigin(t)
	want := origin.AddRandom("big.bin", size, 11)
	url := origin.URL("big.bin")
	offsets := []int64{0, 512<<20 + 12345, size - 4096}
	expect := map[int64][]byte{}
	for _, off := range offsets {
		expect[off] = rangeGet(t, url, off, 4096)
	}
	origin.ResetCounters()
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(origin.Addr())...)
	dir, mnt := t.TempDir(), t.TempDir()
	args := []string{"--supernode", sn.Addr, "--data-dir", dir, "--no-daemon", "--upload-listen", "127.0.0.1:0"}
	p := startMount(t, bin, url, mnt, append(args, "--prefetch=false")...)
	file := filepath.Join(mnt, "big.bin")
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range offsets {
		buf := make([]byte, 4096)
		if _, err := f.ReadAt(buf, off); err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		if !bytes.Equal(buf, expect[off]) {
			t.Fatalf("bytes at %d differ from the origin's", off)
		}
	}
	f.Close()
	served := origin.BytesServed("big.bin")
	t.Logf("3 scattered reads: origin served %d bytes of a %d-byte file", served, size)
	if served > 8*pieceSize(size) {
		t.Fatalf("origin served %d bytes for 3 reads of 4 KiB; want a few pieces (<= %d)", served, 8*pieceSize(size))
	}
	if fi, err := os.Stat(file); err != nil || fi.Size() != size {
		t.Fatalf("stat: %v, size %d", err, fi.Size())
	}
	if src, err := xattr.Get(file, fusefs.XattrSource); err != nil || string(src) != url {
		t.Errorf("source xattr = %q, %v", src, err)
	}
	stopMount(t, p)

	p = startMount(t, bin, url, mnt, args...)
	waitComplete(t, file, 3*time.Minute)
	if got := sha256Of(t, file); got != want {
		t.Fatalf("sha256 through the mount %s, want %s", got, want)
	}
	if served := origin.BytesServed("big.bin"); served > size+4*pieceSize(size) {
		t.Errorf("origin served %d bytes in all, want about one copy", served)
	}
	stopMount(t, p)
}

// TestMountResumeAfterKill kills dfmount at about half, remounts (over the
// stale mount) and checks present bytes are not fetched again.
func TestMountResumeAfterKill(t *testing.T) {
	bin := bins(t)
	const size = 64 << 20
	origin := testenv.NewOrigin(t)
	want := origin.AddRandom("f.bin", size, 12)
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(origin.Addr())...)
	dir, mnt := t.TempDir(), t.TempDir()
	args := []string{"--supernode", sn.Addr, "--data-dir", dir, "--no-daemon", "--upload-listen", "127.0.0.1:0",
		"--prefetch-limit", "16M"}
	p := startMount(t, bin, origin.URL("f.bin"), mnt, args...)
	waitPresent(t, dir, int(size/pieceSize(size)/2), time.Minute)
	p.Kill9()
	if fusefs.Alive(mnt) {
		t.Fatal("mount still answers after kill -9 of its dfmount")
	}
	present := presentPieces(t, dir)
	task := sn.Status(t).Task(origin.URL("f.bin"))
	if task == nil {
		t.Fatal("task missing from status")
	}
	servedBefore := task.BytesServed
	p = startMount(t, bin, origin.URL("f.bin"), mnt, args...)
	file := filepath.Join(mnt, "f.bin")
	waitComplete(t, file, 2*time.Minute)
	if got := sha256Of(t, file); got != want {
		t.Fatalf("sha256 %s, want %s", got, want)
	}
	refetched := sn.Status(t).Task(origin.URL("f.bin")).BytesServed - servedBefore
	missing := size - int64(present)*pieceSize(size)
	t.Logf("at the kill the store held %d pieces; the remount fetched %d bytes for the %d missing", present, refetched, missing)
	if refetched > missing+pieceSize(size) {
		t.Errorf("remount fetched %d bytes; want only the missing %d (+1 piece)", refetched, missing)
	}
	stopMount(t, p)
}

// TestMountOffline stops the origin and the supernode under a mount.
func TestMountOffline(t *testing.T) {
	bin := bins(t)
	const size = 16 << 20
	origin := testenv.NewOrigin(t)
	origin.AddRandom("f.bin", size, 13)
	url := origin.URL("f.bin")
	first := rangeGet(t, url, 0, 4096)
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(origin.Addr())...)
	dir, mnt := t.TempDir(), t.TempDir()
	p := startMount(t, bin, url, mnt, "--supernode", sn.Addr, "--data-dir", dir, "--no-daemon",
		"--upload-listen", "127.0.0.1:0", "--prefetch=false", "--read-timeout", "3s")
	file := filepath.Join(mnt, "f.bin")
	buf := make([]byte, 4096)
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	origin.Close()
	sn.Proc.Kill9()
	// Present bytes still read.
	if _, err := f.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, first) {
		t.Fatalf("re-read of a present piece: %v", err)
	}
	// A missing piece fails with EIO, within the read timeout (plus slack).
	start := time.Now()
	_, err = f.ReadAt(buf, size-4096)
	took := time.Since(start)
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("read of a missing piece offline: %v, want EIO", err)
	}
	if took > 30*time.Second {
		t.Fatalf("EIO took %s with --read-timeout 3s", took)
	}
	// Metadata works.
	ents, err := os.ReadDir(mnt)
	if err != nil || len(ents) != 1 {
		t.Fatalf("ls: %v %v", ents, err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Size() != size {
		t.Fatalf("stat offline: %v", err)
	}
	f.Close()
	u := testenv.Start(t, bin, "dfmount", "-u", mnt)
	waitOK(t, u, 30*time.Second)
	if code, err := p.Wait(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("dfmount after -u: %d %v", code, err)
	}
	// Remount with everything down: served from the store.
	p = startMount(t, bin, url, mnt, "--supernode", sn.Addr, "--data-dir", dir, "--no-daemon",
		"--upload-listen", "127.0.0.1:0", "--prefetch=false", "--read-timeout", "2s")
	if fi, err := os.Stat(file); err != nil || fi.Size() != size {
		t.Fatalf("stat after offline remount: %v", err)
	}
	got := make([]byte, 4096)
	g, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := g.ReadAt(got, 0); err != nil || !bytes.Equal(got, first) {
		t.Fatalf("offline remount read: %v", err)
	}
	g.Close()
	stopMount(t, p)
}

// TestMountTwoPeers: the second mount of a URL gets most bytes from the
// first mount's peer.
func TestMountTwoPeers(t *testing.T) {
	bin := bins(t)
	const size = 32 << 20
	origin := testenv.NewOrigin(t)
	want := origin.AddRandom("f.bin", size, 14)
	url := origin.URL("f.bin")
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(origin.Addr())...)
	common := []string{"--supernode", sn.Addr, "--no-daemon", "--upload-listen", "127.0.0.1:0"}
	mnt1, mnt2 := t.TempDir(), t.TempDir()
	p1 := startMount(t, bin, url, mnt1, append(common, "--data-dir", t.TempDir())...)
	waitComplete(t, filepath.Join(mnt1, "f.bin"), time.Minute)
	before := sn.Status(t).Task(url).BytesServed
	p2 := startMount(t, bin, url, mnt2, append(common, "--data-dir", t.TempDir())...)
	if got := sha256Of(t, filepath.Join(mnt2, "f.bin")); got != want {
		t.Fatalf("second mount sha256 %s, want %s", got, want)
	}
	waitComplete(t, filepath.Join(mnt2, "f.bin"), time.Minute)
	fromSeed := sn.Status(t).Task(url).BytesServed - before
	t.Logf("second mount: %d of %d bytes from the supernode's seed", fromSeed, size)
	if fromSeed > size/2 {
		t.Errorf("second mount took %d bytes from the seed; want most from the first mount", fromSeed)
	}
	stopMount(t, p2)
	stopMount(t, p1)
}

type tarEntry struct {
	name, body, link string
	mode             int64
	typ              byte
}

// TestMountEstargz mounts an eStargz blob built here and compares the tree
// with the tar it came from.
func TestMountEstargz(t *testing.T) {
	bin := bins(t)
	big := strings.Repeat("damselfly chunk data\n", 300000) // ~6 MiB: several chunks
	ents := []tarEntry{
		{name: "bin/", typ: tar.TypeDir, mode: 0o755},
		{name: "bin/tool", body: "#!/bin/sh\necho hi\n", typ: tar.TypeReg, mode: 0o755},
		{name: "etc/", typ: tar.TypeDir, mode: 0o755},
		{name: "etc/conf", body: "a=1\n", typ: tar.TypeReg, mode: 0o644},
		{name: "data/", typ: tar.TypeDir, mode: 0o700},
		{name: "data/big", body: big, typ: tar.TypeReg, mode: 0o600},
		{name: "data/empty", body: "", typ: tar.TypeReg, mode: 0o644},
		{name: "link", link: "etc/conf", typ: tar.TypeSymlink, mode: 0o777},
	}
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Mode: e.mode, Typeflag: e.typ, Linkname: e.link, Size: int64(len(e.body)),
			ModTime: time.Unix(1700000000, 0)}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	blob, err := estargz.Build(io.NewSectionReader(bytes.NewReader(tb.Bytes()), 0, int64(tb.Len())),
		estargz.WithChunkSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "layer.stargz")
	out, _ := os.Create(path)
	io.Copy(out, blob)
	blob.Close()
	out.Close()
	origin := testenv.NewOrigin(t)
	origin.AddFile("layer.stargz", path)
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(origin.Addr())...)
	mnt := t.TempDir()
	p := startMount(t, bin, origin.URL("layer.stargz"), mnt, "--type", "estargz", "--toc-digest", blob.TOCDigest().String(),
		"--supernode", sn.Addr, "--data-dir", t.TempDir(), "--no-daemon", "--upload-listen", "127.0.0.1:0", "--prefetch=false")
	for _, e := range ents {
		full := filepath.Join(mnt, e.name)
		fi, err := os.Lstat(full)
		if err != nil {
			t.Fatalf("%s: %v", e.name, err)
		}
		switch e.typ {
		case tar.TypeDir:
			if !fi.IsDir() || fi.Mode().Perm() != os.FileMode(e.mode) {
				t.Errorf("%s: mode %v, want dir %o", e.name, fi.Mode(), e.mode)
			}
		case tar.TypeSymlink:
			target, err := os.Readlink(full)
			if err != nil || target != e.link {
				t.Errorf("%s: readlink %q %v, want %q", e.name, target, err, e.link)
			}
		case tar.TypeReg:
			if fi.Mode().Perm() != os.FileMode(e.mode) || fi.Size() != int64(len(e.body)) {
				t.Errorf("%s: mode %v size %d, want %o %d", e.name, fi.Mode(), fi.Size(), e.mode, len(e.body))
			}
			got, err := os.ReadFile(full)
			if err != nil || string(got) != e.body {
				t.Errorf("%s: content differs (%d bytes, %v)", e.name, len(got), err)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(mnt, "stargz.index.json")); err == nil {
		t.Error("the TOC file shows in the tree")
	}
	stopMount(t, p)
}

// TestMountDataset mounts a dataset manifest with relative URLs.
func TestMountDataset(t *testing.T) {
	bin := bins(t)
	origin := testenv.NewOrigin(t)
	a := origin.AddRandom("ds/a.bin", 3<<20, 21)
	b := origin.AddRandom("ds/sub/b.bin", 100, 22)
	man := fmt.Sprintf(`{"version":1,"files":[
	  {"path":"train/a.bin","size":%d,"digest":"sha256:%s","url":"a.bin"},
	  {"path":"train/deep/b.bin","size":100,"digest":"sha256:%s","url":"sub/b.bin","mode":"0640"}],
	 "symlinks":[{"path":"latest","target":"train/a.bin"}]}`, 3<<20, a, b)
	mpath := filepath.Join(t.TempDir(), "manifest.json")
	os.WriteFile(mpath, []byte(man), 0o644)
	origin.AddFile("ds/manifest.json", mpath)
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(origin.Addr())...)
	mnt := t.TempDir()
	// The entries are on loopback, which a remote manifest may not name
	// unless allowed.
	p := startMount(t, bin, origin.URL("ds/manifest.json"), mnt, "--type", "dataset", "--supernode", sn.Addr,
		"--data-dir", t.TempDir(), "--no-daemon", "--upload-listen", "127.0.0.1:0", "--allow-origin", origin.Addr())
	tests := []struct {
		path, sha string
		mode      os.FileMode
	}{
		{"train/a.bin", a, 0o444},
		{"train/deep/b.bin", b, 0o640},
		{"latest", a, 0},
	}
	for _, tt := range tests {
		if got := sha256Of(t, filepath.Join(mnt, tt.path)); got != tt.sha {
			t.Errorf("%s: sha256 %s, want %s", tt.path, got, tt.sha)
		}
		if tt.mode != 0 {
			fi, _ := os.Stat(filepath.Join(mnt, tt.path))
			if fi.Mode().Perm() != tt.mode {
				t.Errorf("%s: mode %v, want %v", tt.path, fi.Mode().Perm(), tt.mode)
			}
		}
	}
	if target, _ := os.Readlink(filepath.Join(mnt, "latest")); target != "train/a.bin" {
		t.Errorf("latest -> %q", target)
	}
	if d, err := xattr.Get(filepath.Join(mnt, "train/a.bin"), fusefs.XattrDigest); err != nil || string(d) != "sha256:"+a {
		t.Errorf("digest xattr %q %v", d, err)
	}
	stopMount(t, p)
}

// TestMountViaDaemon reads a mount backed by a running dfdaemon.
func TestMountViaDaemon(t *testing.T) {
	bin := bins(t)
	origin := testenv.NewOrigin(t)
	want := origin.AddRandom("f.bin", 8<<20, 23)
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(origin.Addr())...)
	d := testenv.StartDaemon(t, bin, sn.Addr)
	mnt := t.TempDir()
	p := startMount(t, bin, origin.URL("f.bin"), mnt, "--daemon-sock", d.Sock, "--prefetch=false")
	if !strings.Contains(p.Log(), "through dfdaemon") {
		t.Errorf("mount did not use the daemon:\n%s", p.Tail(5))
	}
	if got := sha256Of(t, filepath.Join(mnt, "f.bin")); got != want {
		t.Fatalf("sha256 %s, want %s", got, want)
	}
	stopMount(t, p)
}

// TestMountDaemonMode: --daemon returns once the mount is ready and leaves
// a background dfmount serving it; dfmount -u ends it.
func TestMountDaemonMode(t *testing.T) {
	bin := bins(t)
	origin := testenv.NewOrigin(t)
	want := origin.AddRandom("f.bin", 4<<20, 24)
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(origin.Addr())...)
	dir, mnt := t.TempDir(), t.TempDir()
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	p := testenv.Start(t, bin, "dfmount", "--daemon", "--supernode", sn.Addr, "--data-dir", dir, "--no-daemon",
		"--upload-listen", "127.0.0.1:0", origin.URL("f.bin"), mnt)
	waitOK(t, p, time.Minute)
	if !fusefs.Alive(mnt) {
		t.Fatal("dfmount --daemon returned but nothing is mounted")
	}
	if got := sha256Of(t, filepath.Join(mnt, "f.bin")); got != want {
		t.Fatalf("sha256 %s, want %s", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "dfmount.log")); err != nil {
		t.Errorf("no background log: %v", err)
	}
	u := testenv.Start(t, bin, "dfmount", "-u", mnt)
	waitOK(t, u, 30*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := fusefs.MountedType(mnt); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still mounted after dfmount -u")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A second -u on a plain directory says it is not mounted.
	u = testenv.Start(t, bin, "dfmount", "-u", mnt)
	if code, _ := u.Wait(30 * time.Second); code == 0 || !strings.Contains(u.Log(), "not mounted") {
		t.Fatalf("dfmount -u of an unmounted dir: exit %d\n%s", code, u.Log())
	}
}

// craftTOC rewrites an eStargz blob's TOC after edit changed it; the
// payload stays as it is.
func craftTOC(t *testing.T, blob []byte, edit func(*estargz.JTOC)) []byte {
	t.Helper()
	sr := io.NewSectionReader(bytes.NewReader(blob), 0, int64(len(blob)))
	tocOff, _, err := estargz.OpenFooter(sr)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob[tocOff:]))
	if err != nil {
		t.Fatal(err)
	}
	zr.Multistream(false)
	tr := tar.NewReader(zr)
	if _, err := tr.Next(); err != nil {
		t.Fatal(err)
	}
	var toc estargz.JTOC
	if err := json.NewDecoder(tr).Decode(&toc); err != nil {
		t.Fatal(err)
	}
	edit(&toc)
	var out bytes.Buffer
	out.Write(blob[:tocOff])
	if _, err := estargz.NewGzipCompressor().WriteTOCAndFooter(&out, tocOff, &toc, sha256.New()); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestMountEstargzHostile mounts crafted eStargz layers next to a good
// min-chunk-size one, all with one dfmount each: a TOC that cannot be
// trusted (huge or negative chunk sizes, chunks past the end of the blob)
// fails its mount with a clear error; a file whose chunk is broken reads
// as EIO; every other mount stays up and lists.
func TestMountEstargzHostile(t *testing.T) {
	bin := bins(t)
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	big := strings.Repeat("hostile chunk data\n", 50000)
	for _, f := range []struct{ name, body string }{{"etc/a", "a\n"}, {"etc/b", "bb\n"}, {"data/big", big}} {
		tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(f.body)), ModTime: time.Unix(1700000000, 0)})
		tw.Write([]byte(f.body))
	}
	tw.Close()
	b, err := estargz.Build(io.NewSectionReader(bytes.NewReader(tb.Bytes()), 0, int64(tb.Len())),
		estargz.WithChunkSize(65536), estargz.WithMinChunkSize(65536))
	if err != nil {
		t.Fatal(err)
	}
	good, err := io.ReadAll(b)
	b.Close()
	if err != nil {
		t.Fatal(err)
	}
	onBig := func(typ string, f func(e *estargz.TOCEntry)) func(*estargz.JTOC) {
		return func(toc *estargz.JTOC) {
			for _, e := range toc.Entries {
				if strings.HasSuffix(e.Name, "data/big") && e.Type == typ {
					f(e)
					return
				}
			}
			t.Fatalf("no %s entry for data/big", typ)
		}
	}
	layers := map[string][]byte{
		"good.stargz":         good,
		"huge-chunk.stargz":   craftTOC(t, good, onBig("reg", func(e *estargz.TOCEntry) { e.ChunkSize = 1 << 40 })),
		"neg-chunk.stargz":    craftTOC(t, good, onBig("reg", func(e *estargz.TOCEntry) { e.ChunkSize = -1 })),
		"past-end.stargz":     craftTOC(t, good, onBig("chunk", func(e *estargz.TOCEntry) { e.Offset = 1 << 40 })),
		"broken-chunk.stargz": craftTOC(t, good, onBig("chunk", func(e *estargz.TOCEntry) { e.InnerOffset = 1 << 40 })),
	}
	dir := t.TempDir()
	origin := testenv.NewOrigin(t)
	for name, data := range layers {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		origin.AddFile(name, p)
	}
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(origin.Addr())...)
	args := func() []string {
		return []string{"--type", "estargz", "--supernode", sn.Addr, "--data-dir", t.TempDir(), "--no-daemon",
			"--upload-listen", "127.0.0.1:0", "--prefetch=false"}
	}
	goodMnt, brokenMnt := t.TempDir(), t.TempDir()
	gp := startMount(t, bin, origin.URL("good.stargz"), goodMnt, args()...)
	bp := startMount(t, bin, origin.URL("broken-chunk.stargz"), brokenMnt, args()...)
	for _, name := range []string{"huge-chunk.stargz", "neg-chunk.stargz", "past-end.stargz"} {
		mnt := t.TempDir()
		p := testenv.Start(t, bin, "dfmount", append(args(), origin.URL(name), mnt)...)
		code, err := p.Wait(time.Minute)
		if err != nil || code == 0 {
			t.Errorf("%s: dfmount exit %d %v, want a failed mount", name, code, err)
		}
		if !strings.Contains(p.Log(), "eStargz TOC") {
			t.Errorf("%s: no clear error:\n%s", name, p.Tail(10))
		}
		if strings.Contains(p.Log(), "panic") || strings.Contains(p.Log(), "fatal error") {
			t.Errorf("%s: dfmount crashed:\n%s", name, p.Tail(30))
		}
	}
	if _, err := os.ReadFile(filepath.Join(brokenMnt, "data/big")); !errors.Is(err, syscall.EIO) {
		t.Errorf("read of the broken file: %v, want EIO", err)
	}
	for _, mnt := range []string{goodMnt, brokenMnt} {
		if ents, err := os.ReadDir(filepath.Join(mnt, "etc")); err != nil || len(ents) != 2 {
			t.Errorf("ls %s/etc: %v %v", mnt, ents, err)
		}
		if got, err := os.ReadFile(filepath.Join(mnt, "etc/b")); err != nil || string(got) != "bb\n" {
			t.Errorf("%s/etc/b: %q %v", mnt, got, err)
		}
	}
	if got, err := os.ReadFile(filepath.Join(goodMnt, "data/big")); err != nil || string(got) != big {
		t.Errorf("good data/big: %d bytes %v", len(got), err)
	}
	stopMount(t, bp)
	stopMount(t, gp)
}
