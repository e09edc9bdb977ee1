package scheduler

import (
	"fmt"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/wire"
)

func host(i int) wire.Host {
	return wire.Host{Hostname: fmt.Sprintf("h%d", i), UploadAddr: fmt.Sprintf("127.0.0.1:%d", 10000+i)}
}

func ids(ps []wire.Parent) map[string]bool {
	m := map[string]bool{}
	for _, p := range ps {
		m[p.PeerID] = true
	}
	return m
}

func full(n int) manifest.Bitmap {
	b := manifest.NewBitmap(n)
	for i := 0; i < n; i++ {
		b.Set(i)
	}
	return b
}

func TestRegisterPrefersPeersWithPieces(t *testing.T) {
	s := New(Config{ParentLimit: 2})
	s.SetTask("t", 10)
	if _, err := s.Register("t", "rich", host(1), full(10)); err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= 5; i++ {
		if _, err := s.Register("t", fmt.Sprintf("poor%d", i), host(i), nil); err != nil {
			t.Fatal(err)
		}
	}
	ps, err := s.Register("t", "child", host(9), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || ps[0].PeerID != "rich" {
		t.Fatalf("parents = %+v, want rich first of 2", ps)
	}
	if ids(ps)["child"] {
		t.Fatal("child given itself as parent")
	}
}

func TestIsolation(t *testing.T) {
	tests := []struct {
		name     string
		reasons  []string
		isolated bool
	}{
		{"one corrupt report isolates", []string{wire.ReasonCorrupt}, true},
		{"one timeout does not", []string{wire.ReasonTimeout}, false},
		{"three failures isolate", []string{wire.ReasonTimeout, wire.ReasonUnreachable, wire.ReasonTimeout}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Config{})
			s.SetTask("t", 4)
			s.Register("t", "bad", host(1), full(4))
			for _, r := range tt.reasons {
				s.ReportBad("bad", r)
			}
			ps, _ := s.Register("t", "child", host(2), nil)
			if got := !ids(ps)["bad"]; got != tt.isolated {
				t.Fatalf("excluded = %v, want %v", got, tt.isolated)
			}
			st := s.Peers()
			for _, p := range st {
				if p.PeerID == "bad" && p.Isolated != tt.isolated {
					t.Fatalf("status isolated = %v", p.Isolated)
				}
			}
		})
	}
}

func TestIsolationExpires(t *testing.T) {
	now := time.Unix(1000, 0)
	s := New(Config{IsolateFor: time.Minute})
	s.now = func() time.Time { return now }
	s.SetTask("t", 4)
	s.Register("t", "bad", host(1), full(4))
	s.ReportBad("bad", wire.ReasonCorrupt)
	now = now.Add(2 * time.Minute)
	s.Heartbeat("bad")
	ps, _ := s.Register("t", "child", host(2), nil)
	if !ids(ps)["bad"] {
		t.Fatal("peer still isolated after IsolateFor")
	}
}

func TestExpireAndLeave(t *testing.T) {
	now := time.Unix(1000, 0)
	s := New(Config{PeerTTL: 10 * time.Second})
	s.now = func() time.Time { return now }
	s.SetTask("t", 4)
	s.Register("t", "a", host(1), nil)
	s.Register("t", "b", host(2), nil)
	now = now.Add(5 * time.Second)
	s.Heartbeat("b")
	now = now.Add(6 * time.Second)
	if n := s.Expire(); n != 1 {
		t.Fatalf("expired %d, want 1", n)
	}
	if err := s.Heartbeat("a"); err != ErrUnknownPeer {
		t.Fatalf("heartbeat of expired peer = %v", err)
	}
	s.Leave("b")
	if s.NumPeers() != 0 {
		t.Fatalf("peers = %d after leave", s.NumPeers())
	}
	if p, _ := s.TaskCounts("t"); p != 0 {
		t.Fatalf("task still has %d peers", p)
	}
}

func TestFinishedAndLoad(t *testing.T) {
	s := New(Config{ParentLimit: 1, DefaultSlots: 1})
	s.SetTask("t", 3)
	s.Register("t", "p1", host(1), full(3))
	s.Register("t", "p2", host(2), full(3))
	a, _ := s.Register("t", "c1", host(3), nil)
	b, _ := s.Register("t", "c2", host(4), nil)
	if a[0].PeerID == b[0].PeerID {
		t.Fatalf("both children got %s: load not spread", a[0].PeerID)
	}
	if err := s.Finished("t", "c1", []int{0, 1, 2}, true); err != nil {
		t.Fatal(err)
	}
	if p, d := s.TaskCounts("t"); p != 4 || d != 3 {
		t.Fatalf("counts = %d/%d, want 4/3", p, d)
	}
	if err := s.Finished("t", "nobody", []int{0}, false); err != ErrUnknownPeer {
		t.Fatalf("unknown peer: %v", err)
	}
}

func TestMoreParentsCapped(t *testing.T) {
	s := New(Config{ParentLimit: 2, MaxParents: 3})
	s.SetTask("t", 2)
	for i := 0; i < 10; i++ {
		s.Register("t", fmt.Sprintf("p%d", i), host(i), full(2))
	}
	s.Register("t", "c", host(99), nil)
	for k := 0; k < 5; k++ {
		if _, err := s.MoreParents("t", "c"); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	n := len(s.peers["c"].tasks["t"].parents)
	s.mu.Unlock()
	if n > 3 {
		t.Fatalf("child has %d parents, cap 3", n)
	}
}

// BenchmarkRegister measures registrations against one task with 10,000
// peers already in it.
func BenchmarkRegister(b *testing.B) {
	s := New(Config{})
	s.SetTask("t", 64)
	for i := 0; i < 10000; i++ {
		s.Register("t", fmt.Sprintf("p%d", i), host(i), nil)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Register("t", fmt.Sprintf("n%d", i), host(i), nil)
	}
}

// A parent reported unreachable is not handed out until it is heard from
// again; a parent that left is never handed out.
func TestUnreachableAndLeftNotHandedOut(t *testing.T) {
	tests := []struct {
		name    string
		gone    func(s *Scheduler)
		back    func(s *Scheduler) // nil: stays gone
		offered bool
	}{
		{"unreachable", func(s *Scheduler) { s.ReportBad("p", wire.ReasonUnreachable) }, nil, false},
		{"unreachable, then heard from", func(s *Scheduler) { s.ReportBad("p", wire.ReasonUnreachable) },
			func(s *Scheduler) { s.Heartbeat("p") }, true},
		{"left", func(s *Scheduler) { s.Leave("p") }, nil, false},
		{"timeout (not unreachable)", func(s *Scheduler) { s.ReportBad("p", wire.ReasonTimeout) }, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Unix(1000, 0)
			s := New(Config{})
			s.now = func() time.Time { return now }
			s.SetTask("t", 4)
			s.SetTask("u", 4)
			s.Register("t", "p", host(1), full(4))
			s.Register("u", "p", host(1), full(4))
			tt.gone(s)
			now = now.Add(time.Second)
			if tt.back != nil {
				tt.back(s)
			}
			for i, task := range []string{"t", "u"} {
				ps, _ := s.Register(task, fmt.Sprintf("child%d", i), host(2+i), nil)
				if got := ids(ps)["p"]; got != tt.offered {
					t.Fatalf("task %s: parent offered = %v, want %v", task, got, tt.offered)
				}
			}
		})
	}
}
