package scheduler

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/damselfly-p2p/damselfly/wire"
)

func TestHoldersOf(t *testing.T) {
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
		task    string
		piece   int
		exclude string
		max     int
		want    string
	}{
		{"t", 0, "", 4, "done"}, // a left; only the finished peer
		{"t", 1, "", 4, "b,done"},
		{"t", 1, "b", 4, "done"}, // the asking child is not named
		{"t", 1, "", 1, "1 peer"},
		{"t", 2, "", 4, "done"}, // c isolated
		{"t", 3, "", 4, "done"},
		{"t", 3, "", 0, ""},
		{"t", 4, "", 4, ""},  // out of range
		{"t", -1, "", 4, ""}, // out of range
		{"other", 0, "", 4, ""},
	}
	for _, tc := range tests {
		var ids []string
		for _, p := range s.HoldersOf(tc.task, tc.piece, tc.exclude, tc.max) {
			if p.Addr == "" {
				t.Errorf("holder %s without an address", p.PeerID)
			}
			ids = append(ids, p.PeerID)
		}
		sort.Strings(ids)
		got := strings.Join(ids, ",")
		if strings.HasSuffix(tc.want, " peer") {
			got = fmt.Sprintf("%d peer", len(ids))
		}
		if got != tc.want {
			t.Errorf("HoldersOf(%q, %d, %q, %d) = %q, want %q", tc.task, tc.piece, tc.exclude, tc.max, got, tc.want)
		}
	}
}
