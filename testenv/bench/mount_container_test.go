package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTTFBOffsets(t *testing.T) {
	const piece = 1 << 20
	cfg := MountConfig{FileSize: 64*piece + 12345, Reads: 50, ReadSize: 4096, Seed: 3}
	offs := ttfbOffsets(cfg, piece)
	if len(offs) != 50 {
		t.Fatalf("%d offsets, want 50", len(offs))
	}
	seen := map[int64]bool{}
	for _, off := range offs {
		if off%4096 != 0 || off < 0 || off+4096 > cfg.FileSize {
			t.Errorf("offset %d: not page-aligned or out of the file", off)
		}
		p := off / piece
		if seen[p] {
			t.Errorf("piece %d read twice", p)
		}
		seen[p] = true
		if (off+4096-1)/piece != p {
			t.Errorf("read at %d crosses a piece boundary", off)
		}
	}
	// Deterministic for a seed.
	again := ttfbOffsets(cfg, piece)
	for i := range offs {
		if offs[i] != again[i] {
			t.Fatal("offsets differ between two calls with the same seed")
		}
	}
	// More reads than pieces: pieces repeat, offsets stay in the file.
	cfg.Reads = 100
	if got := ttfbOffsets(cfg, piece); len(got) != 100 {
		t.Fatalf("%d offsets, want 100", len(got))
	}
}

func sampleMountReport() *MountReport {
	rep := &MountReport{Config: MountConfig{FileSize: 512 * MiB, Reads: 3, ReadSize: 4096}, PieceSize: MiB,
		Offsets: []int64{0, 4096, 8192}, Evict: "fadvise", LocalResident: 0}
	rep.TTFB = []TTFBRow{
		{Name: TTFBColdSeed, Latency: []float64{0.005, 0.006, 0.007}, Summary: Summarize([]float64{0.005, 0.006, 0.007}), OriginBytes: 3 * MiB},
		{Name: TTFBLocal, Latency: []float64{0.0001, 0.0002, 0.0003}, Summary: Summarize([]float64{0.0001, 0.0002, 0.0003}), OriginBytes: -1},
	}
	row := func(name string, secs ...float64) SeqRead {
		r := SeqRead{Name: name, Samples: secs, Seconds: median(secs), Resident: 0, OriginBytes: -1,
			CPU: CPUUse{Procs: map[string]float64{"peer": 1, "supernode": 0.5}, Bench: 0.2, Busy: 0.8}}
		r.MiBps = 512 / r.Seconds
		return r
	}
	rep.Seq = []SeqRead{row(SeqLocalCold, 1, 1.1, 0.9), row(SeqLocalWarm, 0.05), row(SeqDfget, 2), row(SeqMountCold, 4),
		row(SeqMountPrefetch, 2.5), row(SeqMountDone, 0.05), row(SeqMountDoneCold, 1.05)}
	return rep
}

func TestMountTargetsAndTables(t *testing.T) {
	rep := sampleMountReport()
	ts := MountTargets(rep)
	if len(ts) != 3 {
		t.Fatalf("%d targets, want 3", len(ts))
	}
	// mount cold 4s vs dfget 2s: 2x, not met; complete warm = local warm;
	// complete cold 1.05s vs local cold 1s: 1.05x, met.
	if ts[0].Met || !ts[1].Met || !ts[2].Met {
		t.Errorf("targets %+v", ts)
	}
	if !strings.HasPrefix(ts[0].Measured, "2.00x") {
		t.Errorf("measured %q, want 2.00x", ts[0].Measured)
	}
	var b strings.Builder
	for _, tab := range MountTables(rep) {
		tab.Fprint(&b)
	}
	for _, want := range []string{TTFBColdSeed, SeqMountPrefetch, "0.90-1.10s", "30.00"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("tables lack %q:\n%s", want, b.String())
		}
	}
	dir := t.TempDir()
	for name, f := range map[string]func(*MountReport, string) error{"ttfb.png": PlotMountTTFB, "seq.png": PlotMountSeq} {
		path := filepath.Join(dir, name)
		if err := f(rep, path); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
			t.Fatalf("%s not written: %v", name, err)
		}
	}
}

func TestContainerTargetsTablePlot(t *testing.T) {
	runs := []ContainerRun{{Pull: 0.1, Run: 0.2, Start: 0.3, Read: 4, ReadEgress: 100},
		{Pull: 0.2, Run: 0.1, Start: 0.3, Read: 3, ReadEgress: 300, ReadCPU: CPUUse{Bench: 7}},
		{Pull: 0.3, Run: 0.3, Start: 0.6, Read: 5, ReadEgress: 200}}
	m := medianRun(runs)
	if m.Pull != 0.2 || m.Run != 0.2 || m.Start != 0.3 || m.Read != 4 || m.ReadEgress != 200 || m.ReadCPU.Bench != 0 {
		t.Errorf("medianRun = %+v", m)
	}
	rep := &ContainerReport{Config: ContainerConfig{BigSize: 256 * MiB}, Lazy: ContainerRun{Pull: 0.1, Run: 0.2, Start: 0.3, Read: 5},
		Full: ContainerRun{Pull: 3, Run: 0.5, Start: 3.5, Read: 1}}
	rep.StartSpeedup = rep.Full.Start / rep.Lazy.Start
	rep.FullPullPlusRead = rep.Full.Pull + rep.Full.Read
	rep.ReadRatio = rep.Lazy.Read / rep.FullPullPlusRead
	ts := ContainerTargets(rep)
	if len(ts) != 2 || !ts[0].Met || ts[1].Met {
		t.Errorf("targets %+v", ts)
	}
	var b strings.Builder
	ContainerTable(rep).Fprint(&b)
	if !strings.Contains(b.String(), "11.67") {
		t.Errorf("table lacks the start speedup:\n%s", b.String())
	}
	if err := PlotContainer(rep, filepath.Join(t.TempDir(), "c.png")); err != nil {
		t.Fatal(err)
	}
}

func TestTimeCmd(t *testing.T) {
	tm, err := timeCmd(t.Context(), 10*time.Second, "hello", "/bin/sh", "-c", "sleep 0.2; echo hello; sleep 0.3")
	if err != nil {
		t.Fatal(err)
	}
	if tm.Output < 0.15 || tm.Output > tm.Exit || tm.Exit < 0.45 {
		t.Errorf("timing %+v: want output at ~0.2s, exit at ~0.5s", tm)
	}
	if _, err := timeCmd(t.Context(), 10*time.Second, "absent", "/bin/sh", "-c", "echo other"); err == nil {
		t.Error("missing output not reported")
	}
	if _, err := timeCmd(t.Context(), 10*time.Second, "", "/bin/sh", "-c", "exit 3"); err == nil {
		t.Error("failure not reported")
	}
}

func TestResidentFraction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := residentFraction(path); r < 0.99 {
		t.Errorf("just written file %.2f resident, want 1", r)
	}
	ev := &evictor{}
	if r := ev.evict(path); r < 0 || r > 0.01 {
		t.Errorf("after evict %.2f resident, want 0", r)
	}
	if !strings.Contains(ev.method(), "fadvise") {
		t.Errorf("method %q", ev.method())
	}
}
