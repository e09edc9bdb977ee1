package p2p

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/manifest"
)

// parentSpec describes a parent of a pick test case.
type parentSpec struct {
	id       string
	seed     bool
	has      []int
	relaying []int // pieces it is fetching (or relaying) now
	inflight int
	dropped  bool
	busyFor  time.Duration // busyUntil, from the test's t0
}

const pickPieces = 6

var allPieces = []int{0, 1, 2, 3, 4, 5}

// TestPickPolicy runs the policy as dispatch does (apply each assignment,
// ask again until nothing comes or the window is full) and checks the whole
// sequence of assignments, "piece@parent".
func TestPickPolicy(t *testing.T) {
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name        string
		concurrency int // 4 when 0
		parents     []parentSpec
		unknown     []int // pieces whose digest is not known
		stored      []int
		inflight    []int
		urgent      []int
		deferred    map[int]time.Duration // from t0
		lazy        bool
		noPrefetch  bool
		now         time.Duration // clock, from t0
		start       int           // where the scan starts
		want        []string
	}{
		{
			name: "rarest first, each from its least busy holder",
			parents: []parentSpec{
				{id: "A", has: []int{0, 1, 2, 3}},
				{id: "B", has: []int{0, 1}},
				{id: "C", has: []int{0}},
			},
			want: []string{"2@A", "3@A", "1@B", "0@C"},
		},
		{
			name:  "ties go to the first piece from where the scan starts",
			start: 3, concurrency: 2,
			parents: []parentSpec{{id: "A", has: allPieces}},
			want:    []string{"3@A", "4@A"},
		},
		{
			name:     "stored and in-flight pieces are not picked again",
			parents:  []parentSpec{{id: "A", has: []int{0, 1, 2}, inflight: 1}},
			stored:   []int{0},
			inflight: []int{1},
			want:     []string{"2@A"},
		},
		{
			name:        "the seed only gets what no parent holds, at most two while parents hold pieces",
			concurrency: 8,
			parents: []parentSpec{
				{id: "A", has: []int{0}},
				{id: "seed", seed: true, has: allPieces},
			},
			want: []string{"0@A", "1@seed", "2@seed"},
		},
		{
			name:        "a saturated parent keeps its pieces away from the seed",
			concurrency: 8,
			parents: []parentSpec{
				{id: "A", has: []int{0, 1, 2, 3}, inflight: maxInflightPerParent},
				{id: "seed", seed: true, has: allPieces},
			},
			inflight: []int{1, 2, 3},
			want:     []string{"4@seed", "5@seed"},
		},
		{
			name:    "the seed gets the whole window when it is the only source",
			parents: []parentSpec{{id: "seed", seed: true, has: allPieces}},
			want:    []string{"0@seed", "1@seed", "2@seed", "3@seed"},
		},
		{
			name:    "the seed is asked for pieces it is fetching too (it answers once they are stored)",
			unknown: allPieces,
			parents: []parentSpec{{id: "seed", seed: true, has: []int{0}, relaying: []int{1, 2}}},
			want:    []string{"0@seed", "1@seed", "2@seed"},
		},
		{
			name: "pieces with unknown digests come only from the seed",
			parents: []parentSpec{
				{id: "A", has: []int{0, 1}},
				{id: "seed", seed: true, has: []int{0}},
			},
			unknown: []int{0, 2, 3, 4, 5},
			want:    []string{"1@A", "0@seed"},
		},
		{
			name: "urgent pieces before the rarest",
			parents: []parentSpec{
				{id: "A", has: allPieces},
				{id: "B", has: []int{0}},
			},
			urgent: []int{5},
			// While the read waits for 5, one background piece at most.
			want: []string{"5@A", "1@A"},
		},
		{
			name:    "urgent pieces after the read is stored leave the window to the background",
			parents: []parentSpec{{id: "A", has: allPieces}},
			stored:  []int{5},
			urgent:  []int{5},
			want:    []string{"0@A", "1@A", "2@A"},
		},
		{
			name:     "a read waiting for an in-flight piece holds background work at one piece",
			parents:  []parentSpec{{id: "A", has: allPieces, inflight: 1}},
			inflight: []int{2},
			urgent:   []int{2},
			want:     []string{"0@A"},
		},
		{
			name:     "background already in flight: a read is served, nothing more starts",
			parents:  []parentSpec{{id: "A", has: allPieces, inflight: 1}, {id: "B", has: allPieces}},
			inflight: []int{0},
			urgent:   []int{4, 5},
			want:     []string{"4@B", "5@A"},
		},
		{
			name:        "an urgent piece with an unknown digest goes to the seed, past its limit and its bitmap",
			concurrency: 8,
			parents: []parentSpec{
				{id: "A", has: []int{3}},
				{id: "seed", seed: true, inflight: 5},
			},
			inflight: []int{0, 1, 2, 4, 5},
			unknown:  []int{3},
			urgent:   []int{3},
			want:     []string{"3@seed"},
		},
		{
			name: "urgent pieces a saturated peer holds wait for its slots, not the seed",
			parents: []parentSpec{
				{id: "A", has: allPieces, inflight: 3},
				{id: "seed", seed: true, has: allPieces},
			},
			inflight: []int{0, 1, 2},
			urgent:   []int{3, 4, 5},
			want:     nil,
		},
		{
			name:       "without prefetch only urgent pieces are fetched",
			noPrefetch: true,
			parents:    []parentSpec{{id: "A", has: allPieces}},
			urgent:     []int{4},
			want:       []string{"4@A"},
		},
		{
			name:    "a lazy download keeps a slot free for reads",
			lazy:    true,
			parents: []parentSpec{{id: "A", has: allPieces}},
			want:    []string{"0@A", "1@A", "2@A"},
		},
		{
			name: "a lazy download gives its free slot to a read",
			lazy: true,
			parents: []parentSpec{
				{id: "A", has: allPieces, inflight: 3},
				{id: "B", has: allPieces},
			},
			inflight: []int{0, 1, 2},
			urgent:   []int{5},
			want:     []string{"5@B"},
		},
		{
			name: "a busy parent is skipped while it backs off",
			parents: []parentSpec{
				{id: "A", has: []int{0}, busyFor: time.Second},
				{id: "seed", seed: true, has: []int{0}},
			},
			want: []string{"0@seed"},
		},
		{
			name: "a busy parent is used again once its backoff ends",
			now:  time.Second,
			parents: []parentSpec{
				{id: "A", has: []int{0}, busyFor: time.Second},
				{id: "seed", seed: true, has: []int{0}},
			},
			want: []string{"0@A"},
		},
		{
			name:     "the seed is not asked for a deferred piece",
			parents:  []parentSpec{{id: "seed", seed: true, has: []int{0, 1}}},
			deferred: map[int]time.Duration{0: 200 * time.Millisecond},
			now:      199 * time.Millisecond,
			want:     []string{"1@seed"},
		},
		{
			name:     "the seed is asked for a deferred piece once the deferral ends",
			parents:  []parentSpec{{id: "seed", seed: true, has: []int{0, 1}}},
			deferred: map[int]time.Duration{0: 200 * time.Millisecond},
			now:      200 * time.Millisecond,
			want:     []string{"0@seed", "1@seed"},
		},
		{
			name: "a deferred piece still comes from a peer",
			parents: []parentSpec{
				{id: "A", has: []int{0}},
				{id: "seed", seed: true, has: []int{0}},
			},
			deferred: map[int]time.Duration{0: time.Second},
			want:     []string{"0@A"},
		},
		{
			name: "dropped parents and a backing-off seed are not used, even for reads",
			parents: []parentSpec{
				{id: "A", has: allPieces, dropped: true},
				{id: "seed", seed: true, has: allPieces, busyFor: time.Second},
			},
			urgent: []int{2},
			want:   nil,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conc := tc.concurrency
			if conc == 0 {
				conc = 4
			}
			now := t0.Add(tc.now)
			pp := pickPolicy{concurrency: conc, now: func() time.Time { return now }, start: func(n int) int {
				if n != pickPieces {
					t.Errorf("scan start asked for %d pieces, want %d", n, pickPieces)
				}
				return tc.start
			}}
			var parents []*parent
			for _, ps := range tc.parents {
				par := &parent{id: ps.id, seed: ps.seed, bitmap: manifest.NewBitmap(pickPieces),
					inflight: ps.inflight, dropped: ps.dropped, busyUntil: t0.Add(ps.busyFor)}
				for _, i := range ps.has {
					par.bitmap.Set(i)
					par.count++
				}
				for _, i := range ps.relaying {
					if par.relaying == nil {
						par.relaying = manifest.NewBitmap(pickPieces)
					}
					par.relaying.Set(i)
					par.relayCount++
				}
				parents = append(parents, par)
			}
			states := make([]pieceState, pickPieces)
			for _, i := range tc.stored {
				states[i] = pieceStored
			}
			for _, i := range tc.inflight {
				states[i] = pieceInFlight
			}
			background := 0
			for _, i := range tc.inflight {
				if !slices.Contains(tc.urgent, i) {
					background++
				}
			}
			v := &pickView{numPieces: pickPieces, parents: parents, inflight: len(tc.inflight), background: background,
				state:       func(i int) pieceState { return states[i] },
				digestKnown: func(i int) bool { return !slices.Contains(tc.unknown, i) },
				urgent:      map[int]int{}, deferred: map[int]time.Time{},
				lazy: tc.lazy, prefetch: !tc.noPrefetch}
			for _, i := range tc.urgent {
				v.urgent[i] = 1
			}
			for i, d := range tc.deferred {
				v.deferred[i] = t0.Add(d)
			}

			var got []string
			for v.inflight < conc {
				i, par := pp.next(v)
				if par == nil {
					break
				}
				if states[i] != pieceMissing {
					t.Fatalf("picked piece %d in state %s (after %v)", i, states[i], got)
				}
				states[i] = pieceInFlight
				par.inflight++
				v.inflight++
				if v.urgent[i] == 0 {
					v.background++
				}
				got = append(got, fmt.Sprintf("%d@%s", i, par.id))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("assignments %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPickPolicyRandomStart(t *testing.T) {
	pp := newPickPolicy(4)
	seen := map[int]bool{}
	for range 1000 {
		s := pp.start(3)
		if s < 0 || s > 3 {
			t.Fatalf("scan start %d outside [0, 3]", s)
		}
		seen[s] = true
	}
	if len(seen) < 2 {
		t.Errorf("scan start always %v, want it spread", seen)
	}
}
