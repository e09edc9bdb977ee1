package scheduler

import (
	"testing"

	"github.com/damselfly-p2p/damselfly/wire"
)

func TestPeersHolding(t *testing.T) {
	s := New(Config{})
	s.SetTask("t", 4)
	for i, id := range []string{"a", "b", "c", "done"} {
		if _, err := s.Register("t", id, host(i), nil); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Finished("t", "a", []int{0, 1}, false))
	must(s.Finished("t", "b", []int{1}, false))
	must(s.Finished("t", "c", []int{1, 2}, false))
	must(s.Finished("t", "done", nil, true))
	s.ReportBad("c", wire.ReasonCorrupt) // isolated: its pieces do not count
	s.Leave("a")

	tests := []struct {
		task  string
		piece int
		want  int
	}{
		{"t", 0, 1}, // a left; only the finished peer
		{"t", 1, 2}, // b and done
		{"t", 2, 1}, // c isolated
		{"t", 3, 1},
		{"t", 4, 0},  // out of range
		{"t", -1, 0}, // out of range
		{"other", 0, 0},
	}
	for _, tc := range tests {
		if got := s.PeersHolding(tc.task, tc.piece); got != tc.want {
			t.Errorf("PeersHolding(%q, %d) = %d, want %d", tc.task, tc.piece, got, tc.want)
		}
	}
}
