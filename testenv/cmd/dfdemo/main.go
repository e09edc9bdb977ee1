// Command dfdemo is `make demo`: it builds Damselfly and starts a counting
// origin and a supernode on loopback, then shows three jobs in one run:
// several dfget peers downloading one file at once (where every peer's bytes
// came from), dfmount of a 1 GiB file read at a few scattered places (time
// to the first byte, bytes the origin served), and, where a SeaweedFS binary
// is cached, two dfmount peers mounting an S3 dataset prefix as a tree
// (bytes the store served). It ends with a summary table and exits non-zero
// if any sha256 check fails or a part fails for a reason other than a
// missing prerequisite.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/damselfly-p2p/damselfly/p2p/ratelimit"
	"github.com/damselfly-p2p/damselfly/testenv"
)

// config is what the flags set.
type config struct {
	peers      int
	size       int64
	originCap  int64
	mountSize  int64
	mountReads int
	noMount    bool
	noS3       bool
	s3Pack     string // --s3-pack for the S3 peers: true, false or "" (dfmount's default)
}

func main() {
	var c config
	var sizeMiB, mountMiB int64
	var originCap string
	flag.IntVar(&c.peers, "peers", 10, "number of dfget peers")
	flag.Int64Var(&sizeMiB, "size", 48, "size in MiB of the file the dfget peers download")
	flag.StringVar(&originCap, "origin-cap", "64M", "origin upload cap (bytes/s)")
	flag.Int64Var(&mountMiB, "mount-size", 1024, "size in MiB of the file dfmount mounts")
	flag.IntVar(&c.mountReads, "mount-reads", 4, "scattered 1 MiB reads through the mount")
	flag.BoolVar(&c.noMount, "no-mount", false, "skip the dfmount part")
	flag.BoolVar(&c.noS3, "no-s3", false, "skip the S3 dataset part")
	flag.StringVar(&c.s3Pack, "s3-pack", "", "--s3-pack of the S3 dfmount peers: true or false (default: dfmount's own, packs on)")
	flag.Parse()
	c.size, c.mountSize = sizeMiB<<20, mountMiB<<20
	if c.s3Pack != "" && c.s3Pack != "true" && c.s3Pack != "false" {
		fmt.Fprintln(os.Stderr, "demo failed: --s3-pack: want true or false")
		os.Exit(2)
	}
	var err error
	if c.originCap, err = ratelimit.Parse(originCap); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed: --origin-cap:", err)
		os.Exit(2)
	}
	if c.peers < 1 || c.size < 1 || c.mountReads < 1 || c.mountSize < int64(c.mountReads)*(2<<20) {
		fmt.Fprintln(os.Stderr, "demo failed: --peers, --size, --mount-reads must be positive, --mount-size at least 2 x --mount-reads")
		os.Exit(2)
	}
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

// env is what every part shares: the TB owning processes and temp dirs,
// the binaries, the origin and the supernode.
type env struct {
	tb     *testenv.ProgramTB
	bin    string
	origin *testenv.Origin
	sn     *testenv.Supernode
	store  *testenv.StoreProxy // in front of the S3 store (part 3)
	snS3   bool                // the supernode takes the store's presigned URLs

	mountFile *mountFile // the file part 2 mounts, nil without FUSE or with --no-mount
}

// interrupted is set once Ctrl-C (or SIGTERM) arrived.
var interrupted atomic.Bool

// Part names in the summary.
const (
	partFull  = "full file"
	partMount = "dfmount, one file"
	partS3    = "S3 prefix, 2 peers"
)

// result is one row of the final summary: what was read, what the origin
// or store served for it, a note, and the sha256 checks. failed marks a
// wrong sha256 or a part that broke; a skipped part is neither (its
// reason is the note).
type result struct {
	part, read, served, note, sha string
	failed                        bool
}

func run(c config) (err error) {
	root, err := os.MkdirTemp("", "damselfly-demo-")
	if err != nil {
		return err
	}
	tb, closeTB := testenv.NewProgramTB(root)
	cleanup := func() {
		closeTB()
		testenv.RemoveBinaries()
		os.RemoveAll(root)
	}
	// Processes run in their own process groups, so Ctrl-C reaches only
	// this program: stop them, unmount and remove the temp dirs here.
	// The part running meanwhile fails as its processes go: its output
	// would be noise, so the parts stop reporting once this starts.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		interrupted.Store(true)
		tb.Logger.SetOutput(io.Discard) // failures of interrupted processes
		fmt.Fprintf(os.Stderr, "\n%v: stopping processes and unmounting...\n", s)
		cleanup()
		fmt.Fprintln(os.Stderr, "stopped")
		os.Exit(130)
	}()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
		if interrupted.Load() {
			select {} // the signal handler cleans up and exits
		}
		signal.Stop(sigs)
		cleanup()
	}()

	printf("building binaries...\n")
	start := time.Now()
	e := &env{tb: tb, origin: testenv.NewOrigin(tb, testenv.WithUploadCap(c.originCap))}
	// The 1 GiB file of part 2 is written while the binaries build, and
	// before part 1 runs so that it does not slow part 1 down.
	var mountFileCh <-chan mountFile
	if !c.noMount && fuseUnavailable() == "" {
		mountFileCh = prepareMountFile(e.origin, c)
	}
	e.bin = testenv.BuildBinaries(tb)
	if mountFileCh != nil {
		mf := <-mountFileCh
		e.mountFile = &mf
	}
	e.store = testenv.StartStoreProxy(tb, "")
	snArgs := append([]string{"--log-level", "info"}, testenv.AllowOrigins(e.origin.Addr(), e.store.Addr)...)
	if e.snS3 = hasFlag(e.bin, "supernode", "--s3-endpoint"); e.snS3 {
		// The store (through the counting proxy) is one whose presigned
		// URLs peers may register, so that the seed fetches each object
		// once for the swarm.
		snArgs = append(snArgs, "--s3-endpoint", e.store.URL)
	}
	e.sn = testenv.StartSupernode(tb, e.bin, snArgs...)
	printf("origin    http://%s  (upload capped at %s/s)\n", e.origin.Addr(), ratelimit.HumanBytes(c.originCap))
	printf("supernode %s\n", e.sn.Addr)
	if mf := e.mountFile; mf != nil && mf.err == nil {
		printf("(the %s file of part 2 was written to the origin in %s, while the binaries built)\n",
			ratelimit.HumanBytes(c.mountSize), mf.took.Round(100*time.Millisecond))
	}

	var results []result
	part := func(name string, f func() result) {
		r, perr := guard(f)
		if interrupted.Load() {
			select {} // the signal handler cleans up and exits
		}
		if perr != nil {
			r = result{part: name, note: "FAILED: " + firstLine(perr.Error()), failed: true}
			printf("%s failed: %v\n", name, perr)
		}
		results = append(results, r)
	}

	printf("\n== 1. full-file P2P: %d dfget peers download one file at once ==\n\n", c.peers)
	part(partFull, func() result { return fullFile(e, c) })

	printf("\n== 2. dfmount: a %s file, read at %d scattered places ==\n\n", ratelimit.HumanBytes(c.mountSize), c.mountReads)
	if c.noMount {
		results = append(results, skipped(partMount, "--no-mount", "skipped (--no-mount)"))
	} else {
		part(partMount, func() result { return mountPart(e, c) })
	}

	printf("\n== 3. S3 dataset prefix mounted as a tree by two dfmount peers ==\n\n")
	if c.noS3 {
		results = append(results, skipped(partS3, "--no-s3", "skipped (--no-s3)"))
	} else {
		part(partS3, func() result { return s3Part(e, c) })
	}

	printf("\n== summary (%s in all) ==\n\n", time.Since(start).Round(100*time.Millisecond))
	rows := [][]string{{"part", "read", "origin / store served", "sha256", ""}}
	failed := 0
	for _, r := range results {
		rows = append(rows, []string{r.part, r.read, r.served, r.sha, r.note})
		if r.failed {
			failed++
		}
	}
	printTable(rows)
	if failed > 0 {
		return fmt.Errorf("%d of %d parts failed (see above)", failed, len(results))
	}
	return nil
}

// skipped prints why a part is skipped and returns its summary line:
// short says why in a few words.
func skipped(part, short, why string) result {
	printLine(why)
	return result{part: part, note: "skipped: " + short}
}

// guard runs f, turning a testenv Fatalf (a panic with a FatalError) into
// an error; other panics go on.
func guard(f func() result) (r result, err error) {
	defer func() {
		if p := recover(); p != nil {
			var fe testenv.FatalError
			if e, ok := p.(error); ok && errors.As(e, &fe) {
				err = fe
				return
			}
			panic(p)
		}
	}()
	return f(), nil
}

// hasFlag reports whether binDir/name --help lists flag.
func hasFlag(binDir, name, flag string) bool {
	out, _ := exec.Command(filepath.Join(binDir, name), "--help").CombinedOutput()
	return regexp.MustCompile(`(?m)(^|\s)` + regexp.QuoteMeta(flag) + `(\s|=|$)`).Match(out)
}

// printTable prints rows in columns two spaces apart (the last one
// unpadded).
func printTable(rows [][]string) {
	var width []int
	for _, row := range rows {
		for i, cell := range row {
			if i >= len(width) {
				width = append(width, 0)
			}
			width[i] = max(width[i], len(cell))
		}
	}
	for _, row := range rows {
		var b strings.Builder
		for i, cell := range row {
			if i == len(row)-1 {
				b.WriteString(cell)
			} else {
				fmt.Fprintf(&b, "%-*s  ", width[i], cell)
			}
		}
		printLine(strings.TrimRight(b.String(), " "))
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// copies formats served/size as a number of copies.
func copies(served, size int64) string {
	return fmt.Sprintf("%.2f copies", float64(served)/float64(max(size, 1)))
}

// printf and printLine write to stdout, unless Ctrl-C arrived: the part
// running then fails as its processes are stopped, and its report would
// only mislead.
func printf(format string, args ...any) {
	if !interrupted.Load() {
		fmt.Printf(format, args...)
	}
}

func printLine(args ...any) {
	if !interrupted.Load() {
		fmt.Println(args...)
	}
}
