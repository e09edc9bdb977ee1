package bench

import (
	"strings"
	"testing"
)

func TestSecureTargets(t *testing.T) {
	swarm := func(last float64, failed int) *SwarmReport {
		return &SwarmReport{Runs: []SwarmRun{{N: 1, Last: 1}, {N: 10, Last: last, Failed: failed}}}
	}
	single := func(warm float64) *SingleReport { return &SingleReport{Cold: 2, Warm: warm} }
	tests := []struct {
		name           string
		plain, secure  *SwarmReport
		splain, ssec   *SingleReport
		wantMet        []bool
		wantInMeasured string
	}{
		{"within 10%", swarm(10, 0), swarm(11, 0), single(1), single(1.05), []bool{true, true}, "1.10x"},
		{"swarm too slow", swarm(10, 0), swarm(12, 0), single(1), single(1), []bool{false, true}, "1.20x"},
		{"secure peer failed", swarm(10, 0), swarm(10, 1), nil, nil, []bool{false}, "NaN"},
		{"single too slow", nil, nil, single(1), single(1.5), []bool{false}, "1.50x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := SecureTargets(tc.plain, tc.secure, tc.splain, tc.ssec)
			if len(ts) != len(tc.wantMet) {
				t.Fatalf("%d targets %v, want %d", len(ts), ts, len(tc.wantMet))
			}
			for i, tg := range ts {
				if tg.Met != tc.wantMet[i] {
					t.Errorf("target %s met=%v, want %v", tg, tg.Met, tc.wantMet[i])
				}
			}
			if !strings.Contains(ts[0].Measured, tc.wantInMeasured) {
				t.Errorf("first target measured %q, want %q in it", ts[0].Measured, tc.wantInMeasured)
			}
		})
	}
}

func TestSecureSwarmTable(t *testing.T) {
	plain := &SwarmReport{Runs: []SwarmRun{{N: 5, Last: 4}, {N: 10, Last: 8}}}
	secure := &SwarmReport{Runs: []SwarmRun{{N: 10, Last: 10}}}
	tab := SecureSwarmTable(plain, secure)
	if len(tab.Rows) != 1 || tab.Rows[0][0] != "10" || tab.Rows[0][3] != "1.25" {
		t.Errorf("rows %q, want one row for N=10 with ratio 1.25", tab.Rows)
	}
}
