// Command dfdemo is `make demo`: it builds Damselfly, starts a counting
// origin, a supernode and several dfget peers on loopback, distributes one
// file to all of them at once and prints where every peer's bytes came from.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/p2p/ratelimit"
	"github.com/damselfly-p2p/damselfly/testenv"
)

var resultLine = regexp.MustCompile(`dfget-result length=(\d+) peers=(\d+) seed=(\d+) origin=(\d+) reused=(\d+) elapsed_ms=(\d+)`)

func main() {
	peers := flag.Int("peers", 10, "number of dfget peers")
	sizeMiB := flag.Int64("size", 48, "file size in MiB")
	originCap := flag.String("origin-cap", "64M", "origin upload cap (bytes/s)")
	flag.Parse()
	if err := run(*peers, *sizeMiB<<20, *originCap); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func run(n int, size int64, originCap string) (err error) {
	root, err := os.MkdirTemp("", "damselfly-demo-")
	if err != nil {
		return err
	}
	tb, closeTB := testenv.NewProgramTB(root)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
		closeTB()
		os.RemoveAll(root)
	}()
	capBps, err := ratelimit.Parse(originCap)
	if err != nil {
		return err
	}
	fmt.Printf("building binaries...\n")
	bin := testenv.BuildBinaries(tb)
	defer testenv.RemoveBinaries()
	origin := testenv.NewOrigin(tb, testenv.WithUploadCap(capBps))
	want := origin.AddRandom("demo.bin", size, 42)
	sn := testenv.StartSupernode(tb, bin, append([]string{"--log-level", "info"}, testenv.AllowOrigins(origin.Addr())...)...)
	fmt.Printf("origin   %s  (upload capped at %s)\n", origin.URL("demo.bin"), ratelimit.Format(capBps))
	fmt.Printf("supernode %s\n", sn.Addr)
	fmt.Printf("file     %s, %d pieces of %s, sha256 %s\n\n", ratelimit.HumanBytes(size),
		manifest.NewLayout(size).NumPieces(), ratelimit.HumanBytes(manifest.PieceSizeFor(size)), want[:16])

	out := filepath.Join(root, "out")
	os.MkdirAll(out, 0o755)
	start := time.Now()
	procs := make([]*testenv.Proc, n)
	for i := range procs {
		procs[i] = testenv.Dfget(tb, bin, sn.Addr, origin.URL("demo.bin"), filepath.Join(out, fmt.Sprintf("peer%02d.bin", i)))
	}
	fmt.Printf("%d peers downloading at once...\n\n", n)
	type row struct {
		i                int
		took             time.Duration
		peers, seed, org int64
		ok               bool
		note             string
	}
	rows := make([]row, n)
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, werr := p.Wait(5 * time.Minute)
			r := row{i: i, took: time.Since(start)}
			if werr != nil || code != 0 {
				r.note = fmt.Sprintf("exit %d %v", code, werr)
				rows[i] = r
				return
			}
			if m := resultLine.FindStringSubmatch(p.Log()); m != nil {
				r.peers, _ = strconv.ParseInt(m[2], 10, 64)
				r.seed, _ = strconv.ParseInt(m[3], 10, 64)
				r.org, _ = strconv.ParseInt(m[4], 10, 64)
			}
			r.ok = testenv.SHA256File(tb, filepath.Join(out, fmt.Sprintf("peer%02d.bin", i))) == want
			rows[i] = r
		}()
	}
	wg.Wait()
	sort.Slice(rows, func(a, b int) bool { return rows[a].took < rows[b].took })
	fmt.Printf("%-7s %9s %14s %16s %12s  %s\n", "peer", "time", "from peers", "from supernode", "from origin", "sha256")
	var sumPeers, sumSeed int64
	allOK := true
	for _, r := range rows {
		status := "match"
		if !r.ok {
			status = "MISMATCH " + r.note
			allOK = false
		}
		fmt.Printf("peer%02d  %9s %14s %16s %12s  %s\n", r.i, r.took.Round(time.Millisecond),
			ratelimit.HumanBytes(r.peers), ratelimit.HumanBytes(r.seed), ratelimit.HumanBytes(r.org), status)
		sumPeers += r.peers
		sumSeed += r.seed
	}
	served := origin.BytesServed("demo.bin")
	fmt.Printf("\nall peers: %s from other peers, %s from the supernode (%.0f%% peer-to-peer)\n",
		ratelimit.HumanBytes(sumPeers), ratelimit.HumanBytes(sumSeed), 100*float64(sumPeers)/float64(max(1, sumPeers+sumSeed)))
	fmt.Printf("origin served %s for %d downloads of %s (%.2f copies; %.1f%% of origin traffic saved)\n",
		ratelimit.HumanBytes(served), n, ratelimit.HumanBytes(size), float64(served)/float64(size),
		100*(1-float64(served)/float64(int64(n)*size)))
	direct := time.Duration(float64(int64(n)*size) / float64(capBps) * float64(time.Second))
	fmt.Printf("last peer done after %s; %d direct downloads through the same origin cap would take at least %s\n",
		rows[len(rows)-1].took.Round(time.Millisecond), n, direct.Round(time.Millisecond))
	if !allOK {
		return fmt.Errorf("some peers failed or got wrong bytes")
	}
	fmt.Println("every sha256 matches the origin's")
	return nil
}
