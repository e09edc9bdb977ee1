package scheduler

import (
	"testing"
	"time"
)

func TestUploadRate(t *testing.T) {
	type report struct {
		after time.Duration // since the previous report
		total int64
	}
	tests := []struct {
		name     string
		reports  []report
		want     float64
		wantKnow bool
	}{
		{"never reported", nil, 0, false},
		{"one report is only a baseline", []report{{0, 1 << 20}}, 0, false},
		{"bytes per second between the last two", []report{{0, 1 << 20}, {5 * time.Second, 11 << 20}}, 2 << 20, true},
		{"idle peer", []report{{0, 1 << 20}, {5 * time.Second, 1 << 20}}, 0, true},
		{"counter went down: the peer restarted", []report{{0, 10 << 20}, {5 * time.Second, 1 << 20}}, 0, false},
		{"restart then a second report", []report{{0, 10 << 20}, {5 * time.Second, 1 << 20}, {2 * time.Second, 3 << 20}}, 1 << 20, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Unix(1000, 0)
			s := New(Config{})
			s.now = func() time.Time { return now }
			s.SetTask("t", 4)
			s.Register("t", "p", host(1), nil)
			for _, r := range tc.reports {
				now = now.Add(r.after)
				s.ReportUploaded("p", r.total)
			}
			got, ok := s.UploadRate("p")
			if ok != tc.wantKnow || got != tc.want {
				t.Fatalf("UploadRate = %v, %v; want %v, %v", got, ok, tc.want, tc.wantKnow)
			}
		})
	}
	if _, ok := New(Config{}).UploadRate("nobody"); ok {
		t.Fatal("an unknown peer has an upload rate")
	}
}
