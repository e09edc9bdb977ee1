package main

import (
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

// fullFile runs c.peers dfget processes on one file at once and prints
// where each peer's bytes came from and what the origin served.
func fullFile(e *env, c config) result {
	const name = "demo.bin"
	tb, origin, n, size := e.tb, e.origin, c.peers, c.size
	want := origin.AddRandom(name, size, 42)
	printf("file %s, %s, %d pieces of %s, sha256 %s\n\n", origin.URL(name), ratelimit.HumanBytes(size),
		manifest.NewLayout(size).NumPieces(), ratelimit.HumanBytes(manifest.PieceSizeFor(size)), want[:16])

	out := tb.TempDir()
	start := time.Now()
	procs := make([]*testenv.Proc, n)
	for i := range procs {
		procs[i] = testenv.Dfget(tb, e.bin, e.sn.Addr, origin.URL(name), filepath.Join(out, fmt.Sprintf("peer%02d.bin", i)))
	}
	printf("%d peers downloading at once...\n\n", n)
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
			got, err := sha256Path(filepath.Join(out, fmt.Sprintf("peer%02d.bin", i)))
			r.ok = err == nil && got == want
			if err != nil {
				r.note = err.Error()
			}
			rows[i] = r
		}()
	}
	wg.Wait()
	sort.Slice(rows, func(a, b int) bool { return rows[a].took < rows[b].took })
	printf("%-7s %9s %14s %16s %12s  %s\n", "peer", "time", "from peers", "from supernode", "from origin", "sha256")
	var sumPeers, sumSeed int64
	good := 0
	for _, r := range rows {
		status := "match"
		if r.ok {
			good++
		} else {
			status = "MISMATCH " + r.note
		}
		printf("peer%02d  %9s %14s %16s %12s  %s\n", r.i, r.took.Round(time.Millisecond),
			ratelimit.HumanBytes(r.peers), ratelimit.HumanBytes(r.seed), ratelimit.HumanBytes(r.org), status)
		sumPeers += r.peers
		sumSeed += r.seed
	}
	served := origin.BytesServed(name)
	p2pShare := 100 * float64(sumPeers) / float64(max(1, sumPeers+sumSeed))
	printf("\nall peers: %s from other peers, %s from the supernode (%.0f%% peer-to-peer)\n",
		ratelimit.HumanBytes(sumPeers), ratelimit.HumanBytes(sumSeed), p2pShare)
	printf("origin served %s for %d downloads of %s (%s; %.1f%% of origin traffic saved)\n",
		ratelimit.HumanBytes(served), n, ratelimit.HumanBytes(size), copies(served, size),
		100*(1-float64(served)/float64(int64(n)*size)))
	last := rows[len(rows)-1].took
	direct := time.Duration(float64(int64(n)*size) / float64(c.originCap) * float64(time.Second))
	printf("last peer done after %s; %d direct downloads through the same origin cap would take at least %s\n",
		last.Round(time.Millisecond), n, direct.Round(time.Millisecond))

	r := result{part: fmt.Sprintf("%s, %d peers", partFull, n),
		read:   fmt.Sprintf("%d x %s", n, ratelimit.HumanBytes(size)),
		served: fmt.Sprintf("%s (%s)", ratelimit.HumanBytes(served), copies(served, size)),
		sha:    fmt.Sprintf("%d/%d match", good, n),
		note:   fmt.Sprintf("%.0f%% of peer bytes from other peers; all done in %s", p2pShare, last.Round(100*time.Millisecond))}
	if good != n {
		r.failed = true
		printLine("some peers failed or got wrong bytes")
	} else {
		printLine("every sha256 matches the origin's")
	}
	return r
}

// sha256Path is the SHA-256 of the file at path, in hex.
func sha256Path(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return sha256Reader(f)
}
