package bench

import (
	"strings"
	"testing"
)

func TestPeersTargets(t *testing.T) {
	cells := func(curl, d, df, kr float64) map[string]PeersCell {
		m := map[string]PeersCell{}
		for sys, s := range map[string]float64{SysCurl: curl, SysDamselfly: d, SysDragonfly: df, SysKraken: kr} {
			if s < 0 {
				m[sys] = PeersCell{Secs: -1, Err: "unavailable: no nginx"}
			} else {
				m[sys] = PeersCell{Secs: s}
			}
		}
		return m
	}
	result := func(row PeersRow, c map[string]PeersCell) PeersResult {
		return PeersResult{Row: row, Cells: c, VsDragonfly: peersRatio(c[SysDamselfly], c[SysDragonfly]),
			VsCurl: peersRatio(c[SysDamselfly], c[SysCurl]), VsKraken: peersRatio(c[SysDamselfly], c[SysKraken])}
	}
	small, big := PeersRow{10, 64 * MiB}, PeersRow{1, 1 << 30}
	tests := []struct {
		name    string
		results []PeersResult
		want    map[string]bool // target name substring -> met
	}{
		{"all met", []PeersResult{result(small, cells(1, 1.5, 5, 3))},
			map[string]bool{"Dragonfly": true, "curls": true, "Kraken": true}},
		{"slower than a third of dragonfly", []PeersResult{result(small, cells(1, 2, 5, 3))},
			map[string]bool{"Dragonfly": false, "curls": true, "Kraken": true}},
		{"more than twice curl", []PeersResult{result(small, cells(1, 2.5, 10, 3))},
			map[string]bool{"Dragonfly": true, "curls": false, "Kraken": true}},
		{"as slow as kraken is not faster", []PeersResult{result(big, cells(1, 3, 5, 3))},
			map[string]bool{"Kraken": false}},
		{"unavailable anchor not met", []PeersResult{result(small, cells(1, 1, -1, -1))},
			map[string]bool{"Dragonfly": false, "curls": true, "Kraken": false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := PeersTargets(&PeersReport{Results: tt.results})
			if len(ts) != len(tt.want) {
				t.Fatalf("%d targets, want %d: %v", len(ts), len(tt.want), ts)
			}
			for sub, met := range tt.want {
				found := false
				for _, tg := range ts {
					if strings.Contains(tg.Name, sub) {
						found = true
						if tg.Met != met {
							t.Errorf("%s: met %v, want %v", tg, tg.Met, met)
						}
						if tg.Measured == "-" && tg.Note == "" {
							t.Errorf("%s: unmeasured without a note", tg)
						}
					}
				}
				if !found {
					t.Errorf("no target about %q in %v", sub, ts)
				}
			}
		})
	}
}

func TestPeersTableMarksUnavailable(t *testing.T) {
	c := map[string]PeersCell{SysCurl: {Secs: 1}, SysDamselfly: {Secs: 2, SeedCPUPerGiB: 0.5, PeersCPUPerGiB: 1.25},
		SysDragonfly: {Secs: -1, Err: "unavailable: go build failed"}, SysKraken: {Secs: 4}}
	rep := &PeersReport{Results: []PeersResult{{Row: PeersRow{10, 64 * MiB}, Cells: c, VsDragonfly: -1, VsCurl: 2, VsKraken: 0.5}}}
	var b strings.Builder
	PeersTable(rep).Fprint(&b)
	out := b.String()
	for _, want := range []string{"10 x 64MiB", "unavailable", "2.00", "0.50", "1.25", "go build failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestFmtSize(t *testing.T) {
	for _, tt := range []struct {
		in   int64
		want string
	}{{64 * MiB, "64MiB"}, {1 << 30, "1GiB"}, {3 << 29, "1536MiB"}} {
		if got := fmtSize(tt.in); got != tt.want {
			t.Errorf("fmtSize(%d) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
