package supernode

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/cache"
	"github.com/damselfly-p2p/damselfly/wire"
)

// TestPaceAdmit is the pacing rule as a table of cases.
func TestPaceAdmit(t *testing.T) {
	tests := []struct {
		name                       string
		lead, exclusive, downloads int
		quiet, unpaced             bool
		want                       bool
	}{
		{"under the lead", 4, 3, 8, false, false, true},
		{"at the lead", 4, 4, 8, false, false, false},
		{"over the lead (on-demand fetches)", 4, 7, 8, false, false, false},
		{"nothing exclusive", 4, 0, 1, false, false, true},
		{"lone peer at the lead", 4, 4, 1, false, false, false},
		{"unpaced (lead 0)", 0, 50, 8, false, false, true},
		{"unpaced (negative lead)", -1, 50, 8, false, false, true},
		{"preheat", 4, 50, 8, false, true, true},
		{"no downloading peer", 4, 50, 0, false, false, true},
		{"swarm quiet", 4, 50, 3, true, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := paceAdmit(tc.lead, tc.exclusive, tc.downloads, tc.quiet, tc.unpaced); got != tc.want {
				t.Errorf("paceAdmit(lead %d, exclusive %d, downloading %d, quiet %v, unpaced %v) = %v, want %v",
					tc.lead, tc.exclusive, tc.downloads, tc.quiet, tc.unpaced, got, tc.want)
			}
		})
	}
}

func TestLeadPieces(t *testing.T) {
	tests := []struct {
		lead      int
		pieceSize int64
		want      int
	}{
		{4, 1 << 20, 4},
		{4, 16 << 20, 4},
		{4, 256 << 10, 12}, // at least paceMinLeadBytes
		{8, 1 << 20, 8},
		{0, 1 << 20, 0},
		{-1, 1 << 20, 0},
	}
	for _, tc := range tests {
		if got := leadPieces(tc.lead, tc.pieceSize); got != tc.want {
			t.Errorf("leadPieces(%d, %d) = %d, want %d", tc.lead, tc.pieceSize, got, tc.want)
		}
	}
}

// paceRig is a seeder and one seed task over a real cache task, with a
// swarm whose holders the test sets.
type paceRig struct {
	s  *seeder
	st *seedTask
	t  *cache.Task

	mu          sync.Mutex
	held        map[int]bool
	downloading int
}

func newPaceRig(t *testing.T, lead, pieces int) *paceRig {
	t.Helper()
	store, err := cache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ct, err := store.Create(ctx, cache.Meta{TaskID: "0123456789abcdef0123456789abcdef", URL: "http://o/f",
		Length: int64(pieces) << 20, PieceSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ct.Close() })
	r := &paceRig{t: ct, held: map[int]bool{}, downloading: 2}
	r.s = &seeder{ctx: ctx, lead: lead, tasks: map[string]*seedTask{}}
	r.s.holdersOf = func(_ string, n int, _ string, _ int) []wire.Parent {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.held[n] {
			return []wire.Parent{{PeerID: "p"}}
		}
		return nil
	}
	r.s.swarm = func(string) (int, int) {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.downloading, 0
	}
	r.st = &seedTask{id: "0123456789abcdef0123456789abcdef", task: ct, state: stateFetching}
	r.s.tasks[r.st.id] = r.st
	r.st.pace.active = time.Now()
	return r
}

// fetched stores piece n as the fill would.
func (r *paceRig) fetched(t *testing.T, n int) {
	t.Helper()
	if _, err := r.t.PutPiece(n, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	r.st.stored(n, true)
}

// admitted starts paceFill and reports whether it returns within d.
func (r *paceRig) admitted(d time.Duration) (<-chan struct{}, bool) {
	done := make(chan struct{})
	go func() {
		r.s.paceFill(r.st, r.t, r.t.NumPieces()-1)
		close(done)
	}()
	select {
	case <-done:
		return done, true
	case <-time.After(d):
		return done, false
	}
}

// TestPaceFillWaitsAndWakes: the fill starts pieces until lead pieces
// exist only at the seed, waits, and goes on as soon as one is sent whole
// to a child or reported held by a peer, or the rule stops applying.
func TestPaceFillWaitsAndWakes(t *testing.T) {
	defer func(p time.Duration) { pacePoll = p }(pacePoll)
	wakes := []struct {
		name string
		wake func(r *paceRig)
		// poll is the re-check interval; within is how soon the fill
		// must go on (well under poll: woken, not polled).
		poll, within time.Duration
	}{
		{"sent whole", func(r *paceRig) { seedTasks{r.s}.PieceSent(r.st.id, 0) }, time.Minute, 5 * time.Second},
		{"reported held", func(r *paceRig) {
			r.mu.Lock()
			r.held[1] = true
			r.mu.Unlock()
			r.s.reported(r.st.id)
		}, time.Minute, 5 * time.Second},
		{"preheat", func(r *paceRig) { r.st.unpace() }, time.Minute, 5 * time.Second},
		{"peers done", func(r *paceRig) {
			r.mu.Lock()
			r.downloading = 0
			r.mu.Unlock()
		}, 50 * time.Millisecond, 5 * time.Second},
		{"swarm quiet", func(*paceRig) {}, 50 * time.Millisecond, paceQuiet + 5*time.Second},
	}
	for _, w := range wakes {
		t.Run(w.name, func(t *testing.T) {
			pacePoll = w.poll
			const lead = 4
			r := newPaceRig(t, lead, 16)
			// Three stored, one in flight: lead reached.
			for n := range 3 {
				if _, ok := r.admitted(time.Second); !ok {
					t.Fatalf("piece %d not admitted under the lead", n)
				}
				r.fetched(t, n)
			}
			if _, ok := r.admitted(time.Second); !ok {
				t.Fatal("fourth piece not admitted")
			}
			if got := r.s.exclusive(r.st); got != lead {
				t.Fatalf("exclusive = %d, want %d", got, lead)
			}
			// A piece sent before is not exclusive when stored again.
			r.st.sentWhole(9, 16)
			r.st.stored(9, false)
			if got := r.s.exclusive(r.st); got != lead {
				t.Fatalf("exclusive after storing a piece already sent = %d, want %d", got, lead)
			}
			done, ok := r.admitted(300 * time.Millisecond)
			if ok {
				t.Fatal("fill not paced at the lead")
			}
			if w.name != "swarm quiet" {
				r.st.mu.Lock()
				r.st.pace.active = time.Now()
				r.st.mu.Unlock()
			}
			w.wake(r)
			select {
			case <-done:
			case <-time.After(w.within):
				t.Fatalf("fill still waiting %v after %s", w.within, w.name)
			}
			if r.st.waitedPaced() <= 0 {
				t.Error("time waited not recorded")
			}
		})
	}
}

// TestPaceFillCancelled: a waiting fill returns when the seeder stops.
func TestPaceFillCancelled(t *testing.T) {
	r := newPaceRig(t, 4, 8)
	ctx, cancel := context.WithCancel(context.Background())
	r.s.ctx = ctx
	for n := range 4 {
		r.fetched(t, n)
	}
	done, ok := r.admitted(200 * time.Millisecond)
	if ok {
		t.Fatal("fill not paced")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("paced fill did not end with the seeder's context")
	}
}

// TestPaceFillNothingLeft: a fill at the lead (4 pieces: 1 MiB pieces
// make a lead of at least 3) waits to start the piece its worker picked,
// and stops waiting (without counting it) once that piece came another
// way (on demand).
func TestPaceFillNothingLeft(t *testing.T) {
	r := newPaceRig(t, 4, 5)
	for n := range 3 {
		r.fetched(t, n)
	}
	if _, ok := r.admitted(time.Second); !ok { // piece 3 in flight
		t.Fatal("not admitted under the lead")
	}
	done, ok := r.admitted(200 * time.Millisecond)
	if ok {
		t.Fatal("admitted at the lead with piece 4 left to start")
	}
	// Piece 4 comes on demand: only piece 3, in flight, is missing.
	if _, err := r.t.PutPiece(4, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	r.st.stored(4, false)
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("fill waits with nothing left to start")
	}
	r.st.mu.Lock()
	inflight := r.st.pace.inflight
	r.st.mu.Unlock()
	if inflight != 1 {
		t.Errorf("in flight = %d, want 1", inflight)
	}
}
