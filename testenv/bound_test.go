package testenv

import (
	"math"
	"testing"
	"time"
)

func TestKumarRoss(t *testing.T) {
	const MiB = 1 << 20
	tests := []struct {
		name        string
		F, us, u, d float64
		N           int
		want        time.Duration
	}{
		{"seed bound", 100 * MiB, 100 * MiB, 1000 * MiB, 0, 10, time.Second},
		{"aggregate bound", 100 * MiB, 25 * MiB, 5 * MiB, 0, 15, 15 * time.Second},          // 15*100/(25+75)
		{"download bound", 100 * MiB, 100 * MiB, 1000 * MiB, 50 * MiB, 10, 2 * time.Second}, // F/d
		{"d <= 0 unlimited", 100 * MiB, 100 * MiB, 1000 * MiB, -1, 10, time.Second},
		{"no peer upload", 10 * MiB, 10 * MiB, 0, 0, 4, 4 * time.Second}, // N*F/us
		{"single peer", 10 * MiB, 5 * MiB, 1 * MiB, 20 * MiB, 1, 2 * time.Second},
		{"fractional", 1, 3, 0, 0, 1, time.Duration(math.Round(1e9 / 3.0))},
		{"zero size", 0, 1, 1, 1, 5, 0},
		{"zero peers", 10, 1, 1, 1, 0, 0},
		{"seed cannot upload", 10, 0, 1, 1, 5, time.Duration(math.MaxInt64)},
		{"overflow", 1e30, 1, 1, 0, 1, time.Duration(math.MaxInt64)},
		{"negative u as 0", 10 * MiB, 10 * MiB, -5, 0, 2, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := KumarRoss(tt.F, tt.us, tt.u, tt.d, tt.N); got != tt.want {
				t.Errorf("KumarRoss(%g, %g, %g, %g, %d) = %v, want %v", tt.F, tt.us, tt.u, tt.d, tt.N, got, tt.want)
			}
		})
	}
}
