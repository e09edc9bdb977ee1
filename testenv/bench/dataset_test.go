package bench

import (
	"bytes"
	"math"
	"path"
	"strings"
	"testing"
)

func TestDatasetTreeLayout(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 2000; i++ {
		k := dsTreeKey(i)
		if seen[k] {
			t.Fatalf("key %s twice", k)
		}
		seen[k] = true
		if got := strings.Count(path.Dir(k), "/") + 1; got != 3 {
			t.Fatalf("%s: %d levels of directories, want 3", k, got)
		}
	}
	// 5 + 25 + 200 directories once every leaf has a file.
	tests := []struct{ files, dirs int }{{1, 3}, {200, 230}, {2000, 230}}
	for _, tt := range tests {
		if got := dsTreeDirs(tt.files); got != tt.dirs {
			t.Errorf("dsTreeDirs(%d) = %d, want %d", tt.files, got, tt.dirs)
		}
	}
}

func dsCell(sec, p99 float64, store int64) *DatasetCell {
	return &DatasetCell{Sec: sec, P99: p99, StoreBytes: store}
}

func TestDatasetTargets(t *testing.T) {
	cfg := DatasetConfig{Files: 2000, FileSize: 64 << 10, BigSize: 1 << 30, Reads: 200, ReadSize: 4096, Workers: 8, Hosts: 4}
	tree := int64(2000 * 64 << 10)
	rep := &DatasetReport{Config: cfg, Systems: []*DatasetSystem{
		{Name: DSBaseline, Cells: map[string]*DatasetCell{DSSeq: dsCell(1, 0, 1<<30), DSRand: dsCell(0.006, 0.009, 1<<20)}},
		{Name: DSDamselfly, Cells: map[string]*DatasetCell{
			DSFind:        {NA: errPrefixNotBuilt.Error()},
			DSSeq:         dsCell(1.4, 0, 1<<30),           // 1.4x: met
			DSRand:        dsCell(0.008, 0.020, 100*MiB),   // p99 2.2x: not met; bytes 100/500: met
			DSSmall:       {NA: errPrefixNotBuilt.Error()}, // not measured
			DSHosts:       dsCell(3, 0, tree+tree/4),
			DSHostsObject: dsCell(5, 0, 3<<30)}, // 1.25 copies: met
		},
		{Name: DSRclone, Cells: map[string]*DatasetCell{DSFind: dsCell(0.5, 0, 0), DSRand: dsCell(0.011, 0.03, 500*MiB),
			DSSmall: dsCell(4, 0, tree)}},
	}}
	ts := DatasetTargets(rep)
	if len(ts) != 7 {
		t.Fatalf("%d targets, want 7: %v", len(ts), ts)
	}
	want := []struct {
		met  bool
		note string
	}{
		{false, "prefix mounts not built"}, // find
		{true, ""},                         // seq
		{false, ""},                        // random p99
		{true, ""},                         // random bytes
		{false, "prefix mounts not built"}, // small
		{true, ""},                         // hosts
		{false, ""},                        // hosts, object: 3 copies
	}
	for i, w := range want {
		if ts[i].Met != w.met || !strings.Contains(ts[i].Note, w.note) {
			t.Errorf("target %d %q: met %v note %q, want met %v note containing %q", i, ts[i].Name, ts[i].Met, ts[i].Note, w.met, w.note)
		}
	}
	var buf bytes.Buffer
	DatasetTable(rep).Fprint(&buf)
	out := buf.String()
	for _, s := range []string{"n/a", "1.40", "damselfly: n/a (prefix mounts not built)", "0.20"} {
		if !strings.Contains(out, s) {
			t.Errorf("table lacks %q:\n%s", s, out)
		}
	}
}

func TestSummarizeRuns(t *testing.T) {
	na := &DatasetCell{NA: "n/a (failed: x)"}
	runs := []map[string]*DatasetCell{
		{DSSeq: {Sec: 3, StoreBytes: 30, StoreResponses: 3, Count: 7}, DSFind: na, DSRand: {Sec: 0.1, P99: 0.3}},
		{DSSeq: {Sec: 1, StoreBytes: 10, StoreResponses: 1, Count: 7}, DSFind: na, DSRand: na},
		{DSSeq: {Sec: 2, StoreBytes: 20, StoreResponses: 2, Count: 7}, DSFind: na, DSRand: {Sec: 0.2, P99: 0.5}},
	}
	got := summarizeRuns(runs)
	if c := got[DSSeq]; c.Sec != 2 || c.StoreBytes != 20 || c.StoreResponses != 2 || c.Count != 7 || len(c.Samples) != 3 || c.Failed != 0 {
		t.Errorf("seq summary %+v, want the medians 2s, 20 bytes, 2 responses of 3 runs", c)
	}
	if c := got[DSFind]; c != na {
		t.Errorf("find summary %+v, want the n/a", c)
	}
	if c := got[DSRand]; math.Abs(c.Sec-0.15) > 1e-9 || math.Abs(c.P99-0.4) > 1e-9 || c.Failed != 1 {
		t.Errorf("rand summary %+v, want p50 0.15 p99 0.4 with 1 failed run", c)
	}
	one := []map[string]*DatasetCell{{DSSeq: {Sec: 5}}}
	if got := summarizeRuns(one); got[DSSeq] != one[0][DSSeq] {
		t.Errorf("one run: summary is not the run's cell")
	}
}
