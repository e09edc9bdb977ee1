package main

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/damselfly-p2p/damselfly/fusefs"
	"github.com/damselfly-p2p/damselfly/p2p/ratelimit"
	"github.com/damselfly-p2p/damselfly/testenv"
)

// The demo dataset: dirs directories of filesPerDir files of 64 KiB to
// 1 MiB under s3://bucket/prefix.
const (
	bucket      = "datasets"
	prefix      = "demo/train/"
	dirs        = 3
	filesPerDir = 20
	readWorkers = 4
)

// dataFile is one object of the dataset: its path under the prefix, size
// and SHA-256.
type dataFile struct {
	rel  string
	size int64
	sum  string
}

// seaweedBinary returns the cached (or $DAMSELFLY_SEAWEED_BIN) weed binary,
// or "" when there is none: the demo never builds it (minutes).
func seaweedBinary() string {
	if bin := os.Getenv(testenv.SeaweedBinEnv); bin != "" {
		return bin
	}
	dir, err := testenv.SeaweedCacheDir()
	if err != nil {
		return ""
	}
	bin := filepath.Join(dir, "weed")
	if fi, err := os.Stat(bin); err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return ""
	}
	return bin
}

// s3Part starts SeaweedFS, puts a small dataset under a prefix, mounts the
// prefix with two dfmount peers (separate data dirs, the demo supernode),
// lists and reads the whole tree on each and prints what the store served.
func s3Part(e *env, c config) result {
	part := partS3
	if why := fuseUnavailable(); why != "" {
		return skipped(part, "FUSE unavailable", "S3 part skipped: FUSE unavailable: "+why)
	}
	bin := seaweedBinary()
	if bin == "" {
		return skipped(part, "no SeaweedFS binary", "S3 part skipped: run `make seaweedfs` first (no SeaweedFS binary in the cache)")
	}
	// StartSeaweed must not build: point it at the cached binary.
	os.Setenv(testenv.SeaweedBinEnv, bin)
	start := time.Now()
	sw := testenv.StartSeaweed(e.tb, bucket)
	if err := e.store.SetStore(sw.Endpoint); err != nil {
		panic(testenv.FatalError{Msg: err.Error()})
	}
	printf("SeaweedFS S3 at %s (up in %s); peers reach it through a counting proxy at %s\n",
		sw.Endpoint, time.Since(start).Round(100*time.Millisecond), e.store.URL)

	files, total := putDataset(e.tb, sw)
	printf("put s3://%s/%s: %d directories x %d files of 64 KiB-1 MiB, %s\n",
		bucket, prefix, dirs, filesPerDir, ratelimit.HumanBytes(total))

	// The peers sign with the store's credentials from the environment,
	// as with any AWS tool; they are never on a command line.
	os.Setenv("AWS_ACCESS_KEY_ID", sw.AccessKeyID)
	os.Setenv("AWS_SECRET_ACCESS_KEY", sw.SecretAccessKey)
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	src := "s3://" + bucket + "/" + prefix
	args := []string{"--supernode", e.sn.Addr, "--s3-endpoint", e.store.URL, "--s3-path-style",
		"--s3-region", testenv.SeaweedRegion, "--prefetch=false"}
	var packArg string
	if c.s3Pack != "" {
		packArg = " --s3-pack=" + c.s3Pack
		args = append(args, strings.TrimSpace(packArg))
	}
	printf("dfmount %s MNT --supernode %s --s3-endpoint %s --s3-path-style%s (x2, separate data dirs)\n",
		src, e.sn.Addr, e.store.URL, packArg)
	if e.snS3 {
		printf("the supernode allows the store's presigned URLs (--s3-endpoint %s): its seed fetches each object\n", e.store.URL)
		printf("(and each directory's pack of small objects) once for the swarm\n")
	} else {
		printf("this supernode has no --s3-endpoint flag: each peer reads the store itself\n")
	}
	printLine()

	type peer struct {
		name  string
		m     *mount
		read  int64
		store testenv.StoreCounts
		took  time.Duration
		good  int
	}
	peers := []*peer{{name: "peer A"}, {name: "peer B"}}
	for _, p := range peers {
		m, err := startMount(e, src, e.tb.TempDir(), append(args, "--data-dir", e.tb.TempDir())...)
		if err != nil {
			if why := notYet(err); why != "" {
				return skipped(part, "this dfmount cannot mount an S3 prefix yet", "S3 part skipped: dfmount cannot mount an S3 prefix yet: "+why)
			}
			if why := fuseFailure(err); why != "" {
				return skipped(part, "FUSE unavailable", "S3 part skipped: FUSE unavailable: "+why)
			}
			panic(testenv.FatalError{Msg: err.Error()})
		}
		p.m = m
		printf("%s mounted %s in %s\n", p.name, m.mnt, m.took.Round(time.Millisecond))
	}

	// The listing, as `find MNT | wc -l` would do it, on peer A.
	before := e.store.Counts()
	t0 := time.Now()
	tree, ndirs, err := walk(peers[0].m.mnt)
	listTook := time.Since(t0)
	if err != nil {
		panic(testenv.FatalError{Msg: fmt.Sprintf("listing the mount: %v", err)})
	}
	listed := e.store.Counts().Sub(before)
	printf("find %s | wc -l: %d (%d directories, %d files) in %s; the store sent %s of listings and %s of file contents for it\n",
		peers[0].m.mnt, 1+ndirs+len(tree), ndirs, len(tree), listTook.Round(time.Millisecond),
		ratelimit.HumanBytes(listed.OtherBytes), ratelimit.HumanBytes(listed.ObjectBytes))
	treeOK := true
	if diff := compareTree(files, tree); diff != "" {
		treeOK = false
		printf("TREE DIFFERS from the store's: %s\n", diff)
	}

	printf("\n%-7s %7s %10s %9s %14s %10s  %-6s  %s\n", "peer", "files", "read", "time", "store served", "in GETs", "mode", "sha256")
	for _, p := range peers {
		before := e.store.Counts()
		start := time.Now()
		var bad []string
		p.good, p.read, bad = readAll(p.m.mnt, files)
		p.took = time.Since(start)
		p.store = e.store.Counts().Sub(before)
		status := "all match"
		if len(bad) > 0 {
			status = fmt.Sprintf("%d BAD: %s", len(bad), strings.Join(bad[:min(len(bad), 3)], "; "))
		}
		// How the mount got the first file: p2p (through the supernode)
		// or direct (from the store).
		mode := xattr(filepath.Join(p.m.mnt, files[0].rel), fusefs.XattrMode)
		printf("%-7s %7d %10s %9s %14s %10d  %-6s  %s\n", p.name, p.good, ratelimit.HumanBytes(p.read),
			p.took.Round(time.Millisecond), ratelimit.HumanBytes(p.store.ObjectBytes), p.store.ObjectGets, mode, status)
	}
	for _, p := range peers {
		if err := p.m.stop(); err != nil {
			printf("%s unmount: %v\n", p.name, err)
		}
	}
	served := listed.ObjectBytes + peers[0].store.ObjectBytes + peers[1].store.ObjectBytes
	printf("\nthe store served %s of file contents for 2 peers reading a %s dataset (%s; without sharing: 2.00)\n",
		ratelimit.HumanBytes(served), ratelimit.HumanBytes(total), copies(served, total))
	good := peers[0].good + peers[1].good
	if packArg != "" {
		part += "," + packArg
	}
	r := result{part: part,
		read: fmt.Sprintf("A %s + B %s", ratelimit.HumanBytes(peers[0].read), ratelimit.HumanBytes(peers[1].read)),
		served: fmt.Sprintf("A %s + B %s (%s)", ratelimit.HumanBytes(peers[0].store.ObjectBytes),
			ratelimit.HumanBytes(peers[1].store.ObjectBytes), copies(served, total)),
		sha:  fmt.Sprintf("%d/%d match", good, 2*len(files)),
		note: fmt.Sprintf("%d files, %s; find: %d entries", len(files), ratelimit.HumanBytes(total), 1+ndirs+len(tree))}
	if !treeOK {
		r.note += "; TREE DIFFERS"
	}
	r.failed = good != 2*len(files) || !treeOK
	return r
}

// putDataset puts the demo dataset (deterministic content) into the store.
func putDataset(tb testenv.TB, sw *testenv.Seaweed) ([]dataFile, int64) {
	rng := rand.New(rand.NewPCG(18, 2026))
	var files []dataFile
	var total int64
	for d := 0; d < dirs; d++ {
		for i := 0; i < filesPerDir; i++ {
			size := 64<<10 + rng.Int64N(1<<20-64<<10+1)
			data := make([]byte, size)
			for j := 0; j+8 <= len(data); j += 8 {
				v := rng.Uint64()
				for k := range 8 {
					data[j+k] = byte(v >> (8 * k))
				}
			}
			rel := fmt.Sprintf("shard-%d/sample-%03d.bin", d, i)
			sw.Put(tb, bucket, prefix+rel, data)
			files = append(files, dataFile{rel: rel, size: size, sum: sum(data)})
			total += size
		}
	}
	return files, total
}

// walk lists the tree under root: every regular file's size by its path
// relative to root, and the number of directories below root.
func walk(root string) (map[string]int64, int, error) {
	files := map[string]int64{}
	ndirs := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == root {
			return nil
		}
		if d.IsDir() {
			ndirs++
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		files[filepath.ToSlash(rel)] = fi.Size()
		return nil
	})
	return files, ndirs, err
}

// compareTree says how the listed tree differs from what was put, or "".
func compareTree(want []dataFile, got map[string]int64) string {
	var diffs []string
	seen := map[string]bool{}
	for _, f := range want {
		seen[f.rel] = true
		size, ok := got[f.rel]
		switch {
		case !ok:
			diffs = append(diffs, f.rel+" missing")
		case size != f.size:
			diffs = append(diffs, fmt.Sprintf("%s is %d bytes, want %d", f.rel, size, f.size))
		}
	}
	var extra []string
	for rel := range got {
		if !seen[rel] {
			extra = append(extra, rel+" not in the store")
		}
	}
	sort.Strings(extra)
	diffs = append(diffs, extra...)
	if len(diffs) == 0 {
		return ""
	}
	return fmt.Sprintf("%d differences: %s", len(diffs), strings.Join(diffs[:min(len(diffs), 4)], "; "))
}

// readAll reads every file of the dataset through the mount at mnt with a
// few workers (a data loader's) and checks each one's SHA-256. It returns
// how many matched, the bytes read, and what went wrong with the others.
func readAll(mnt string, files []dataFile) (good int, read int64, bad []string) {
	var mu sync.Mutex
	work := make(chan dataFile)
	var wg sync.WaitGroup
	for range readWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				got, n, err := readFile(filepath.Join(mnt, f.rel))
				mu.Lock()
				read += n
				switch {
				case err != nil:
					var pe *fs.PathError
					if errors.As(err, &pe) {
						err = pe.Err // the path is f.rel's
					}
					bad = append(bad, fmt.Sprintf("%s: %v", f.rel, err))
				case got != f.sum:
					bad = append(bad, f.rel+": sha256 differs")
				default:
					good++
				}
				mu.Unlock()
			}
		}()
	}
	for _, f := range files {
		work <- f
	}
	close(work)
	wg.Wait()
	sort.Strings(bad)
	return good, read, bad
}

func readFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	c := &countingReader{r: f}
	s, err := sha256Reader(c)
	return s, c.n, err
}

type countingReader struct {
	r interface{ Read([]byte) (int, error) }
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

// notYet says whether a failed mount failed because this dfmount cannot
// mount a prefix yet (the reason), or for another reason ("").
func notYet(err error) string {
	msg := err.Error()
	if strings.Contains(msg, "not supported") || strings.Contains(msg, "unknown flag") {
		if i := strings.Index(msg, "error: "); i >= 0 {
			msg = msg[i+len("error: "):]
		}
		return firstLine(msg)
	}
	return ""
}
