package scheduler

import "testing"

func TestScoreOrdersCandidates(t *testing.T) {
	base := Candidate{Pieces: 50, NumPieces: 100, Load: 2, Slots: 8}
	tests := []struct {
		name   string
		better Candidate
		worse  Candidate
	}{
		{"more pieces", Candidate{Pieces: 90, NumPieces: 100, Load: 2, Slots: 8}, base},
		{"less loaded", Candidate{Pieces: 50, NumPieces: 100, Load: 0, Slots: 8}, base},
		{"same rack", Candidate{Pieces: 50, NumPieces: 100, Load: 2, Slots: 8, SameIDC: true, SameRack: true}, base},
		{"same idc", Candidate{Pieces: 50, NumPieces: 100, Load: 2, Slots: 8, SameIDC: true}, base},
		{"fewer failures", base, Candidate{Pieces: 50, NumPieces: 100, Load: 2, Slots: 8, Failures: 3}},
		{"overloaded clamps", base, Candidate{Pieces: 50, NumPieces: 100, Load: 100, Slots: 8}},
	}
	for _, tt := range tests {
		if b, w := Score(tt.better), Score(tt.worse); b <= w {
			t.Errorf("%s: score %v <= %v", tt.name, b, w)
		}
	}
}

func TestScoreBounds(t *testing.T) {
	best := Score(Candidate{Pieces: 10, NumPieces: 10, Slots: 4, SameIDC: true, SameRack: true})
	worst := Score(Candidate{Pieces: 0, NumPieces: 10, Load: 9, Slots: 4, Failures: 1 << 20})
	if best < 0.999 || best > 1.0001 {
		t.Errorf("best = %v, want 1", best)
	}
	if worst < 0 || worst > 0.001 {
		t.Errorf("worst = %v, want ~0", worst)
	}
}
