package bench

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3} // unsorted on purpose
	tests := []struct {
		p, want float64
	}{
		{0, 1}, {50, 3}, {100, 5}, {25, 2}, {75, 4}, {90, 4.6}, {99, 4.96}, {-5, 1}, {150, 5},
	}
	for _, tt := range tests {
		if got := Percentile(xs, tt.p); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("Percentile(%v, %v) = %v, want %v", xs, tt.p, got, tt.want)
		}
	}
	if xs[0] != 5 || xs[1] != 1 {
		t.Errorf("Percentile modified its input: %v", xs)
	}
	if got := Percentile(nil, 50); !math.IsNaN(got) {
		t.Errorf("Percentile(nil) = %v, want NaN", got)
	}
	if got := Percentile([]float64{7}, 99); got != 7 {
		t.Errorf("Percentile([7], 99) = %v, want 7", got)
	}
	if got := Percentile([]float64{1, 2}, 50); got != 1.5 {
		t.Errorf("median of 1,2 = %v, want 1.5", got)
	}
}

func TestSummarize(t *testing.T) {
	var xs []float64
	for i := 100; i >= 1; i-- {
		xs = append(xs, float64(i))
	}
	s := Summarize(xs)
	if s.N != 100 || s.Min != 1 || s.Max != 100 || s.Mean != 50.5 || s.P50 != 50.5 {
		t.Errorf("Summarize(1..100) = %+v", s)
	}
	if math.Abs(s.P99-99.01) > 1e-9 || math.Abs(s.P90-90.1) > 1e-9 {
		t.Errorf("Summarize(1..100) p90 %v p99 %v, want 90.1 and 99.01", s.P90, s.P99)
	}
	if z := Summarize(nil); z != (Summary{}) {
		t.Errorf("Summarize(nil) = %+v, want zero", z)
	}
	if got := Seconds([]time.Duration{1500 * time.Millisecond}); got[0] != 1.5 {
		t.Errorf("Seconds = %v", got)
	}
	if got := RateMiB(10*MiB, 2*time.Second); got != 5 {
		t.Errorf("RateMiB = %v, want 5", got)
	}
	if got := RateMiB(1, 0); got != 0 {
		t.Errorf("RateMiB(_, 0) = %v, want 0", got)
	}
}

func TestParseDfgetResult(t *testing.T) {
	line := "dfget-result length=16777216 peers=12582912 seed=4194304 origin=0 reused=0 elapsed_ms=8123 back_to_source=false"
	r, err := ParseDfgetResult(line)
	if err != nil {
		t.Fatal(err)
	}
	want := DfgetResult{Length: 16 << 20, Peers: 12 << 20, Seed: 4 << 20, Elapsed: 8123 * time.Millisecond}
	if r != want {
		t.Errorf("got %+v, want %+v", r, want)
	}
	// Leading text, extra fields in any order and trailing space are fine.
	r, err = ParseDfgetResult("  log prefix: dfget-result back_to_source=true elapsed_ms=5 reused=1 origin=2 seed=3 peers=4 length=10 future=x \r")
	if err != nil {
		t.Fatal(err)
	}
	if !r.BackToSource || r.Length != 10 || r.Peers != 4 || r.Seed != 3 || r.Origin != 2 || r.Reused != 1 || r.Elapsed != 5*time.Millisecond {
		t.Errorf("reordered line parsed as %+v", r)
	}
	bad := []string{
		"no result here",
		"dfget-result length=1 peers=0 seed=0 origin=0 reused=0 elapsed_ms=1",                              // missing field
		"dfget-result length=x peers=0 seed=0 origin=0 reused=0 elapsed_ms=1 back_to_source=false",         // not a number
		"dfget-result length=-1 peers=0 seed=0 origin=0 reused=0 elapsed_ms=1 back_to_source=false",        // negative
		"dfget-result length=1 peers=0 seed=0 origin=0 reused=0 elapsed_ms=1 back_to_source=maybe",         // not a bool
		"dfget-result length=1 length=2 peers=0 seed=0 origin=0 reused=0 elapsed_ms=1 back_to_source=true", // twice
		"dfget-result length=1 peers seed=0 origin=0 reused=0 elapsed_ms=1 back_to_source=true",            // no '='
	}
	for _, l := range bad {
		if r, err := ParseDfgetResult(l); err == nil {
			t.Errorf("ParseDfgetResult(%q) = %+v, want an error", l, r)
		}
	}
	if _, err := ParseDfgetResult("hello"); err != ErrNoResult {
		t.Errorf("no line: err %v, want ErrNoResult", err)
	}
}

func TestFindDfgetResult(t *testing.T) {
	log := "# /bin/dfget url -o out\n" +
		"dfget: out: 16.0 MiB in 8.1s via embedded peer, p2p: ...\n" +
		"dfget-result length=100 peers=60 seed=40 origin=0 reused=0 elapsed_ms=8123 back_to_source=false\n" +
		"dfget: seeding for 5m0s from 127.0.0.1:4000\n"
	r, err := FindDfgetResult(log)
	if err != nil {
		t.Fatal(err)
	}
	if r.Length != 100 || r.Peers != 60 || r.Seed != 40 {
		t.Errorf("got %+v", r)
	}
	// A line still being written does not count.
	partial := "dfget-result length=100 peers=60 seed=40 origin=0 reused=0 elapsed_ms=8123 back_to_"
	if _, err := FindDfgetResult("start\n" + partial); err != ErrNoResult {
		t.Errorf("partial line: err %v, want ErrNoResult", err)
	}
	if _, err := FindDfgetResult(partial + "source=true\n"); err != nil {
		t.Errorf("finished line: %v", err)
	}
	// The last of several lines wins.
	two := "dfget-result length=1 peers=0 seed=1 origin=0 reused=0 elapsed_ms=1 back_to_source=false\n" +
		"dfget-result length=2 peers=2 seed=0 origin=0 reused=0 elapsed_ms=1 back_to_source=false\n"
	if r, err := FindDfgetResult(two); err != nil || r.Length != 2 {
		t.Errorf("two lines: %+v, %v", r, err)
	}
	if _, err := FindDfgetResult(""); err != ErrNoResult {
		t.Errorf("empty log: %v", err)
	}
}

func TestWriteJSON(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "results", "nested")
	direct := 1.25
	rep := &SwarmReport{Config: SwarmConfig{Sizes: []int{1, 10}, FileSize: 16 * MiB}, Mode: ModeDfget, PieceSize: MiB,
		Runs:    []SwarmRun{{N: 1, TMin: 8, Last: 9, Ratio: 8.0 / 9, Direct: &direct}, {N: 10, TMin: 8}},
		Targets: []Target{{Name: "x", Measured: "y", Met: true}}}
	path, err := WriteJSON(dir, "swarm", rep)
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, "swarm.json") {
		t.Errorf("path %s", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(b), "}\n") || !strings.Contains(string(b), "\n  \"config\"") {
		t.Errorf("not indented JSON with a final newline:\n%s", b)
	}
	var got SwarmReport
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Runs[0].Direct == nil || *got.Runs[0].Direct != 1.25 || got.Runs[1].Direct != nil || got.PieceSize != MiB {
		t.Errorf("round trip: %+v", got)
	}
	// Overwriting works and leaves no temporary files behind.
	if _, err := WriteJSON(dir, "swarm", map[string]int{"a": 1}); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("dir holds %d entries, want 1", len(entries))
	}
	// Unencodable values fail without leaving a file.
	if _, err := WriteJSON(dir, "bad", math.NaN()); err == nil {
		t.Error("NaN encoded without error")
	}
	if _, err := os.Stat(filepath.Join(dir, "bad.json")); err == nil {
		t.Error("bad.json written")
	}
}

func TestTargets(t *testing.T) {
	if s := AtLeast("ratio >= 0.8", 0.85, 0.8, "%.2f").String(); s != "target ratio >= 0.8: measured 0.85 — met" {
		t.Errorf("got %q", s)
	}
	if s := AtMost("x <= 1", 2, 1, "%.0f").String(); s != "target x <= 1: measured 2 — NOT met" {
		t.Errorf("got %q", s)
	}
	if AtLeast("nan", math.NaN(), 0, "%v").Met || AtMost("nan", math.NaN(), 0, "%v").Met {
		t.Error("NaN met a target")
	}
}

func TestSwarmTargets(t *testing.T) {
	rep := &SwarmReport{Config: SwarmConfig{FileSize: 16 * MiB}, PieceSize: MiB, Runs: []SwarmRun{
		{N: 1, TMin: 8, Last: 9, Ratio: 8.0 / 9, OriginBytes: 16 * MiB},
		{N: 100, TMin: 8, Last: 10, Ratio: 0.8, OriginBytes: 17 * MiB},
	}}
	ts := SwarmTargets(rep)
	if len(ts) != 3 {
		t.Fatalf("got %d targets: %v", len(ts), ts)
	}
	if !ts[0].Met || !strings.Contains(ts[0].Name, "N=100") {
		t.Errorf("ratio target: %v", ts[0])
	}
	if !ts[1].Met || !strings.Contains(ts[1].Measured, "N=100") {
		t.Errorf("origin target (exactly F + one piece): %v", ts[1])
	}
	if !ts[2].Met || !strings.Contains(ts[2].Measured, "1.11x") {
		t.Errorf("scaling target: %v", ts[2])
	}
	rep.Runs[1].OriginBytes++
	rep.Runs[1].Failed = 1
	ts = SwarmTargets(rep)
	if ts[0].Met || ts[1].Met || ts[2].Met {
		t.Errorf("failed peers or excess origin bytes met targets: %v", ts)
	}
}

func TestTable(t *testing.T) {
	tab := &Table{Title: "t", Header: []string{"N", "time"}, Notes: []string{"note"}}
	tab.AddRow(1, "1.00s")
	tab.AddRow(100, "10.00s")
	var b strings.Builder
	tab.Fprint(&b)
	want := "\n== t ==\n    N    time\n    1   1.00s\n  100  10.00s\n  note\n"
	if b.String() != want {
		t.Errorf("table:\n%q\nwant\n%q", b.String(), want)
	}
}

func TestProcStat(t *testing.T) {
	stat := "cpu  100 10 50 800 40 0 0 0 0 0\ncpu0 50 5 25 400 20 0 0 0 0 0\nintr 1\n"
	a, ok := parseProcStat(stat)
	if !ok || a.Busy != 160 || a.Total != 1000 {
		t.Fatalf("parseProcStat = %+v, %v; want busy 160 total 1000", a, ok)
	}
	b := CPUTimes{Busy: a.Busy + 150, Total: a.Total + 200}
	if u := Utilization(a, b); u != 0.75 {
		t.Errorf("Utilization = %v, want 0.75", u)
	}
	if u := Utilization(b, a); u != -1 {
		t.Errorf("backwards Utilization = %v, want -1", u)
	}
	if _, ok := parseProcStat("intr 1\n"); ok {
		t.Error("no cpu line parsed")
	}
}

func TestPidStat(t *testing.T) {
	stat := "1234 (dfget (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 12 0 1000 0 0\n"
	if s, ok := parsePidStat(stat); !ok || s != 3 {
		t.Errorf("parsePidStat = %v, %v; want 3s", s, ok)
	}
	if _, ok := parsePidStat("garbage"); ok {
		t.Error("garbage parsed")
	}
}

func TestCountStoredPieces(t *testing.T) {
	rec := func(set bool) []byte {
		b := make([]byte, 32)
		if set {
			b[31] = 1
		}
		return b
	}
	var b []byte
	for _, set := range []bool{true, false, true, true, false} {
		b = append(b, rec(set)...)
	}
	dir := t.TempDir()
	for i, task := range []string{"a", "b"} {
		p := filepath.Join(dir, "tasks", task)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "pieces"), b[:32*(i+4)], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if n := countStoredPieces(dir); n != 6 {
		t.Errorf("countStoredPieces = %d, want 6 (3 + 3)", n)
	}
	if n := countStoredPieces(filepath.Join(dir, "missing")); n != 0 {
		t.Errorf("missing store: %d", n)
	}
}
