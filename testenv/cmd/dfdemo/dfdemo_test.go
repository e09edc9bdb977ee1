package main

import (
	"io"
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
