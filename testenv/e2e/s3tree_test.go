//go:build e2e && unix

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/pkg/xattr"

	"github.com/damselfly-p2p/damselfly/fusefs"
	"github.com/damselfly-p2p/damselfly/testenv"
)

// putPrefixTree stores 2,000 objects under prefix in 3 levels of
// directories (4 splits, 5 classes each, 2 parts each), sizes 0 to 64 KiB
// and 3 of several MiB, with 8 concurrent PUTs; it returns key -> sha256.
func putPrefixTree(t *testing.T, sw *testenv.Seaweed, bucket, prefix string) (sums map[string]string, sizes map[string]int64, total int64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(18, 5))
	objects := map[string][]byte{}
	add := func(key string, size int) {
		data := make([]byte, size)
		for i := 0; i < size; i += 8 {
			v := rng.Uint64()
			for j := 0; j < 8 && i+j < size; j++ {
				data[i+j] = byte(v >> (8 * j))
			}
		}
		objects[key] = data
	}
	small := func() int { return rng.IntN(64<<10 + 1) }
	for f := range 4 {
		add(fmt.Sprintf("%sfile-%d.bin", prefix, f), small())
	}
	for s := range 4 {
		split := fmt.Sprintf("%ssplit-%d/", prefix, s)
		for f := range 4 {
			add(fmt.Sprintf("%sindex-%d.json", split, f), small())
		}
		for c := range 5 {
			class := fmt.Sprintf("%sclass-%d/", split, c)
			for f := range 3 {
				add(fmt.Sprintf("%smeta-%d", class, f), small())
			}
			for p := range 2 {
				part := fmt.Sprintf("%spart-%d/", class, p)
				for f := range 48 {
					add(fmt.Sprintf("%simg-%03d.bin", part, f), small())
				}
			}
		}
	}
	add(prefix+"split-0/class-0/meta-0", 0)
	add(prefix+"split-1/big-a.bin", 3<<20+12345)
	add(prefix+"split-2/class-3/big-b.bin", 5<<20+1)
	add(prefix+"split-3/class-4/part-1/big-c.bin", 7<<20-7)
	if len(objects) != 2000+3 {
		t.Fatalf("tree has %d objects", len(objects))
	}

	client := s3.New(s3.Options{
		Region: testenv.SeaweedRegion, BaseEndpoint: aws.String(sw.Endpoint), UsePathStyle: true,
		Credentials:                credentials.NewStaticCredentialsProvider(sw.AccessKeyID, sw.SecretAccessKey, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
	keys := make(chan string)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for key := range keys {
				var err error
				for try := 0; try < 5; try++ {
					_, err = client.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
						Body: bytes.NewReader(objects[key]), ContentLength: aws.Int64(int64(len(objects[key])))})
					if err == nil {
						break
					}
					time.Sleep(200 * time.Millisecond)
				}
				if err != nil {
					errs <- fmt.Errorf("put %s: %w", key, err)
					return
				}
			}
		}()
	}
	start := time.Now()
	for key := range objects {
		keys <- key
	}
	close(keys)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	sums, sizes = map[string]string{}, map[string]int64{}
	for key, data := range objects {
		s := sha256.Sum256(data)
		sums[key], sizes[key] = hex.EncodeToString(s[:]), int64(len(data))
		total += int64(len(data))
	}
	t.Logf("stored %d objects, %d bytes, in %v", len(objects), total, time.Since(start).Round(time.Millisecond))
	return sums, sizes, total
}

// walkTree is `find MNT` and `stat` of every file: path -> size.
func walkTree(t *testing.T, mnt string) map[string]int64 {
	t.Helper()
	got := map[string]int64{}
	err := filepath.WalkDir(mnt, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(mnt, p)
			got[rel] = fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", mnt, err)
	}
	return got
}

// readAll reads every file with 8 workers and checks its sha256.
func readAll(t *testing.T, mnt string, sums map[string]string, prefix string) time.Duration {
	t.Helper()
	took, err := readAllErr(mnt, sums, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return took
}

// readAllErr is readAll for any goroutine: it returns what went wrong.
func readAllErr(mnt string, sums map[string]string, prefix string) (time.Duration, error) {
	keys := make(chan string)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	start := time.Now()
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for key := range keys {
				p := filepath.Join(mnt, strings.TrimPrefix(key, prefix))
				f, err := os.Open(p)
				if err != nil {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%s: %v", key, err))
					mu.Unlock()
					continue
				}
				h := sha256.New()
				_, err = io.Copy(h, f)
				f.Close()
				if sum := hex.EncodeToString(h.Sum(nil)); err != nil || sum != sums[key] {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%s: sha256 %s, %v; want %s", key, sum, err, sums[key]))
					mu.Unlock()
				}
			}
		}()
	}
	for key := range sums {
		keys <- key
	}
	close(keys)
	wg.Wait()
	if len(bad) > 0 {
		sort.Strings(bad)
		return 0, fmt.Errorf("%d files read wrong through %s, e.g. %s", len(bad), mnt, strings.Join(bad[:min(5, len(bad))], "; "))
	}
	return time.Since(start), nil
}

// TestS3Tree mounts a prefix of 2,000 objects in 3 levels of directories
// of a real SeaweedFS with dfmount: the mount's tree and sizes equal the
// store's, walking and stat-ing it fetches no object, every file reads
// its object's bytes (sha256), a second dfmount with its own data dir
// reads them too, a remount with the store gone serves the tree and the
// bytes the data dir holds, and wrong credentials fail the mount with a
// clear error. The first mount reads small objects through their
// directories' packs, the second one by one.
func TestS3Tree(t *testing.T) {
	bin := bins(t)
	const bucket, prefix = "dataset", "train/"
	sw := testenv.StartSeaweed(t, bucket)
	sums, sizes, total := putPrefixTree(t, sw, bucket, prefix)
	proxy := testenv.StartStoreProxy(t, sw.Endpoint)
	t.Setenv("AWS_ACCESS_KEY_ID", sw.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", sw.SecretAccessKey)
	url := "s3://" + bucket + "/" + prefix
	common := []string{"--s3-endpoint", proxy.URL, "--s3-path-style", "--s3-region", testenv.SeaweedRegion,
		"--no-daemon", "--upload-listen", "127.0.0.1:0", "--prefetch=false"}

	// Mounting lists the top level only.
	dirA, mntA := t.TempDir(), t.TempDir()
	start := time.Now()
	m := startMount(t, bin, url, mntA, append(common, "--data-dir", dirA)...)
	t.Logf("mounted in %v with %d list requests", time.Since(start).Round(time.Millisecond), proxy.Counts().Lists)
	if n := proxy.Counts().Lists; n < 1 || n > 2 {
		t.Errorf("mounting took %d list requests; want the top level's only", n)
	}

	// find + stat: the tree and sizes equal the store's, no object fetched.
	start = time.Now()
	got := walkTree(t, mntA)
	t.Logf("find + stat of %d files: %v, %d list requests in all", len(got), time.Since(start).Round(time.Millisecond), proxy.Counts().Lists)
	if len(got) != len(sizes) {
		t.Errorf("the mount shows %d files, the store has %d", len(got), len(sizes))
	}
	for key, size := range sizes {
		if s, ok := got[strings.TrimPrefix(key, prefix)]; !ok || s != size {
			t.Errorf("%s: size %d (shown %t) in the mount, %d in the store", key, s, ok, size)
		}
	}
	if n := proxy.Counts().ObjectGets; n != 0 {
		t.Fatalf("find and stat fetched %d objects; want none", n)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(mntA, "split-1/big-a.bin"), &st); err != nil {
		t.Fatal(err)
	}
	inoA := st.Ino

	// Every file's bytes are the object's; each object is read once.
	took := readAll(t, mntA, sums, prefix)
	t.Logf("first mount read %d files (%d bytes) with 8 readers in %v; the store served %d bytes in %d GETs",
		len(sums), total, took.Round(time.Millisecond), proxy.Counts().ObjectBytes, proxy.Counts().ObjectGets)
	if b := proxy.Counts().ObjectBytes; b < total || b > total+total/10 {
		t.Errorf("the store served %d bytes for %d bytes of objects", b, total)
	}
	if mode, err := xattr.Get(filepath.Join(mntA, "split-0/index-0.json"), fusefs.XattrMode); err != nil || string(mode) != "direct" {
		t.Errorf("mode xattr %q %v, want direct", mode, err)
	}

	// A second peer with its own data dir reads the tree too, each object
	// a task of its own (no packs).
	body := proxy.Counts().ObjectBytes
	dirB, mntB := t.TempDir(), t.TempDir()
	mB := startMount(t, bin, url, mntB, append(common, "--data-dir", dirB, "--s3-pack=false")...)
	took = readAll(t, mntB, sums, prefix)
	t.Logf("second mount read every file in %v; the store served %d more bytes (the two mounts: %d bytes for %d bytes of objects)",
		took.Round(time.Millisecond), proxy.Counts().ObjectBytes-body, proxy.Counts().ObjectBytes, total)
	stopMount(t, mB)

	// Wrong credentials: a clear error at mount time, nothing mounted.
	t.Run("wrong credentials", func(t *testing.T) {
		t.Setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
		mnt := t.TempDir()
		p := testenv.Start(t, bin, "dfmount", append(common, "--data-dir", t.TempDir(), url, mnt)...)
		code, err := p.Wait(time.Minute)
		if err != nil || code == 0 || !strings.Contains(p.Log(), "access denied") || !strings.Contains(p.Log(), "check the credentials") {
			t.Fatalf("dfmount with a wrong secret: exit %d, %v\n%s", code, err, p.Tail(20))
		}
		if strings.Contains(p.Log(), "not-the-secret") {
			t.Fatal("the log shows the secret")
		}
		if _, ok := fusefs.MountedType(mnt); ok {
			t.Fatal("something is mounted after a refused listing")
		}
		t.Logf("wrong secret: %s", strings.TrimSpace(p.Tail(1)))
	})
	t.Run("missing bucket", func(t *testing.T) {
		p := testenv.Start(t, bin, "dfmount", append(common, "--data-dir", t.TempDir(), "s3://no-such-bucket/x/", t.TempDir())...)
		if code, err := p.Wait(time.Minute); err != nil || code == 0 || !strings.Contains(p.Log(), "not found") {
			t.Fatalf("dfmount of a missing bucket: exit %d, %v\n%s", code, err, p.Tail(20))
		}
	})

	// Remount with the store gone: the kept listings and the stored
	// pieces serve the tree; inode numbers are those of the first mount.
	stopMount(t, m)
	proxy.Close()
	m = startMount(t, bin, url, mntA, append(common, "--data-dir", dirA)...)
	if got := walkTree(t, mntA); len(got) != len(sizes) {
		t.Errorf("offline remount shows %d files, want %d", len(got), len(sizes))
	}
	if v, err := xattr.Get(filepath.Join(mntA, "split-2"), fusefs.XattrListing); err != nil || !strings.HasPrefix(string(v), "cached ") {
		t.Errorf("offline listing xattr %q %v, want cached", v, err)
	}
	if err := syscall.Stat(filepath.Join(mntA, "split-1/big-a.bin"), &st); err != nil || st.Ino != inoA {
		t.Errorf("inode of split-1/big-a.bin: %d on the first mount, %d (%v) on the remount", inoA, st.Ino, err)
	}
	took = readAll(t, mntA, sums, prefix)
	t.Logf("offline remount read every file from the data dir in %v", took.Round(time.Millisecond))
	stopMount(t, m)
}

// TestS3TreeSwarm mounts the 2,000-object prefix of TestS3Tree on two
// peers at once (two dfmount processes, separate data dirs) with a
// supernode that allows the store: each reads every file (sha256), small
// objects through their directories' packs and large ones alone, all in
// mode p2p, and the store serves about one copy of what one peer read.
func TestS3TreeSwarm(t *testing.T) {
	bin := bins(t)
	const bucket, prefix = "dataset", "train/"
	sw := testenv.StartSeaweed(t, bucket)
	sums, _, total := putPrefixTree(t, sw, bucket, prefix)
	proxy := testenv.StartStoreProxy(t, sw.Endpoint)
	sn := testenv.StartSupernode(t, bin, "--allow-origin", strings.TrimPrefix(proxy.URL, "http://"), "--s3-endpoint", proxy.URL)
	t.Setenv("AWS_ACCESS_KEY_ID", sw.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", sw.SecretAccessKey)
	url := "s3://" + bucket + "/" + prefix
	common := []string{"--s3-endpoint", proxy.URL, "--s3-path-style", "--s3-region", testenv.SeaweedRegion,
		"--no-daemon", "--upload-listen", "127.0.0.1:0", "--prefetch=false", "--supernode", sn.Addr}

	mnts := []string{t.TempDir(), t.TempDir()}
	var procs []*testenv.Proc
	for _, mnt := range mnts {
		procs = append(procs, startMount(t, bin, url, mnt, append(common, "--data-dir", t.TempDir())...))
	}
	start := time.Now()
	errs := make(chan error, len(mnts))
	for _, mnt := range mnts {
		go func() {
			_, err := readAllErr(mnt, sums, prefix)
			errs <- err
		}()
	}
	for range mnts {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(start)
	for i, mnt := range mnts {
		for _, f := range []string{"split-0/index-0.json", "split-3/class-4/part-1/img-007.bin", "split-1/big-a.bin"} {
			if mode, err := xattr.Get(filepath.Join(mnt, f), fusefs.XattrMode); err != nil || string(mode) != "p2p" {
				t.Errorf("peer %d: %s: mode %q %v, want p2p\n%s", i, f, mode, err, procs[i].Tail(20))
			}
		}
	}
	served := proxy.Counts().ObjectBytes
	t.Logf("two dfmount peers read %d files (%d bytes each) at once in %v; the store served %d bytes (%.3f copies) in %d GETs, %d listings",
		len(sums), total, took.Round(time.Millisecond), served, float64(served)/float64(total), proxy.Counts().ObjectGets, proxy.Counts().Lists)
	if served < total {
		t.Errorf("the store served %d bytes, less than the %d of the objects: counting is broken", served, total)
	}
	if served > total+total/10 {
		t.Errorf("the store served %d bytes for two peers reading %d: want about one copy", served, total)
	}
	for i, p := range procs {
		stopMount(t, p)
		assertNoSecret(t, fmt.Sprintf("peer %d", i), p.Log(), sw.SecretAccessKey)
	}
	assertNoSecret(t, "the supernode", sn.Proc.Log(), sw.SecretAccessKey)

	// A seed the store refuses: the peer reads the packs from the store.
	t.Run("peers go back to the store when the seed cannot fetch", func(t *testing.T) {
		refusing := testenv.StartStoreProxy(t, sw.Endpoint)
		refusing.RefuseSeed.Store(true)
		sn := testenv.StartSupernode(t, bin, "--allow-origin", strings.TrimPrefix(refusing.URL, "http://"), "--s3-endpoint", refusing.URL)
		mnt := t.TempDir()
		m := startMount(t, bin, url+"split-2/class-1/", mnt, "--s3-endpoint", refusing.URL, "--s3-path-style", "--s3-region", testenv.SeaweedRegion,
			"--no-daemon", "--upload-listen", "127.0.0.1:0", "--prefetch=false", "--supernode", sn.Addr, "--data-dir", t.TempDir())
		sub := map[string]string{}
		for key, sum := range sums {
			if strings.HasPrefix(key, prefix+"split-2/class-1/part-0/") {
				sub[key] = sum
			}
		}
		start := time.Now()
		if _, err := readAllErr(mnt, sub, prefix+"split-2/class-1/"); err != nil {
			t.Fatalf("%v\n%s", err, m.Tail(20))
		}
		t.Logf("%d files of a pack whose seed the store refuses read in %v", len(sub), time.Since(start).Round(time.Millisecond))
		if !strings.Contains(m.Log(), "reading it straight from the store") {
			t.Errorf("the peer did not say it went back to the store:\n%s", m.Tail(20))
		}
		stopMount(t, m)
	})
}

// assertNoSecret fails when log holds the secret key or a presigned URL's
// signature (a redacted one shows as X-Amz-Signature=REDACTED).
func assertNoSecret(t *testing.T, who, log, secret string) {
	t.Helper()
	if strings.Contains(log, secret) {
		t.Errorf("%s's log holds the secret key", who)
	}
	for rest := log; ; {
		i := strings.Index(rest, "X-Amz-Signature=")
		if i < 0 {
			return
		}
		rest = rest[i+len("X-Amz-Signature="):]
		if !strings.HasPrefix(rest, "REDACTED") {
			t.Errorf("%s's log holds a signature", who)
			return
		}
	}
}

// TestS3TreeSmallFiles measures (logs, asserts nothing about time) reading
// 2,000 objects of 64 KiB in 10 directories through a cold prefix mount
// with 8 readers, with packs (the default) and without, against reading
// one 128 MiB object through a cold mount; every read is checked.
func TestS3TreeSmallFiles(t *testing.T) {
	bin := bins(t)
	const bucket = "small"
	sw := testenv.StartSeaweed(t, bucket)
	client := s3.New(s3.Options{
		Region: testenv.SeaweedRegion, BaseEndpoint: aws.String(sw.Endpoint), UsePathStyle: true,
		Credentials:                credentials.NewStaticCredentialsProvider(sw.AccessKeyID, sw.SecretAccessKey, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
	rng := rand.New(rand.NewPCG(18, 6))
	sums := map[string]string{}
	objects := map[string][]byte{}
	for d := range 10 {
		for f := range 200 {
			data := make([]byte, 64<<10)
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			key := fmt.Sprintf("files/d%d/f%03d.bin", d, f)
			objects[key] = data
			s := sha256.Sum256(data)
			sums[key] = hex.EncodeToString(s[:])
		}
	}
	big := make([]byte, 128<<20)
	for i := 0; i < len(big); i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8; j++ {
			big[i+j] = byte(v >> (8 * j))
		}
	}
	objects["big/one.bin"] = big
	bigSum := sha256.Sum256(big)
	keys := make(chan string)
	var wg sync.WaitGroup
	var failed atomic.Value
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for key := range keys {
				var err error
				for try := 0; try < 5; try++ {
					if _, err = client.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
						Body: bytes.NewReader(objects[key]), ContentLength: aws.Int64(int64(len(objects[key])))}); err == nil {
						break
					}
					time.Sleep(200 * time.Millisecond)
				}
				if err != nil {
					failed.Store(fmt.Errorf("put %s: %w", key, err))
				}
			}
		}()
	}
	for key := range objects {
		keys <- key
	}
	close(keys)
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
	proxy := testenv.StartStoreProxy(t, sw.Endpoint)
	t.Setenv("AWS_ACCESS_KEY_ID", sw.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", sw.SecretAccessKey)
	common := []string{"--s3-endpoint", proxy.URL, "--s3-path-style", "--s3-region", testenv.SeaweedRegion,
		"--no-daemon", "--upload-listen", "127.0.0.1:0"}
	const smallBytes = 2000 * 64 << 10

	// One 128 MiB object, read sequentially through a cold mount.
	mnt := t.TempDir()
	m := startMount(t, bin, "s3://"+bucket+"/big/", mnt, append(common, "--data-dir", t.TempDir())...)
	start := time.Now()
	if got := sha256Of(t, filepath.Join(mnt, "one.bin")); got != hex.EncodeToString(bigSum[:]) {
		t.Fatalf("one.bin: sha256 %s through the mount", got)
	}
	bigTook := time.Since(start)
	stopMount(t, m)
	bigRate := float64(len(big)) / bigTook.Seconds()
	t.Logf("one 128 MiB object, cold, 1 reader: %v (%.0f MiB/s)", bigTook.Round(time.Millisecond), bigRate/(1<<20))

	// Baseline: the same 2,000 GETs straight from this process, 64 at
	// once, through the proxy (what the store and proxy can do).
	direct := s3.New(s3.Options{
		Region: testenv.SeaweedRegion, BaseEndpoint: aws.String(proxy.URL), UsePathStyle: true,
		Credentials:                credentials.NewStaticCredentialsProvider(sw.AccessKeyID, sw.SecretAccessKey, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
		HTTPClient:                 &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128}},
	})
	start = time.Now()
	keys = make(chan string)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for key := range keys {
				out, err := direct.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
				if err != nil {
					failed.Store(err)
					continue
				}
				io.Copy(io.Discard, out.Body)
				out.Body.Close()
			}
		}()
	}
	for key := range sums {
		keys <- key
	}
	close(keys)
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
	t.Logf("baseline: the 2,000 objects with 64 concurrent GETs from the test process: %v", time.Since(start).Round(time.Millisecond))

	smallSums := map[string]string{}
	for k, v := range sums {
		smallSums[k] = v
	}
	for _, mode := range []struct {
		name string
		args []string
	}{{"packs", nil}, {"no packs", []string{"--s3-pack=false"}}} {
		mnt := t.TempDir()
		body, gets := proxy.Counts().ObjectBytes, proxy.Counts().ObjectGets
		m := startMount(t, bin, "s3://"+bucket+"/files/", mnt, append(append(common, mode.args...), "--data-dir", t.TempDir())...)
		took := readAll(t, mnt, smallSums, "files/")
		stopMount(t, m)
		rate := float64(smallBytes) / took.Seconds()
		t.Logf("2,000 x 64 KiB, cold, 8 readers, %s: %v (%.0f MiB/s, %.2f x the 128 MiB object's throughput); the store served %d bytes in %d GETs",
			mode.name, took.Round(time.Millisecond), rate/(1<<20), rate/bigRate, proxy.Counts().ObjectBytes-body, proxy.Counts().ObjectGets-gets)
	}
}
