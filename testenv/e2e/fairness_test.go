//go:build e2e && unix

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/testenv"
)

// TestMountFairReaders: eight processes (a data loader's workers) read
// eight different files of one dataset mount at once, from an origin that
// can serve only so much. Each must get the right bytes and a fair share of
// the host's download slots: if one file's pieces went first and the next
// file's after (a queue instead of a share), the last reader would finish
// about eight times later than the first; with a fair share they finish
// close together. The test fails when the last finishes more than 3x later
// than the first (started at the same moment, equal sizes), or when the
// origin served any file more than about once.
func TestMountFairReaders(t *testing.T) {
	bin := bins(t)
	const files, size = 8, 16 << 20
	origin := testenv.NewOrigin(t, testenv.WithUploadCap(32<<20))
	var entries []string
	want := map[string]string{}
	for i := range files {
		name := fmt.Sprintf("part-%d.bin", i)
		sum := origin.AddRandom("ds/"+name, size, int64(100+i))
		want[name] = sum
		entries = append(entries, fmt.Sprintf(`{"path":"train/%s","size":%d,"digest":"sha256:%s","url":"%s"}`, name, size, sum, name))
	}
	mpath := filepath.Join(t.TempDir(), "manifest.json")
	if err := os.WriteFile(mpath, []byte(`{"version":1,"files":[`+strings.Join(entries, ",")+`]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	origin.AddFile("ds/manifest.json", mpath)
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(origin.Addr())...)
	mnt := t.TempDir()
	p := startMount(t, bin, origin.URL("ds/manifest.json"), mnt, "--type", "dataset", "--supernode", sn.Addr,
		"--data-dir", t.TempDir(), "--no-daemon", "--upload-listen", "127.0.0.1:0", "--allow-origin", origin.Addr())

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	type done struct {
		name string
		took time.Duration
		sum  string
		err  error
	}
	var (
		mu      sync.Mutex
		results []done
		wg      sync.WaitGroup
	)
	start := time.Now()
	for name := range want {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A separate process per reader, as a data loader's workers.
			out, err := exec.CommandContext(ctx, "sha256sum", filepath.Join(mnt, "train", name)).Output()
			r := done{name: name, took: time.Since(start), err: err}
			if f := strings.Fields(string(out)); len(f) > 0 {
				r.sum = f[0]
			}
			mu.Lock()
			results = append(results, r)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.SortFunc(results, func(a, b done) int { return int(a.took - b.took) })
	for _, r := range results {
		t.Logf("%s read in %v; the origin served %.2f copies of it", r.name, r.took.Round(time.Millisecond),
			float64(origin.BytesServed("ds/"+r.name))/size)
		if r.err != nil {
			t.Errorf("read %s: %v", r.name, r.err)
		} else if r.sum != want[r.name] {
			t.Errorf("%s: sha256 %s, want %s", r.name, r.sum, want[r.name])
		}
	}
	if t.Failed() {
		t.Fatalf("dfmount log:\n%s", p.Tail(30))
	}
	first, last := results[0].took, results[len(results)-1].took
	t.Logf("%d readers of %d MiB each: first done after %v, last after %v (%.2fx); origin served %d MiB in all",
		files, size>>20, first.Round(time.Millisecond), last.Round(time.Millisecond), float64(last)/float64(first),
		origin.TotalBytesServed()>>20)
	// The seed's background fill and the readers' on-demand pieces must
	// not fetch the same piece twice (they did under this load: 1.12
	// copies of each file, until the fill's requests claimed their pieces).
	for name := range want {
		if copies := float64(origin.BytesServed("ds/"+name)) / size; copies > 1.05 {
			t.Errorf("%s: the origin served %.2f copies, want about one", name, copies)
		}
	}
	if last > 3*first {
		t.Errorf("the last reader finished %.1fx later than the first: a reader starved (want at most 3x)", float64(last)/float64(first))
	}
	stopMount(t, p)
}
