//go:build e2e && unix

package e2e

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/objstore"
	"github.com/damselfly-p2p/damselfly/testenv"
)

// countingTransport counts the requests a client sends, and the listing
// requests among them.
type countingTransport struct {
	requests, lists atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.requests.Add(1)
	if r.URL.Query().Has("list-type") {
		c.lists.Add(1)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// putTree stores a tree of 3 levels under prefix (files at every level,
// 3 x 4 subdirectories with 25 files each, sizes 0 to 20 KiB) and returns
// key -> content.
func putTree(t *testing.T, sw *testenv.Seaweed, bucket, prefix string) map[string][]byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(18, 3))
	tree := map[string][]byte{}
	add := func(key string) {
		data := make([]byte, rng.IntN(20<<10))
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		tree[key] = data
		sw.Put(t, bucket, key, data)
	}
	add(prefix + "README")
	add(prefix + "labels.csv")
	for d := range 3 {
		dir := fmt.Sprintf("%sshard-%d/", prefix, d)
		for f := range 3 {
			add(fmt.Sprintf("%sindex-%d.json", dir, f))
		}
		for s := range 4 {
			sub := fmt.Sprintf("%sclass-%02d/", dir, s)
			for f := range 25 {
				add(fmt.Sprintf("%simg-%03d.bin", sub, f))
			}
		}
	}
	tree[prefix+"empty"] = nil
	sw.Put(t, bucket, prefix+"empty", nil)
	return tree
}

func md5hex(b []byte) string { s := md5.Sum(b); return hex.EncodeToString(s[:]) }

func TestS3Objstore(t *testing.T) {
	const bucket = "dataset"
	sw := testenv.StartSeaweed(t, bucket)
	ctx := context.Background()
	tree := putTree(t, sw, bucket, "train/")
	big := make([]byte, 3<<20+12345)
	for i := range big {
		big[i] = byte(i*7 + i>>13)
	}
	sw.Put(t, bucket, "big.bin", big)

	counter := &countingTransport{}
	client, err := objstore.New(ctx, objstore.Options{
		Endpoint: sw.Endpoint, PathStyle: true, Region: testenv.SeaweedRegion,
		AccessKeyID: sw.AccessKeyID, SecretAccessKey: sw.SecretAccessKey,
		HTTPClient: &http.Client{Transport: counter}, ListPageSize: 7,
	})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("list lazily per directory", func(t *testing.T) {
		// Taking the first entry of the top level costs one page, whatever
		// the size of the tree below.
		before := counter.lists.Load()
		for e, err := range client.List(ctx, bucket, "train") {
			if err != nil {
				t.Fatal(err)
			}
			if e.Name == "" {
				t.Fatalf("empty name in %+v", e)
			}
			break
		}
		if n := counter.lists.Load() - before; n != 1 {
			t.Errorf("first entry of train/ took %d list requests, want 1", n)
		}

		// Walking the whole tree directory by directory finds every object
		// with its size and ETag, and nothing else.
		before = counter.lists.Load()
		got := map[string]objstore.Entry{}
		dirs := 0
		var walk func(prefix string)
		walk = func(prefix string) {
			dirs++
			entries, err := client.ReadDir(ctx, bucket, prefix)
			if err != nil {
				t.Fatalf("ReadDir %s: %v", prefix, err)
			}
			if !sort.SliceIsSorted(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name }) {
				t.Errorf("ReadDir %s not sorted by name", prefix)
			}
			for _, e := range entries {
				if e.Key != prefix+e.Name && e.Key != prefix+e.Name+"/" {
					t.Errorf("entry %+v: key is not prefix %q + name", e, prefix)
				}
				if e.IsDir {
					walk(e.Key)
				} else {
					got[e.Key] = e
				}
			}
		}
		walk("train/")
		if len(got) != len(tree) {
			t.Errorf("walk found %d objects, want %d", len(got), len(tree))
		}
		for key, data := range tree {
			e, ok := got[key]
			switch {
			case !ok:
				t.Errorf("walk missed %s", key)
			case e.Size != int64(len(data)):
				t.Errorf("%s: listed size %d, want %d", key, e.Size, len(data))
			case e.ETag != md5hex(data):
				t.Errorf("%s: listed ETag %q, want md5 %s", key, e.ETag, md5hex(data))
			}
		}
		if dirs != 1+3+3*4 {
			t.Errorf("walk opened %d directories, want %d", dirs, 1+3+3*4)
		}
		// Each directory is listed one page (7 entries) at a time: a class
		// directory of 25 files takes 4 pages, never the whole tree at once.
		if n := counter.lists.Load() - before; n < int64(dirs) || n > int64(12*4+3*2+1*2) {
			t.Errorf("walk took %d list requests for %d directories", n, dirs)
		}
	})

	t.Run("head", func(t *testing.T) {
		info, err := client.Head(ctx, bucket, "train/shard-1/class-02/img-007.bin")
		if err != nil {
			t.Fatal(err)
		}
		data := tree["train/shard-1/class-02/img-007.bin"]
		if info.Size != int64(len(data)) || info.ETag != md5hex(data) || info.VersionID != "" {
			t.Errorf("Head = %+v, want size %d, ETag %s, no version", info, len(data), md5hex(data))
		}
		if _, err := client.Head(ctx, bucket, "train/missing"); !errors.Is(err, objstore.ErrNotFound) || !strings.Contains(err.Error(), "s3://dataset/train/missing") {
			t.Errorf("Head of a missing key: %v; want ErrNotFound naming it", err)
		}
	})

	t.Run("ranged get", func(t *testing.T) {
		info, err := client.Head(ctx, bucket, "big.bin")
		if err != nil {
			t.Fatal(err)
		}
		if info.Size != int64(len(big)) {
			t.Fatalf("Head size %d, want %d", info.Size, len(big))
		}
		ranges := []struct{ off, n int64 }{
			{0, 1}, {0, 4096}, {1 << 20, 1 << 20}, {int64(len(big)) - 10, 10},
			{int64(len(big)) - 10, 100}, {12345, -1}, {0, -1}, {int64(len(big)), -1}, {77, 0},
		}
		for _, r := range ranges {
			body, err := client.GetRange(ctx, info, r.off, r.n)
			if err != nil {
				t.Fatalf("GetRange(%d, %d): %v", r.off, r.n, err)
			}
			got, err := io.ReadAll(body)
			body.Close()
			if err != nil {
				t.Fatalf("GetRange(%d, %d) read: %v", r.off, r.n, err)
			}
			end := int64(len(big))
			if r.n >= 0 {
				end = min(end, r.off+r.n)
			}
			if !bytes.Equal(got, big[r.off:end]) {
				t.Errorf("GetRange(%d, %d): %d bytes differ from the object's [%d:%d]", r.off, r.n, len(got), r.off, end)
			}
		}
		if _, err := client.GetRange(ctx, info, int64(len(big))+1, 10); err == nil {
			t.Errorf("GetRange past the end succeeded")
		}
		empty, err := client.Head(ctx, bucket, "train/empty")
		if err != nil {
			t.Fatal(err)
		}
		body, err := client.GetRange(ctx, empty, 0, -1)
		if err != nil {
			t.Fatalf("GetRange of an empty object: %v", err)
		}
		if b, err := io.ReadAll(body); err != nil || len(b) != 0 {
			t.Errorf("empty object read %d bytes, %v", len(b), err)
		}
		body.Close()
	})

	t.Run("identity follows the content", func(t *testing.T) {
		const key = "train/mutable"
		sw.Put(t, bucket, key, []byte("version one"))
		a, err := client.Head(ctx, bucket, key)
		if err != nil {
			t.Fatal(err)
		}
		a2, err := client.Head(ctx, bucket, key)
		if err != nil {
			t.Fatal(err)
		}
		if objstore.Identity(a) != objstore.Identity(a2) {
			t.Errorf("two HEADs of one version: identities %q and %q", objstore.Identity(a), objstore.Identity(a2))
		}
		entries, err := client.ReadDir(ctx, bucket, "train/")
		if err != nil {
			t.Fatal(err)
		}
		listed := false
		for _, e := range entries {
			if e.Key == key {
				listed = true
				if got := objstore.Identity(e.Info(bucket)); got != objstore.Identity(a) {
					t.Errorf("identity from the listing %q differs from HEAD's %q", got, objstore.Identity(a))
				}
			}
		}
		if !listed {
			t.Errorf("%s not listed", key)
		}
		sw.Put(t, bucket, key, []byte("version two!"))
		b, err := client.Head(ctx, bucket, key)
		if err != nil {
			t.Fatal(err)
		}
		if objstore.Identity(a) == objstore.Identity(b) {
			t.Errorf("overwritten object kept identity %q", objstore.Identity(a))
		}
		// Reading by the old HEAD must not return the new bytes.
		body, err := client.GetRange(ctx, a, 0, 4)
		if err == nil {
			got, _ := io.ReadAll(body)
			body.Close()
			t.Fatalf("GetRange with a stale HEAD read %q; want ErrObjectChanged", got)
		}
		if !errors.Is(err, objstore.ErrObjectChanged) {
			t.Errorf("GetRange with a stale HEAD: %v; want ErrObjectChanged", err)
		}
	})

	t.Run("wrong credentials", func(t *testing.T) {
		tests := []struct{ name, id, secret string }{
			{"wrong secret", sw.AccessKeyID, "not-the-secret"},
			{"unknown access key", "NOSUCHKEY", sw.SecretAccessKey},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				bad, err := objstore.New(ctx, objstore.Options{Endpoint: sw.Endpoint, PathStyle: true, Region: testenv.SeaweedRegion,
					AccessKeyID: tt.id, SecretAccessKey: tt.secret})
				if err != nil {
					t.Fatal(err)
				}
				check := func(op string, err error) {
					t.Helper()
					const want = "s3: access denied for bucket dataset: check the credentials"
					if !errors.Is(err, objstore.ErrAccessDenied) || !strings.Contains(err.Error(), want) {
						t.Errorf("%s: %v; want ErrAccessDenied saying %q", op, err, want)
						return
					}
					if strings.Contains(err.Error(), tt.secret) {
						t.Errorf("%s: error %q shows the secret", op, err)
					}
					t.Logf("%s: %v", op, err)
				}
				_, err = bad.Head(ctx, bucket, "big.bin")
				check("head", err)
				_, err = bad.ReadDir(ctx, bucket, "train/")
				check("list", err)
				_, err = bad.GetRange(ctx, objstore.ObjectInfo{Bucket: bucket, Key: "big.bin", Size: int64(len(big)), ETag: md5hex(big)}, 0, 10)
				check("get range", err)
			})
		}
	})

	t.Run("url of a listed key", func(t *testing.T) {
		u, err := objstore.ParseURL("s3://" + bucket + "/" + path.Join("train", "shard-0") + "/")
		if err != nil {
			t.Fatal(err)
		}
		entries, err := client.ReadDir(ctx, u.Bucket, u.Key)
		if err != nil {
			t.Fatal(err)
		}
		// 3 index files and 4 class directories.
		if len(entries) != 7 {
			t.Errorf("ReadDir %s: %d entries, want 7: %+v", u, len(entries), entries)
		}
	})
}

// TestS3DfgetDfmount downloads an object of the real store with dfget: an
// interrupted run (kill -9) leaves its pieces in the data dir and a rerun
// with the classic flags fetches only the rest. dfmount of the object reads
// its bytes. Wrong credentials fail both with a clear error and a non-zero
// exit (and no output file).
func TestS3DfgetDfmount(t *testing.T) {
	bin := bins(t)
	const bucket = "objects"
	sw := testenv.StartSeaweed(t, bucket)
	const size = 24<<20 + 777
	rng := rand.New(rand.NewPCG(18, 4))
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	sw.Put(t, bucket, "dir/blob.bin", data)
	url := "s3://" + bucket + "/dir/blob.bin"
	t.Setenv("AWS_ACCESS_KEY_ID", sw.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", sw.SecretAccessKey)
	common := []string{"--s3-endpoint", sw.Endpoint, "--s3-path-style", "--s3-region", testenv.SeaweedRegion,
		"--no-daemon", "--no-progress", "--log-level", "info"}
	dir, out := t.TempDir(), filepath.Join(t.TempDir(), "blob.bin")

	// A slow first run, killed once a few pieces are stored.
	p := testenv.Start(t, bin, "dfget", append(common, url, "-o", out, "--data-dir", dir, "--limit", "4M")...)
	waitPresent(t, dir, 3, time.Minute)
	p.Kill9()
	if _, err := os.Stat(out); err == nil {
		t.Fatal("output file exists after the interrupted run")
	}
	present := presentPieces(t, dir)

	// The rerun, with the classic spellings, resumes.
	p = testenv.Start(t, bin, "dfget", append(common, "-u", url, "-o", out, "--data-dir", dir, "-m", md5hex(data))...)
	waitOK(t, p, 2*time.Minute)
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("downloaded %d bytes that differ from the object's %d", len(got), len(data))
	}
	res := parseResult(t, p)
	t.Logf("rerun after kill -9 with %d pieces stored: %+v", present, res)
	if res.Reused < int64(present)*pieceSize(size) || res.Origin != size-res.Reused {
		t.Fatalf("rerun reused %d and fetched %d bytes; want the %d stored pieces reused and only the rest fetched",
			res.Reused, res.Origin, present)
	}

	// dfmount of the object: reads equal the object's bytes, in mode direct.
	mnt := t.TempDir()
	mountArgs := []string{"--s3-endpoint", sw.Endpoint, "--s3-path-style", "--s3-region", testenv.SeaweedRegion,
		"--no-daemon", "--data-dir", t.TempDir(), "--upload-listen", "127.0.0.1:0", "--prefetch=false"}
	m := startMount(t, bin, url, mnt, mountArgs...)
	file := filepath.Join(mnt, "blob.bin")
	if fi, err := os.Stat(file); err != nil || fi.Size() != size {
		t.Fatalf("stat of the mounted object: %v", err)
	}
	if mode := mountMode(t, file); mode != "direct" {
		t.Fatalf("mode %q, want direct", mode)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 5<<20 + 3, size - 1000} {
		buf := make([]byte, min(64<<10, size-off))
		if _, err := f.ReadAt(buf, off); err != nil {
			t.Fatalf("read the mounted object at %d: %v", off, err)
		}
		if !bytes.Equal(buf, data[off:off+int64(len(buf))]) {
			t.Fatalf("mounted object differs at %d", off)
		}
	}
	f.Close()
	stopMount(t, m)

	// Wrong credentials: a clear error and a non-zero exit.
	t.Setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
	pm := testenv.Start(t, bin, "dfmount", append(mountArgs, url, t.TempDir())...)
	if code, err := pm.Wait(time.Minute); err != nil || code == 0 || !strings.Contains(pm.Log(), "access denied") {
		t.Fatalf("dfmount with a wrong secret: exit %d, %v\n%s", code, err, pm.Tail(20))
	}
	bad := filepath.Join(t.TempDir(), "bad.bin")
	p = testenv.Start(t, bin, "dfget", append(common, url, "-o", bad, "--data-dir", t.TempDir())...)
	code, err := p.Wait(time.Minute)
	if err != nil || code == 0 {
		t.Fatalf("dfget with a wrong secret: exit %d, %v\n%s", code, err, p.Tail(20))
	}
	if !strings.Contains(p.Log(), "access denied") {
		t.Fatalf("dfget with a wrong secret does not say access denied:\n%s", p.Tail(20))
	}
	if _, err := os.Stat(bad); err == nil {
		t.Fatal("output file exists after a refused download")
	}
}
