package bench

import (
	"strings"
	"testing"
)

// TestIssue13Targets checks that every issue-13 target is reported, met or
// not, for the default image and the --min-chunk-size one, including the
// time to the first MiB with background fetch on against off.
func TestIssue13Targets(t *testing.T) {
	run := func(start, run, read float64, egress int64) ContainerRun {
		return ContainerRun{Start: start, Run: run, Read: read, StartEgress: egress}
	}
	sb := func(dfStart float64) SideBySide {
		return SideBySide{StargzVersion: "v0.15.1",
			Damselfly: run(dfStart, 0.5, 2, 8<<20), DamselflyReps: []ContainerRun{{}},
			Stargz: run(1, 0.5, 6, 7<<20), StargzReps: []ContainerRun{{}},
			StargzNoBG: run(1, 0.5, 6, 7<<20), StargzNoBGReps: []ContainerRun{{}}}
	}
	main := sb(0.6)
	rep := &ContainerReport{Config: ContainerConfig{BigSize: 256 * MiB}, Lazy: run(0.8, 0.4, 3, 8<<20), Full: run(4, 1, 1.5, 268<<20),
		SideBySide: &main}
	rep.FirstMiBRatio = main.Damselfly.Start / rep.Lazy.Start // 0.75: met
	mc := &MinChunkRuns{MinChunkSize: 65536, SideBySide: sb(1.5), Lazy: run(1, 0.5, 3, 8<<20), LazyReps: []ContainerRun{{}}}
	mc.FirstMiBRatio = mc.SideBySide.Damselfly.Start / mc.Lazy.Start // 1.5: not met
	rep.MinChunk = mc

	ts := Issue13Targets(rep)
	tests := []struct {
		minChunk bool   // the --min-chunk-size image's target
		name     string // substring of the target's name
		met      bool
	}{
		{false, "cold start with defaults at most 0.8x", true},             // 0.6 vs 1
		{false, "cold start with background fetch off at most 0.9x", true}, // 0.8 vs 1
		{false, "registry bytes until the first output", true},             // 8 vs 7 MiB: 1.14x
		{false, "whole-file read after start at most 1.5x", true},          // 2 vs 1.5: 1.33x
		{false, "first MiB with background fetch on at most 1.2x", true},   // 0.75x
		{true, "cold start with defaults at most 0.8x", false},             // 1.5 vs 1
		{true, "cold start with background fetch off at most 0.9x", false}, // 1 vs 1
		{true, "first MiB with background fetch on at most 1.2x", false},   // 1.5x
	}
	for _, tc := range tests {
		found := 0
		for _, tg := range ts {
			if !strings.Contains(tg.Name, tc.name) || strings.HasPrefix(tg.Name, "--min-chunk-size 65536 image: ") != tc.minChunk {
				continue
			}
			found++
			if tg.Met != tc.met {
				t.Errorf("%s: met %v, want %v (measured %s)", tg.Name, tg.Met, tc.met, tg.Measured)
			}
		}
		if found != 1 {
			t.Errorf("%d targets %q (min-chunk image %v) in %v", found, tc.name, tc.minChunk, ts)
		}
	}
	if len(ts) != 10 {
		t.Errorf("%d targets, want 5 for each image", len(ts))
	}

	var b strings.Builder
	ContainerTable(rep).Fprint(&b)
	for _, want := range []string{"--min-chunk-size 65536 image: stargz-snapshotter, defaults", "background fetch on/off: 0.75", "side by side, --min-chunk-size 65536 image"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}

	// Without stargz-snapshotter runs, the targets are still listed, not met.
	rep.SideBySide = &SideBySide{StargzError: "no module proxy", DamselflyReps: []ContainerRun{{}}, Damselfly: run(0.6, 0.5, 2, 1)}
	rep.MinChunk = nil
	ts = Issue13Targets(rep)
	if len(ts) != 2 || ts[0].Met || !strings.Contains(ts[0].Note, "no module proxy") || !ts[1].Met {
		t.Errorf("targets without stargz-snapshotter: %+v", ts)
	}
}
