package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/damselfly-p2p/damselfly/testenv"
)

func TestSpreadOffsets(t *testing.T) {
	for _, tc := range []struct {
		size int64
		n    int
	}{{1 << 30, 4}, {8 << 20, 3}, {2 << 20, 1}, {64 << 20, 16}} {
		offs := spreadOffsets(tc.size, tc.n)
		if len(offs) != tc.n {
			t.Fatalf("size %d n %d: %d offsets", tc.size, tc.n, len(offs))
		}
		for i, off := range offs {
			if off < 0 || off+1<<20 > tc.size {
				t.Errorf("size %d n %d: read %d at %d is out of the file", tc.size, tc.n, i, off)
			}
			if i > 0 && off < offs[i-1]+1<<20 {
				t.Errorf("size %d n %d: read %d at %d overlaps the one before", tc.size, tc.n, i, off)
			}
		}
		if last := offs[len(offs)-1]; last != tc.size-1<<20 {
			t.Errorf("size %d n %d: last read at %d, want the file's last MiB", tc.size, tc.n, last)
		}
	}
}

// expectedRanges must describe exactly the bytes testenv.AddRandom serves.
func TestExpectedRanges(t *testing.T) {
	const size, seed = 5<<20 + 123, 7
	all, err := io.ReadAll(testenv.RandomReader(size, seed))
	if err != nil {
		t.Fatal(err)
	}
	offs := []int64{0, 1<<20 + 5, size - 100}
	got := expectedRanges(size, seed, offs, 1<<20)
	for i, off := range offs {
		want := all[off:min(off+1<<20, size)]
		if got[i].n != len(want) || got[i].sum != sum(want) {
			t.Errorf("range at %d: %d bytes %s, want %d bytes %s", off, got[i].n, got[i].sum, len(want), sum(want))
		}
	}
}

func TestCompareTree(t *testing.T) {
	want := []dataFile{{rel: "a/1", size: 10}, {rel: "b/2", size: 20}}
	for _, tc := range []struct {
		name string
		got  map[string]int64
		diff string // substring; "" means equal
	}{
		{"equal", map[string]int64{"a/1": 10, "b/2": 20}, ""},
		{"missing", map[string]int64{"a/1": 10}, "b/2 missing"},
		{"size", map[string]int64{"a/1": 10, "b/2": 21}, "b/2 is 21 bytes, want 20"},
		{"extra", map[string]int64{"a/1": 10, "b/2": 20, "c/3": 1}, "c/3 not in the store"},
	} {
		d := compareTree(want, tc.got)
		if (tc.diff == "") != (d == "") || !strings.Contains(d, tc.diff) {
			t.Errorf("%s: compareTree = %q, want %q", tc.name, d, tc.diff)
		}
	}
}

// The store proxy passes requests through with the client's Host (SigV4
// signs it) and counts object bodies apart from listings and errors.
func TestStoreProxyCounts(t *testing.T) {
	object := bytes.Repeat([]byte("x"), 3000)
	var hosts []string
	store := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hosts = append(hosts, r.Host)
		switch r.URL.Path {
		case "/bucket/", "/bucket":
			io.WriteString(w, "<ListBucketResult/>") // 19 bytes
		case "/bucket/dir/key":
			if r.Header.Get("Range") != "" {
				w.WriteHeader(http.StatusPartialContent)
				w.Write(object[:100])
				return
			}
			w.Write(object)
		default:
			http.Error(w, "NoSuchKey", http.StatusNotFound)
		}
	}))
	defer store.Close()
	tb, closeTB := testenv.NewProgramTB(t.TempDir())
	defer closeTB()
	p := startStoreProxy(tb)
	get := func(path, rng string) int {
		req, _ := http.NewRequest(http.MethodGet, p.URL()+path, nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("/bucket/dir/key", ""); code != http.StatusServiceUnavailable {
		t.Fatalf("before setStore: status %d, want 503", code)
	}
	if err := p.setStore(store.URL); err != nil {
		t.Fatal(err)
	}
	get("/bucket/dir/key", "")
	get("/bucket/dir/key", "bytes=0-99")
	get("/bucket/?list-type=2", "")
	get("/bucket/missing", "")
	s := p.snap()
	if s.object != 3100 || s.gets != 2 {
		t.Errorf("object bytes %d in %d GETs, want 3100 in 2", s.object, s.gets)
	}
	if s.other != 19+int64(len("NoSuchKey\n")) {
		t.Errorf("other bytes %d, want the listing's and the error's", s.other)
	}
	for _, h := range hosts {
		if h != p.Addr() {
			t.Errorf("the store saw Host %q, want the proxy's %q (what the client signed)", h, p.Addr())
		}
	}
}

func TestHasFlag(t *testing.T) {
	dir := t.TempDir()
	script := "#!/bin/sh\necho '      --s3-endpoint stringArray   object store endpoint'\necho '      --s3-endpointless x'\n"
	if err := writeExec(dir+"/tool", script); err != nil {
		t.Skip(err)
	}
	if !hasFlag(dir, "tool", "--s3-endpoint") {
		t.Error("--s3-endpoint not found")
	}
	if hasFlag(dir, "tool", "--s3") {
		t.Error("--s3 found in --s3-endpoint")
	}
	if hasFlag(dir, "missing", "--s3-endpoint") {
		t.Error("flag of a missing binary found")
	}
}

func writeExec(path, content string) error { return os.WriteFile(path, []byte(content), 0o755) }
