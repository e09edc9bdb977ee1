package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/testenv"
)

// DatasetConfig configures the dataset scenario (issue 18): object storage
// mounted by dfmount, s3fs and rclone, side by side, against a plain S3
// client as the baseline.
type DatasetConfig struct {
	// Files objects of FileSize bytes make the tree, in 3 levels of
	// directories (5 x 5 x 8) under one prefix.
	Files    int   `json:"files"`
	FileSize int64 `json:"fileSize"`
	// BigSize is the size of the object read sequentially and at random.
	BigSize int64 `json:"bigSize"`
	// Reads random reads of ReadSize bytes, each in a different piece of
	// the big object while there are enough pieces.
	Reads    int `json:"reads"`
	ReadSize int `json:"readSize"`
	// Workers read the tree's files at once.
	Workers int `json:"workers"`
	// Hosts mounts of the tree (separate processes and data dirs; for
	// Damselfly one supernode) read it at once; 0 skips that row.
	Hosts int `json:"hosts"`
	// Systems are the mounts to compare, of DatasetSystems; the baseline
	// always runs.
	Systems []string `json:"systems"`
	// Reps is how many times every measurement is made, the systems
	// interleaved in each repetition (medians reported; 0: 1).
	Reps int `json:"reps"`
	// Timeout bounds one measurement (0: 5 minutes).
	Timeout time.Duration `json:"timeoutNs"`
	// DropCaches empties the page cache before every measurement (root
	// only): the store's files are read from disk each time.
	DropCaches bool  `json:"dropCaches"`
	Seed       int64 `json:"seed"`
}

// Names of the systems of the dataset scenario.
const (
	DSDamselfly = "damselfly"
	// DSDamselflyLazy is dfmount with --prefetch=false: only what reads
	// touch is fetched (sequential and random reads only).
	DSDamselflyLazy = "damselfly-lazy"
	DSS3fs          = "s3fs"
	DSRclone        = "rclone"
	DSBaseline      = "baseline"
)

// DatasetSystems are the mounts the scenario knows, in table order.
var DatasetSystems = []string{DSDamselfly, DSDamselflyLazy, DSS3fs, DSRclone}

// Measurements of the dataset scenario, in table order.
const (
	DSMountPrefix = "mount prefix"
	DSMountObject = "mount object"
	DSFind        = "find"
	DSSeq         = "seq"
	DSRand        = "rand"
	DSSmall       = "small"
	DSHosts       = "hosts"
	// DSHostsObject is the hosts row on the big object (read whole by
	// every host): Damselfly only, the others fetch it once per host by
	// construction.
	DSHostsObject = "hosts object"
)

// DatasetCell is one measurement of one system.
type DatasetCell struct {
	// Sec is the wall time (random reads: the p50 of one read); P99 is
	// the random reads' p99.
	Sec float64 `json:"sec"`
	P99 float64 `json:"p99Sec,omitempty"`
	// Latency is every random read's time, in read order.
	Latency []float64 `json:"latencySec,omitempty"`
	// StoreBytes and StoreResponses are what the store sent during the
	// measurement (response bodies, through the counting proxy).
	StoreBytes     int64 `json:"storeBytes"`
	StoreResponses int64 `json:"storeResponses"`
	// Count is what was seen: entries found, files read, bytes read.
	Count int64 `json:"count"`
	// NA says why the measurement was not made ("" when it was).
	NA string `json:"na,omitempty"`
	// Samples (in a summary of several runs) are the runs' Sec; Failed
	// counts the runs without a measurement.
	Samples []float64 `json:"samplesSec,omitempty"`
	Failed  int       `json:"failedRuns,omitempty"`
}

// DatasetSystem is one system's measurements.
type DatasetSystem struct {
	Name string `json:"name"`
	// How shows the command (credentials left out).
	How string `json:"how"`
	// Cells are the medians over Runs (each run's cells by measurement).
	Cells map[string]*DatasetCell   `json:"cells"`
	Runs  []map[string]*DatasetCell `json:"runs"`
}

// DatasetReport is the dataset scenario's result.
type DatasetReport struct {
	Config   DatasetConfig     `json:"config"`
	Versions map[string]string `json:"versions"`
	// Evict says how caches were emptied before each measurement.
	Evict   string           `json:"evict"`
	Systems []*DatasetSystem `json:"systems"`
	Targets []Target         `json:"targets"`
}

// System returns the named system's results, or nil.
func (r *DatasetReport) System(name string) *DatasetSystem {
	for _, s := range r.Systems {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Cell returns a measurement that was made, or nil.
func (r *DatasetReport) Cell(system, kind string) *DatasetCell {
	s := r.System(system)
	if s == nil {
		return nil
	}
	c := s.Cells[kind]
	if c == nil || c.NA != "" {
		return nil
	}
	return c
}

const (
	dsBucket = "dfbench-dataset"
	dsPrefix = "tree/"
	dsBigKey = "big/big.bin"
)

// dsMounter mounts one system.
type dsMounter struct {
	name string
	how  string
	// args returns the binary, arguments and environment that mount
	// target (a key, or a prefix ending in "/") at mnt, and the path of
	// the target in the mount.
	args func(target, mnt, dataDir string, sn *testenv.Supernode) (bin string, args, env []string, root string)
	// term: unmount by SIGTERM to the process (else umount(2)).
	term bool
	// kinds are the measurements it makes (nil: all).
	kinds []string
}

// dsRun is what RunDataset's measurements share.
type dsRun struct {
	env     *Env
	cfg     DatasetConfig
	rep     *DatasetReport
	proxy   *testenv.StoreProxy
	client  *s3.Client // through the proxy: the baseline
	keys    []string   // the tree's files, relative to dsPrefix
	crcs    []uint32
	dirs    int // directories under dsPrefix
	offsets []int64
	want    [][]byte // the baseline's random reads
	drops   int
	dropErr error
	errs    []error
	// snS3: the supernode has --s3-endpoint.
	snS3 bool
}

// RunDataset measures object storage mounted as files (issue 18), against
// a real SeaweedFS on loopback whose S3 port every system reaches through
// a counting reverse proxy: Damselfly's dfmount (direct mode, no
// supernode; its defaults), s3fs and `rclone mount --vfs-cache-mode off`
// (their defaults otherwise), and a plain S3 client (aws-sdk-go-v2, the
// aws-cli/curl equivalent) as the baseline. Every measurement starts from
// a fresh mount with a fresh data dir and, with DropCaches, an empty page
// cache. A system whose measurement cannot be made (dfmount without s3
// prefix mounts) gets "n/a" and the rest still runs; other failures are
// returned (joined) with the report.
func RunDataset(ctx context.Context, env *Env, cfg DatasetConfig) (*DatasetReport, error) {
	if cfg.Files <= 0 {
		cfg.Files = 2000
	}
	if cfg.FileSize <= 0 {
		cfg.FileSize = 64 << 10
	}
	if cfg.BigSize <= 0 {
		cfg.BigSize = 1 << 30
	}
	if cfg.Reads <= 0 {
		cfg.Reads = 200
	}
	if cfg.ReadSize <= 0 {
		cfg.ReadSize = 4096
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Minute
	}
	if cfg.Reps <= 0 {
		cfg.Reps = 1
	}
	if cfg.Seed == 0 {
		cfg.Seed = 18
	}
	if cfg.Systems == nil {
		cfg.Systems = DatasetSystems
	}
	rep := &DatasetReport{Config: cfg, Versions: map[string]string{}}
	tb, closeScope, err := env.Scope()
	if err != nil {
		return rep, err
	}
	defer closeScope()
	r := &dsRun{env: env, cfg: cfg, rep: rep}
	defer func() { rep.Evict = r.evictText() }()

	var sw *testenv.Seaweed
	if err := guard(func() error {
		env.Logf("dataset: starting SeaweedFS (built by make deps; building it now takes minutes)")
		sw = testenv.StartSeaweed(tb, dsBucket)
		return nil
	}); err != nil {
		return rep, fmt.Errorf("dataset: %w", err)
	}
	r.proxy = testenv.StartStoreProxy(tb, sw.Endpoint)
	r.client = dsClient(r.proxy.URL, sw)
	if err := r.upload(ctx, tb, dsClient(sw.Endpoint, sw)); err != nil {
		return rep, fmt.Errorf("dataset: upload: %w", err)
	}
	r.offsets = ttfbOffsets(MountConfig{FileSize: cfg.BigSize, Reads: cfg.Reads, ReadSize: cfg.ReadSize, Seed: cfg.Seed},
		manifest.PieceSizeFor(cfg.BigSize))

	awsEnv := []string{"AWS_ACCESS_KEY_ID=" + sw.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + sw.SecretAccessKey,
		"AWS_REGION=" + testenv.SeaweedRegion, "AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=" + filepath.Join(tb.TempDir(), "none"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(tb.TempDir(), "none")}
	rcloneConf := filepath.Join(tb.TempDir(), "rclone.conf")
	passwd := filepath.Join(tb.TempDir(), "s3fs.passwd")
	if err := os.WriteFile(rcloneConf, nil, 0o600); err != nil {
		return rep, err
	}
	if err := os.WriteFile(passwd, []byte(sw.AccessKeyID+":"+sw.SecretAccessKey+"\n"), 0o600); err != nil {
		return rep, err
	}
	rcloneEnv := []string{"RCLONE_CONFIG_DSBENCH_TYPE=s3", "RCLONE_CONFIG_DSBENCH_PROVIDER=SeaweedFS",
		"RCLONE_CONFIG_DSBENCH_ACCESS_KEY_ID=" + sw.AccessKeyID, "RCLONE_CONFIG_DSBENCH_SECRET_ACCESS_KEY=" + sw.SecretAccessKey,
		"RCLONE_CONFIG_DSBENCH_ENDPOINT=" + r.proxy.URL, "RCLONE_CONFIG_DSBENCH_ENV_AUTH=false"}
	dfmountArgs := func(extra ...string) func(target, mnt, dataDir string, sn *testenv.Supernode) (string, []string, []string, string) {
		return func(target, mnt, dataDir string, sn *testenv.Supernode) (string, []string, []string, string) {
			a := []string{"s3://" + dsBucket + "/" + target, mnt, "--s3-endpoint", r.proxy.URL, "--s3-path-style",
				"--data-dir", dataDir, "--upload-listen", "127.0.0.1:0"}
			if sn != nil {
				a = append(a, "--supernode", sn.Addr)
			}
			root := mnt
			if !strings.HasSuffix(target, "/") {
				root = filepath.Join(mnt, path.Base(target))
			}
			return filepath.Join(env.BinDir, "dfmount"), append(a, extra...), awsEnv, root
		}
	}
	mounters := map[string]*dsMounter{
		DSDamselfly: {name: DSDamselfly, term: true, kinds: []string{DSFind, DSSeq, DSRand, DSSmall, DSHosts, DSHostsObject},
			how:  "dfmount s3://B/KEY|s3://B/PREFIX/ MNT --s3-endpoint PROXY --s3-path-style --data-dir FRESH (no supernode: direct mode; defaults: prefetch on)",
			args: dfmountArgs()},
		DSDamselflyLazy: {name: DSDamselflyLazy, term: true, kinds: []string{DSSeq, DSRand},
			how:  "the same with --prefetch=false (sequential and random reads only)",
			args: dfmountArgs("--prefetch=false")},
		DSS3fs: {name: DSS3fs,
			how: "s3fs BUCKET[:/PREFIX] MNT -f -o url=PROXY,use_path_request_style,passwd_file=F (defaults otherwise)",
			args: func(target, mnt, _ string, _ *testenv.Supernode) (string, []string, []string, string) {
				src, root := dsBucket, filepath.Join(mnt, target)
				if strings.HasSuffix(target, "/") {
					src, root = dsBucket+":/"+strings.TrimSuffix(target, "/"), mnt
				}
				return "s3fs", []string{src, mnt, "-f", "-o", "url=" + r.proxy.URL, "-o", "use_path_request_style",
					"-o", "passwd_file=" + passwd}, nil, root
			}},
		DSRclone: {name: DSRclone,
			how: "rclone mount REMOTE:BUCKET[/PREFIX] MNT --vfs-cache-mode off (S3 remote, provider SeaweedFS, from the environment; defaults otherwise)",
			args: func(target, mnt, _ string, _ *testenv.Supernode) (string, []string, []string, string) {
				src, root := "dsbench:"+dsBucket, filepath.Join(mnt, target)
				if strings.HasSuffix(target, "/") {
					src, root = "dsbench:"+dsBucket+"/"+strings.TrimSuffix(target, "/"), mnt
				}
				return "rclone", []string{"mount", src, mnt, "--vfs-cache-mode", "off", "--config", rcloneConf}, rcloneEnv, root
			}},
	}
	r.snS3 = helpHas(filepath.Join(env.BinDir, "supernode"), "--s3-endpoint")
	rep.Versions["supernode --s3-endpoint"] = fmt.Sprint(r.snS3)
	rep.Versions["s3fs"] = versionLine("s3fs", "--version")
	rep.Versions["rclone"] = versionLine("rclone", "version")
	rep.Versions["seaweedfs"] = testenv.SeaweedVersion

	base := &DatasetSystem{Name: DSBaseline, Cells: map[string]*DatasetCell{},
		How: "aws-sdk-go-v2 S3 client in dfbench: ListObjectsV2 (no delimiter), one GET, ranged GETs, GETs by 8 goroutines (bodies discarded)"}
	rep.Systems = append(rep.Systems, base)
	var missing = map[string]string{}
	for _, name := range cfg.Systems {
		m := mounters[name]
		if m == nil {
			return rep, fmt.Errorf("dataset: unknown system %q (want %s)", name, strings.Join(DatasetSystems, ", "))
		}
		rep.Systems = append(rep.Systems, &DatasetSystem{Name: name, How: m.how, Cells: map[string]*DatasetCell{}})
		if name == DSS3fs || name == DSRclone {
			if _, err := exec.LookPath(m.name); err != nil {
				missing[name] = "n/a (" + m.name + " not installed)"
				r.errs = append(r.errs, fmt.Errorf("%s: %w", m.name, err))
			}
		}
	}
	// Every repetition measures all systems, so that drifts of a shared
	// machine touch them alike.
	defer func() {
		for _, s := range rep.Systems {
			s.Cells = summarizeRuns(s.Runs)
		}
		rep.Targets = DatasetTargets(rep)
	}()
	for i := 0; i < cfg.Reps; i++ {
		if cfg.Reps > 1 {
			env.Logf("dataset: repetition %d of %d", i+1, cfg.Reps)
		}
		// The baseline first: its random reads are the reference bytes.
		cells := map[string]*DatasetCell{}
		base.Runs = append(base.Runs, cells)
		if err := r.baseline(ctx, cells); err != nil {
			return rep, fmt.Errorf("dataset baseline: %w", err)
		}
		for _, sys := range rep.Systems[1:] {
			m := mounters[sys.Name]
			cells := map[string]*DatasetCell{}
			sys.Runs = append(sys.Runs, cells)
			kinds := m.kinds
			if kinds == nil {
				kinds = []string{DSFind, DSSeq, DSRand, DSSmall, DSHosts}
			}
			for _, kind := range kinds {
				if ctx.Err() != nil {
					return rep, ctx.Err()
				}
				if (kind == DSHosts || kind == DSHostsObject) && cfg.Hosts <= 0 {
					continue
				}
				if na := missing[sys.Name]; na != "" {
					cells[kind] = &DatasetCell{NA: na}
					continue
				}
				r.measure(ctx, sys.Name, cells, m, kind)
			}
		}
	}
	return rep, errors.Join(r.errs...)
}

// summarizeRuns returns, per measurement, the medians over the runs that
// made it (the first run's cell when there is one run; the first run's
// "n/a" when none made it).
func summarizeRuns(runs []map[string]*DatasetCell) map[string]*DatasetCell {
	if len(runs) == 1 {
		return runs[0]
	}
	out := map[string]*DatasetCell{}
	for _, run := range runs {
		for kind := range run {
			if out[kind] != nil {
				continue
			}
			var ok []*DatasetCell
			var na *DatasetCell
			for _, r := range runs {
				switch c := r[kind]; {
				case c == nil:
				case c.NA != "":
					if na == nil {
						na = c
					}
				default:
					ok = append(ok, c)
				}
			}
			if len(ok) == 0 {
				out[kind] = na
				continue
			}
			var sec, p99, b, n []float64
			for _, c := range ok {
				sec, p99 = append(sec, c.Sec), append(p99, c.P99)
				b, n = append(b, float64(c.StoreBytes)), append(n, float64(c.StoreResponses))
			}
			out[kind] = &DatasetCell{Sec: median(sec), P99: median(p99), StoreBytes: int64(median(b)),
				StoreResponses: int64(median(n)), Count: ok[0].Count, Samples: sec, Failed: len(runs) - len(ok)}
		}
	}
	return out
}

// dsClient returns an S3 client of sw's identity for endpoint.
func dsClient(endpoint string, sw *testenv.Seaweed) *s3.Client {
	return s3.New(s3.Options{
		Region:                     testenv.SeaweedRegion,
		BaseEndpoint:               aws.String(endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(sw.AccessKeyID, sw.SecretAccessKey, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// dsTreeKey is the i-th file of the tree: 3 levels of directories.
func dsTreeKey(i int) string {
	leaf := i % 200
	return fmt.Sprintf("d%d/e%d/f%d/file-%05d.bin", leaf/40, leaf/8%5, leaf%8, i)
}

// dsTreeDirs counts the directories the first n files make.
func dsTreeDirs(n int) int {
	seen := map[string]bool{}
	for i := 0; i < n; i++ {
		d := path.Dir(dsTreeKey(i))
		for d != "." && !seen[d] {
			seen[d] = true
			d = path.Dir(d)
		}
	}
	return len(seen)
}

// upload writes the tree and the big object straight to the store (not
// through the proxy).
func (r *dsRun) upload(ctx context.Context, tb testenv.TB, c *s3.Client) error {
	start := time.Now()
	r.env.Logf("dataset: uploading %d x %s under s3://%s/%s", r.cfg.Files, fmtMiB(r.cfg.FileSize), dsBucket, dsPrefix)
	r.keys, r.crcs, r.dirs = make([]string, r.cfg.Files), make([]uint32, r.cfg.Files), dsTreeDirs(r.cfg.Files)
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= r.cfg.Files || ctx.Err() != nil {
					return
				}
				data, _ := io.ReadAll(testenv.RandomReader(r.cfg.FileSize, r.cfg.Seed+1+int64(i)))
				r.keys[i], r.crcs[i] = dsTreeKey(i), crc32.ChecksumIEEE(data)
				if err := dsPut(ctx, c, dsPrefix+r.keys[i], func() io.ReadSeeker { return bytes.NewReader(data) }, int64(len(data))); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	r.env.Logf("dataset: writing and uploading a %s object s3://%s/%s", fmtMiB(r.cfg.BigSize), dsBucket, dsBigKey)
	local := filepath.Join(tb.TempDir(), "big.bin")
	if _, err := writeRandomFile(local, r.cfg.BigSize, r.cfg.Seed); err != nil {
		return err
	}
	defer os.Remove(local)
	f, err := os.Open(local)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := dsPut(ctx, c, dsBigKey, func() io.ReadSeeker { f.Seek(0, io.SeekStart); return f }, r.cfg.BigSize); err != nil {
		return err
	}
	r.env.Logf("dataset: uploaded in %v", time.Since(start).Round(time.Second))
	return nil
}

// dsPut puts one object, retrying for up to 30 s (a young SeaweedFS may
// refuse writes).
func dsPut(ctx context.Context, c *s3.Client, key string, body func() io.ReadSeeker, size int64) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(dsBucket), Key: aws.String(key),
			Body: body(), ContentLength: aws.Int64(size)})
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("put s3://%s/%s: %w", dsBucket, key, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// drop empties the page cache if configured to, and remembers the outcome.
func (r *dsRun) drop() {
	if !r.cfg.DropCaches {
		return
	}
	if err := dropCaches(); err != nil {
		r.dropErr = err
		return
	}
	r.drops++
}

func (r *dsRun) evictText() string {
	switch {
	case r.drops > 0:
		return fmt.Sprintf("fresh mount and data dir per measurement; sync + echo 3 > /proc/sys/vm/drop_caches before each (%d times)", r.drops)
	case r.dropErr != nil:
		return fmt.Sprintf("fresh mount and data dir per measurement; drop_caches failed: %v", r.dropErr)
	}
	return "fresh mount and data dir per measurement; page cache not dropped"
}

// span measures the store's traffic and the wall time of f.
func (r *dsRun) span(c *DatasetCell, f func() error) error {
	b0, n0 := r.counted()
	t0 := time.Now()
	err := f()
	c.Sec = time.Since(t0).Seconds()
	b1, n1 := r.counted()
	c.StoreBytes, c.StoreResponses = b1-b0, n1-n0
	return err
}

// baseline measures the plain S3 client.
func (r *dsRun) baseline(ctx context.Context, cells map[string]*DatasetCell) error {
	cfg := r.cfg
	ctx, cancel := context.WithTimeout(ctx, 4*cfg.Timeout)
	defer cancel()
	// find: a recursive listing.
	r.drop()
	c := &DatasetCell{}
	cells[DSFind] = c
	if err := r.span(c, func() error {
		p := s3.NewListObjectsV2Paginator(r.client, &s3.ListObjectsV2Input{Bucket: aws.String(dsBucket), Prefix: aws.String(dsPrefix)})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return err
			}
			c.Count += int64(len(page.Contents))
		}
		return nil
	}); err != nil {
		return fmt.Errorf("list: %w", err)
	}
	if c.Count != int64(cfg.Files) {
		return fmt.Errorf("list: %d objects, want %d", c.Count, cfg.Files)
	}
	r.env.Logf("dataset: baseline: list %d objects %.2fs", c.Count, c.Sec)

	// seq: one GET of the big object.
	r.drop()
	c = &DatasetCell{}
	cells[DSSeq] = c
	if err := r.span(c, func() error {
		out, err := r.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(dsBucket), Key: aws.String(dsBigKey)})
		if err != nil {
			return err
		}
		defer out.Body.Close()
		c.Count, err = readSeq(out.Body)
		return err
	}); err != nil {
		return fmt.Errorf("get: %w", err)
	}
	if c.Count != cfg.BigSize {
		return fmt.Errorf("get: %d bytes, want %d", c.Count, cfg.BigSize)
	}
	r.env.Logf("dataset: baseline: GET %s %.2fs", fmtMiB(c.Count), c.Sec)

	// rand: one ranged GET per read.
	r.drop()
	c = &DatasetCell{}
	cells[DSRand] = c
	r.want = make([][]byte, len(r.offsets))
	if err := r.span(c, func() error {
		for i, off := range r.offsets {
			t := time.Now()
			out, err := r.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(dsBucket), Key: aws.String(dsBigKey),
				Range: aws.String(fmt.Sprintf("bytes=%d-%d", off, off+int64(cfg.ReadSize)-1))})
			if err != nil {
				return err
			}
			r.want[i], err = io.ReadAll(out.Body)
			out.Body.Close()
			c.Latency = append(c.Latency, time.Since(t).Seconds())
			if err != nil {
				return err
			}
			if len(r.want[i]) != cfg.ReadSize {
				return fmt.Errorf("range at %d: %d bytes, want %d", off, len(r.want[i]), cfg.ReadSize)
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("range GETs: %w", err)
	}
	r.finishRand(c)
	r.env.Logf("dataset: baseline: range GETs p50 %s p99 %s", fmtMs(c.Sec), fmtMs(c.P99))

	// small: Workers goroutines GET every file.
	r.drop()
	c = &DatasetCell{}
	cells[DSSmall] = c
	if err := r.span(c, func() error {
		n, err := r.readAll(ctx, func(i int) (io.ReadCloser, error) {
			out, err := r.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(dsBucket), Key: aws.String(dsPrefix + r.keys[i])})
			if err != nil {
				return nil, err
			}
			return out.Body, nil
		})
		c.Count = n
		return err
	}); err != nil {
		return fmt.Errorf("small GETs: %w", err)
	}
	r.env.Logf("dataset: baseline: %d files by %d workers %.2fs", c.Count, cfg.Workers, c.Sec)

	// hosts: Hosts clients doing the same at once.
	if cfg.Hosts > 0 {
		r.drop()
		c = &DatasetCell{}
		cells[DSHosts] = c
		if err := r.span(c, func() error {
			var wg sync.WaitGroup
			errs := make([]error, cfg.Hosts)
			var total atomic.Int64
			for h := 0; h < cfg.Hosts; h++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					n, err := r.readAll(ctx, func(i int) (io.ReadCloser, error) {
						out, err := r.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(dsBucket), Key: aws.String(dsPrefix + r.keys[i])})
						if err != nil {
							return nil, err
						}
						return out.Body, nil
					})
					total.Add(n)
					errs[h] = err
				}()
			}
			wg.Wait()
			c.Count = total.Load()
			return errors.Join(errs...)
		}); err != nil {
			return fmt.Errorf("hosts: %w", err)
		}
	}
	return nil
}

// finishRand sets a random-read cell's p50 and p99.
func (r *dsRun) finishRand(c *DatasetCell) {
	s := Summarize(c.Latency)
	c.Sec, c.P99, c.Count = s.P50, s.P99, int64(len(c.Latency))
}

// readAll reads every file of the tree with cfg.Workers workers, checking
// each one's CRC, and returns how many it read.
func (r *dsRun) readAll(ctx context.Context, open func(i int) (io.ReadCloser, error)) (int64, error) {
	var next, done atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for w := 0; w < r.cfg.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, r.cfg.FileSize+1024)
			for {
				i := int(next.Add(1) - 1)
				if i >= len(r.keys) || ctx.Err() != nil {
					return
				}
				err := func() error {
					rc, err := open(i)
					if err != nil {
						return err
					}
					defer rc.Close()
					b := bytes.NewBuffer(buf[:0])
					if _, err := b.ReadFrom(rc); err != nil {
						return err
					}
					if got := crc32.ChecksumIEEE(b.Bytes()); got != r.crcs[i] || int64(b.Len()) != r.cfg.FileSize {
						return fmt.Errorf("%s: %d bytes, crc %08x, want %d bytes, crc %08x", r.keys[i], b.Len(), got, r.cfg.FileSize, r.crcs[i])
					}
					return nil
				}()
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					next.Store(int64(len(r.keys))) // stop the others
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return done.Load(), first
}

// dsMount is one live mount.
type dsMount struct {
	proc      *dsProc
	mnt, root string
	term      bool
	once      sync.Once
}

// mount mounts target with m in tb's scope (a fresh mount point and data
// dir) and returns the mount and the seconds from start to a live mount.
func (r *dsRun) mount(ctx context.Context, tb testenv.TB, m *dsMounter, target string, sn *testenv.Supernode) (*dsMount, float64, error) {
	var mnt, data string
	if err := guard(func() error { mnt, data = tb.TempDir(), tb.TempDir(); return nil }); err != nil {
		return nil, 0, err
	}
	tb.Cleanup(func() { detachMount(mnt) }) // after the process is killed
	bin, args, env, root := m.args(target, mnt, data, sn)
	start := time.Now()
	p, err := dsStart(tb, env, bin, args...)
	if err != nil {
		return nil, 0, err
	}
	if err := waitFUSE(ctx, p, mnt); err != nil {
		if m.name == DSDamselfly && strings.HasSuffix(target, "/") && strings.Contains(p.tail(30), "not supported yet") {
			return nil, 0, errPrefixNotBuilt
		}
		return nil, 0, err
	}
	secs := time.Since(start).Seconds()
	mt := &dsMount{proc: p, mnt: mnt, root: root, term: m.term}
	tb.Cleanup(func() { r.unmount(mt) })
	return mt, secs, nil
}

// unmount stops a mount once (later calls wait for the first) and logs a
// process that had to be killed.
func (r *dsRun) unmount(m *dsMount) {
	m.once.Do(func() {
		unmountFUSE(m.proc, m.mnt, m.term)
		if m.proc.slowExit {
			r.env.Logf("dataset: %s did not exit within 15s of being unmounted; killed:\n%s", m.proc.name, m.proc.tail(5))
		}
	})
}

// measure runs one measurement of a mounted system in a scope of its own.
func (r *dsRun) measure(ctx context.Context, sysName string, cells map[string]*DatasetCell, m *dsMounter, kind string) {
	c := &DatasetCell{}
	cells[kind] = c
	tb, closeScope, err := r.env.Scope()
	if err != nil {
		c.NA = "n/a (" + err.Error() + ")"
		return
	}
	defer func() {
		t := time.Now()
		closeScope()
		if d := time.Since(t); d > 5*time.Second {
			r.env.Logf("dataset: %s %s: teardown took %v", sysName, kind, d.Round(time.Second))
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	r.drop()
	err = r.measureIn(ctx, tb, cells, m, kind, c)
	if errors.Is(err, errPrefixNotBuilt) {
		c.NA = errPrefixNotBuilt.Error()
		if kind == DSFind {
			cells[DSMountPrefix] = &DatasetCell{NA: c.NA}
		}
		r.env.Logf("dataset: %s %s: %s", sysName, kind, c.NA)
		return
	}
	if err != nil {
		msg, _, _ := strings.Cut(err.Error(), "\n")
		if len(msg) > 160 {
			msg = msg[:160] + "..."
		}
		c.NA = "n/a (failed: " + msg + ")"
		r.errs = append(r.errs, fmt.Errorf("%s %s: %w", sysName, kind, err))
		r.env.Logf("dataset: %s %s failed: %v", sysName, kind, err)
		return
	}
	r.env.Logf("dataset: %s %s: %.3fs (p99 %.3fs), store %s in %d responses, count %d", sysName, kind, c.Sec, c.P99,
		fmtMiB(c.StoreBytes), c.StoreResponses, c.Count)
}

func (r *dsRun) measureIn(ctx context.Context, tb testenv.TB, cells map[string]*DatasetCell, m *dsMounter, kind string, c *DatasetCell) error {
	cfg := r.cfg
	target := dsBigKey
	if kind == DSFind || kind == DSSmall || kind == DSHosts {
		target = dsPrefix
	}
	if kind == DSHosts || kind == DSHostsObject {
		return r.hosts(ctx, tb, m, kind == DSHostsObject, c)
	}
	b0, n0 := r.counted()
	mt, secs, err := r.mount(ctx, tb, m, target, nil)
	if err != nil {
		return err
	}
	b1, n1 := r.counted()
	mc := &DatasetCell{Sec: secs, StoreBytes: b1 - b0, StoreResponses: n1 - n0}
	switch kind {
	case DSFind:
		cells[DSMountPrefix] = mc
	case DSSeq:
		cells[DSMountObject] = mc
	}
	switch kind {
	case DSFind:
		err = r.span(c, func() error {
			cmd := exec.CommandContext(ctx, "find", mt.root)
			var out bytes.Buffer
			cmd.Stdout = &out
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("find: %w", err)
			}
			c.Count = int64(bytes.Count(out.Bytes(), []byte("\n"))) - 1 // not the root itself
			return nil
		})
		if want := int64(cfg.Files + r.dirs); err == nil && c.Count != want {
			err = fmt.Errorf("find listed %d entries, want %d", c.Count, want)
		}
	case DSSeq:
		err = r.span(c, func() error {
			f, err := os.Open(mt.root)
			if err != nil {
				return err
			}
			defer f.Close()
			c.Count, err = readSeq(f)
			return err
		})
		if err == nil && c.Count != cfg.BigSize {
			err = fmt.Errorf("read %d bytes, want %d", c.Count, cfg.BigSize)
		}
	case DSRand:
		var bufs [][]byte
		err = r.span(c, func() error {
			var err error
			bufs, c.Latency, err = preads(ctx, mt.root, r.offsets, cfg.ReadSize)
			return err
		})
		if err == nil {
			err = sameBufs(r.want, bufs, r.offsets)
		}
		r.finishRand(c)
	case DSSmall:
		err = r.span(c, func() error {
			n, err := r.readAll(ctx, func(i int) (io.ReadCloser, error) { return os.Open(filepath.Join(mt.root, r.keys[i])) })
			c.Count = n
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("%w\n%s", err, mt.proc.tail(10))
	}
	return nil
}

// hosts mounts the tree cfg.Hosts times (separate processes and data
// dirs; Damselfly with one supernode) and reads it through every mount at
// once.
func (r *dsRun) hosts(ctx context.Context, tb testenv.TB, m *dsMounter, object bool, c *DatasetCell) error {
	var sn *testenv.Supernode
	if m.name == DSDamselfly {
		// The store (through the proxy) is an origin the supernode's seed
		// may fetch from; with --s3-endpoint (where the supernode has it)
		// peers may register its presigned URLs, so that the seed fetches
		// each object once for the swarm.
		u, _ := url.Parse(r.proxy.URL)
		args := append([]string{"--log-level", "warn"}, testenv.AllowOrigins(u.Host)...)
		if r.snS3 {
			args = append(args, "--s3-endpoint", r.proxy.URL)
		}
		if err := guard(func() error {
			sn = testenv.StartSupernode(tb, r.env.BinDir, args...)
			return nil
		}); err != nil {
			return err
		}
	}
	var mounts []*dsMount
	for h := 0; h < r.cfg.Hosts; h++ {
		target := dsPrefix
		if object {
			target = dsBigKey
		}
		mt, _, err := r.mount(ctx, tb, m, target, sn)
		if err != nil {
			return err
		}
		mounts = append(mounts, mt)
	}
	// Stopped at once, not one after the other at scope close.
	defer func() {
		var wg sync.WaitGroup
		for _, mt := range mounts {
			wg.Add(1)
			go func() { defer wg.Done(); r.unmount(mt) }()
		}
		wg.Wait()
	}()
	return r.span(c, func() error {
		var wg sync.WaitGroup
		errs := make([]error, len(mounts))
		var total atomic.Int64
		for h, mt := range mounts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var n int64
				var err error
				if object {
					n, err = readFile(mt.root)
					if err == nil && n != r.cfg.BigSize {
						err = fmt.Errorf("read %d bytes, want %d", n, r.cfg.BigSize)
					}
				} else {
					n, err = r.readAll(ctx, func(i int) (io.ReadCloser, error) { return os.Open(filepath.Join(mt.root, r.keys[i])) })
				}
				total.Add(n)
				if err != nil {
					errs[h] = fmt.Errorf("host %d: %w\n%s", h+1, err, mt.proc.tail(10))
				}
			}()
		}
		wg.Wait()
		c.Count = total.Load()
		return errors.Join(errs...)
	})
}

// DatasetTargets checks Damselfly against issue 18's targets: find no
// slower than rclone; sequential at most 1.5x the baseline GET; random
// p99 at most 2x the baseline's (one range GET) with at most 1/4 of
// rclone's store bytes; the tree read in at most half of rclone's time;
// with several hosts, the store serving about one copy (at most 1.5).
func DatasetTargets(rep *DatasetReport) []Target {
	var ts []Target
	df := DSDamselfly
	add := func(name, kind, other string, val func(a, b *DatasetCell) float64, want float64, detail func(a, b *DatasetCell) string) {
		a, b := rep.Cell(df, kind), rep.Cell(other, kind)
		if a == nil || b == nil {
			why := "not measured"
			for _, sys := range []string{df, other} {
				if s := rep.System(sys); s != nil && s.Cells[kind] != nil && s.Cells[kind].NA != "" {
					why = sys + ": " + s.Cells[kind].NA
					break
				}
			}
			ts = append(ts, Target{Name: name, Measured: "-", Note: why})
			return
		}
		v := val(a, b)
		t := AtMost(name, v, want, "%.2fx")
		t.Measured = fmt.Sprintf("%.2fx (%s)", v, detail(a, b))
		ts = append(ts, t)
	}
	secs := func(a, b *DatasetCell) string { return fmt.Sprintf("%.2fs vs %.2fs", a.Sec, b.Sec) }
	ratio := func(a, b *DatasetCell) float64 { return a.Sec / b.Sec }
	cfg := rep.Config
	add("dataset: cold find of the tree no slower than rclone (<= 1.00x)", DSFind, DSRclone, ratio, 1, secs)
	add(fmt.Sprintf("dataset: cold sequential read of %s <= 1.5x one GET", fmtMiB(cfg.BigSize)), DSSeq, DSBaseline, ratio, 1.5, secs)
	random := func(suffix string) {
		add(fmt.Sprintf("dataset: %d cold random reads p99 <= 2x one range GET's p99%s", cfg.Reads, suffix), DSRand, DSBaseline,
			func(a, b *DatasetCell) float64 { return a.P99 / b.P99 }, 2,
			func(a, b *DatasetCell) string { return fmt.Sprintf("%s vs %s", fmtMs(a.P99), fmtMs(b.P99)) })
		add(fmt.Sprintf("dataset: store bytes for the %d random reads <= 1/4 of rclone's (<= 0.25x)%s", cfg.Reads, suffix), DSRand, DSRclone,
			func(a, b *DatasetCell) float64 { return float64(a.StoreBytes) / math.Max(1, float64(b.StoreBytes)) }, 0.25,
			func(a, b *DatasetCell) string { return fmtMiB(a.StoreBytes) + " vs " + fmtMiB(b.StoreBytes) })
	}
	random("")
	add(fmt.Sprintf("dataset: %d files read by %d workers in <= half of rclone's time (<= 0.50x)", cfg.Files, cfg.Workers),
		DSSmall, DSRclone, ratio, 0.5, secs)
	if cfg.Hosts > 1 {
		tree := float64(int64(cfg.Files) * cfg.FileSize)
		add(fmt.Sprintf("dataset: %d hosts reading the tree: the store serves about one copy (<= 1.5 copies)", cfg.Hosts), DSHosts, DSDamselfly,
			func(a, _ *DatasetCell) float64 { return float64(a.StoreBytes) / tree }, 1.5,
			func(a, _ *DatasetCell) string {
				return fmt.Sprintf("%s for a %s tree", fmtMiB(a.StoreBytes), fmtMiB(int64(tree)))
			})
	}
	if cfg.Hosts > 1 {
		add(fmt.Sprintf("dataset: %d hosts reading the %s object: the store serves about one copy (<= 1.5 copies)", cfg.Hosts, fmtMiB(cfg.BigSize)),
			DSHostsObject, DSDamselfly,
			func(a, _ *DatasetCell) float64 { return float64(a.StoreBytes) / float64(cfg.BigSize) }, 1.5,
			func(a, _ *DatasetCell) string {
				return fmt.Sprintf("%s for a %s object", fmtMiB(a.StoreBytes), fmtMiB(cfg.BigSize))
			})
	}
	if rep.System(DSDamselflyLazy) != nil {
		df = DSDamselflyLazy
		random(", --prefetch=false")
	}
	return ts
}

// DatasetTable renders the report: one row per measurement, one column
// per system, then Damselfly's ratios to the baseline and to rclone.
func DatasetTable(rep *DatasetReport) *Table {
	cfg := rep.Config
	var cols []string
	for _, name := range append(append([]string(nil), DatasetSystems...), DSBaseline) {
		if rep.System(name) != nil {
			cols = append(cols, name)
		}
	}
	runs := ""
	if cfg.Reps > 1 {
		runs = fmt.Sprintf("; medians of %d runs", cfg.Reps)
	}
	t := &Table{Title: fmt.Sprintf("dataset: object storage mounted (SeaweedFS on loopback; %d x %s tree in 3 levels, %s object%s)",
		cfg.Files, fmtKiB(cfg.FileSize), fmtMiB(cfg.BigSize), runs),
		Header: append(append([]string{"measurement"}, cols...), "df/baseline", "df/rclone")}
	type rowSpec struct {
		label, kind string
		val         func(c *DatasetCell) (string, float64)
	}
	sec := func(c *DatasetCell) (string, float64) { return fmtSec(c.Sec), c.Sec }
	ms := func(c *DatasetCell) (string, float64) { return fmtMs(c.Sec), c.Sec }
	p99 := func(c *DatasetCell) (string, float64) { return fmtMs(c.P99), c.P99 }
	store := func(c *DatasetCell) (string, float64) { return fmtMiB(c.StoreBytes), float64(c.StoreBytes) }
	reqs := func(c *DatasetCell) (string, float64) { return fmt.Sprint(c.StoreResponses), float64(c.StoreResponses) }
	hosts := fmt.Sprintf("%d hosts read the tree at once", cfg.Hosts)
	rows := []rowSpec{
		{"mount a prefix (start to live mount)", DSMountPrefix, sec},
		{"mount one object", DSMountObject, sec},
		{fmt.Sprintf("cold find of the tree (%d entries)", cfg.Files+dsTreeDirs(cfg.Files)), DSFind, sec},
		{"  store responses", DSFind, reqs},
		{fmt.Sprintf("cold sequential read, %s", fmtMiB(cfg.BigSize)), DSSeq, sec},
		{"  store bytes", DSSeq, store},
		{fmt.Sprintf("%d cold random %s reads: p50", cfg.Reads, fmtKiB(int64(cfg.ReadSize))), DSRand, ms},
		{"  p99", DSRand, p99},
		{"  store bytes", DSRand, store},
		{fmt.Sprintf("%d x %s files, %d workers", cfg.Files, fmtKiB(cfg.FileSize), cfg.Workers), DSSmall, sec},
		{"  store bytes", DSSmall, store},
	}
	if cfg.Hosts > 0 {
		rows = append(rows, rowSpec{hosts, DSHosts, sec}, rowSpec{"  store bytes", DSHosts, store},
			rowSpec{fmt.Sprintf("%d hosts read the %s object at once", cfg.Hosts, fmtMiB(cfg.BigSize)), DSHostsObject, sec},
			rowSpec{"  store bytes", DSHostsObject, store})
	}
	for _, rs := range rows {
		cells := []string{rs.label}
		vals := map[string]float64{}
		for _, name := range cols {
			s := rep.System(name)
			var c *DatasetCell
			if s != nil {
				c = s.Cells[rs.kind]
			}
			switch {
			case c == nil:
				cells = append(cells, "-")
			case c.NA != "":
				cells = append(cells, "n/a")
			default:
				txt, v := rs.val(c)
				cells = append(cells, txt)
				vals[name] = v
			}
		}
		r := func(other string) string {
			a, okA := vals[DSDamselfly]
			b, okB := vals[other]
			if !okA || !okB || b == 0 {
				return "-"
			}
			return fmtRatio(a / b)
		}
		cells = append(cells, r(DSBaseline), r(DSRclone))
		t.Rows = append(t.Rows, cells)
	}
	t.Notes = append(t.Notes, "df/baseline, df/rclone: damselfly's (defaults) figure over the other's; \"-\": not measured")
	for _, s := range rep.Systems {
		seen := map[string]bool{}
		for _, k := range []string{DSMountPrefix, DSMountObject, DSFind, DSSeq, DSRand, DSSmall, DSHosts, DSHostsObject} {
			if c := s.Cells[k]; c != nil && c.NA != "" && !seen[c.NA] {
				seen[c.NA] = true
				t.Notes = append(t.Notes, fmt.Sprintf("%s: %s", s.Name, c.NA))
			} else if c != nil && c.Failed > 0 {
				t.Notes = append(t.Notes, fmt.Sprintf("%s %s: median of the %d runs that succeeded (%d failed)", s.Name, k, len(c.Samples), c.Failed))
			}
		}
	}
	for _, s := range rep.Systems {
		t.Notes = append(t.Notes, fmt.Sprintf("%s: %s", s.Name, s.How))
	}
	var vs []string
	for _, k := range []string{"s3fs", "rclone", "seaweedfs"} {
		if v := rep.Versions[k]; v != "" {
			vs = append(vs, k+" "+v)
		}
	}
	t.Notes = append(t.Notes,
		"versions: "+strings.Join(vs, "; "),
		"every system reaches the store's S3 port through a counting reverse proxy: store bytes are response bodies it relayed;",
		"baseline: find = ListObjectsV2 pages, sequential = one GET, random = one ranged GET per read, files = one GET each (bodies discarded);",
		"mount rows: start of the process to a live FUSE mount (the find and sequential measurements' mounts); every measurement its own fresh mount;",
		"random reads: page-aligned, each in a different piece of the object, fd POSIX_FADV_RANDOM, store bytes during the 200 reads (a prefetch included);",
		fmt.Sprintf("%s: one mount each (Damselfly: one supernode%s), every file read through every mount at once, %d workers each;", hosts,
			map[string]string{"true": " with --s3-endpoint PROXY", "false": " without --s3-endpoint (it has no such flag)"}[rep.Versions["supernode --s3-endpoint"]], cfg.Workers),
		fmt.Sprintf("%d hosts read the object: Damselfly only (same supernode set-up; every host reads it whole), the others fetch it once per host by construction;", cfg.Hosts),
		"cold: "+rep.Evict+".")
	return t
}

// fmtKiB renders bytes as KiB when below a MiB.
func fmtKiB(b int64) string {
	if b < MiB {
		return fmt.Sprintf("%dKiB", b>>10)
	}
	return fmtMiB(b)
}

// readFile reads the file at path to its end (see readSeq).
func readFile(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return readSeq(f)
}

// readSeq reads r to its end with 1 MiB read calls, discarding the bytes.
func readSeq(r io.Reader) (int64, error) {
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := r.Read(buf)
		n += int64(k)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
