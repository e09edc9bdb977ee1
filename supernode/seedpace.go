package supernode

// Pacing the seed's fill to the swarm. A seed whose background fill runs
// far ahead of its children holds pieces that exist nowhere else; when its
// supernode dies (kill -9 of a task's owner) they die with it, and the next
// owner fetches them from the origin again. So the fill may hold at most
// lead pieces that exist only here:
//
//	exclusive = |{p : fetched by this seed (fill or on demand) since it
//	                  opened the task, not yet sent whole to any child,
//	                  and held by no live peer the scheduler knows}|
//	          + pieces the fill has started and not yet stored
//	lead      = max(SeedLead, ceil(paceMinLeadBytes / pieceSize))
//	the fill starts its next piece when
//	    exclusive < lead  or  not paced
//	paced     = SeedLead > 0 and the task is not being preheated
//	            and the origin serves ranges
//	            and some peer of the task is still downloading
//	            and the swarm moved within paceQuiet (a piece of the task
//	                sent whole by the seed, or reported held by a peer)
//
// The fill's range workers wait in seedSink.Claim, before they claim the
// piece they picked (so an on-demand fetch of that piece never waits
// behind the pacing). A waiting fill wakes when a piece is sent whole or a
// peer reports pieces, and re-checks every pacePoll; the seeder's context
// ends it.
// On-demand fetches (a child asks for a piece the seed lacks, for a
// reader) are never paced: a child waits for them. So:
//
//   - a lone peer takes each piece as it arrives (it asks for the pieces
//     the fill is fetching, which stream to it: the seed's relay), and its
//     last byte goes out once the piece is stored, which frees the fill to
//     start the next: the seed stays lead pieces ahead of it, and a
//     reader's urgent piece is fetched at once on demand;
//   - a preheat, or a task whose peers are all done or gone, is not
//     paced: the point is to have the whole content here;
//   - a lazy task has no fill (on-demand only), so nothing to pace; once
//     a full download registers, its fill is paced like any other;
//   - a failover seed fetches only pieces no peer has digests for
//     (vouch.go) and holds at most lead of them ahead of the swarm;
//   - registered peers that fetch nothing (gone, stuck, or only reading
//     a few pieces) do not hold the fill: after paceQuiet without any
//     piece moving, it runs unpaced until the swarm moves again.
//
// Pieces the fill is fetching count: the origin has sent (or is sending)
// their bytes, and they die with the seed. So when the swarm takes in
// pieces as fast as the origin gives them, at most lead of the
// OriginConcurrency range requests are in flight: lead trades origin
// parallelism (for an origin whose throughput is bound by latency) against
// the bytes a dying owner loses. Measured on loopback (TestFleetOwnerKilled,
// README "Many supernodes") the loss is about lead pieces: lead 2, 3, 4
// and 8 lost 1.6-2.0, 2.5-3.8, 1.7-4.0 and 7.8-8.0 pieces. Without ranges
// the fill is one stream, which cannot wait without the origin timing it
// out: it is not paced. With SeedLead L a failover so costs the file once
// plus about L pieces (plus the on-demand fetches the owner was running).

import (
	"time"

	"github.com/damselfly-p2p/damselfly/cache"
)

// DefaultSeedLead is how many pieces no peer holds the seed's fill may
// fetch ahead of the swarm (Config.SeedLead, --seed-lead): 3 of the 4
// default origin requests stay in flight, and a failover loses under the
// issue's bound of 4 pieces.
const DefaultSeedLead = 3

const (
	// paceMinLeadBytes is the least lead in bytes: with small pieces
	// the lead is at least this many bytes' worth of pieces, so that
	// the origin's latency does not starve a fast swarm.
	paceMinLeadBytes = 3 << 20
	// paceQuiet is how long the swarm may go without a piece moving
	// before the fill stops waiting for it.
	paceQuiet = 2 * time.Second
)

// pacePoll is how often a waiting fill re-checks without a wake-up
// (peers' departures, paceQuiet); a variable for tests.
var pacePoll = 100 * time.Millisecond

// paceState is what a seed task knows for pacing its fill. Guarded by the
// seed task's mu.
type paceState struct {
	unpaced  bool             // a preheat wants the whole content here
	pending  map[int]struct{} // fetched here, not yet sent whole nor known held elsewhere
	sent     []bool           // per piece: sent whole to a child at least once
	inflight int              // pieces the fill started and has not stored
	active   time.Time        // last piece sent whole or reported held
	wake     chan struct{}    // closed at the next event a waiting fill wants
	waited   time.Duration    // total time the fill waited
}

// leadPieces is the lead in pieces for lead (SeedLead, <= 0: unpaced) and
// the task's piece size.
func leadPieces(lead int, pieceSize int64) int {
	if lead <= 0 {
		return 0
	}
	if pieceSize > 0 {
		lead = max(lead, int((paceMinLeadBytes+pieceSize-1)/pieceSize))
	}
	return lead
}

// paceAdmit is the pacing rule (see the comment at the top of the file):
// whether the fill may start another piece.
func paceAdmit(lead, exclusive, downloading int, quiet, unpaced bool) bool {
	return !paced(lead, downloading, quiet, unpaced) || exclusive < lead
}

// paced is the rule's "paced" (see the comment at the top of the file).
func paced(lead, downloading int, quiet, unpaced bool) bool {
	return lead > 0 && !unpaced && downloading > 0 && !quiet
}

// wakeLocked wakes a waiting fill. Caller holds st.mu.
func (st *seedTask) wakeLocked() {
	if st.pace.wake != nil {
		close(st.pace.wake)
		st.pace.wake = nil
	}
}

// wakeChLocked is the channel closed at the next wake-up. Caller holds
// st.mu.
func (st *seedTask) wakeChLocked() <-chan struct{} {
	if st.pace.wake == nil {
		st.pace.wake = make(chan struct{})
	}
	return st.pace.wake
}

// stored records that the seed stored piece n it fetched from the origin;
// fill says the fill (not an on-demand fetch) fetched it.
func (st *seedTask) stored(n int, fill bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if fill && st.pace.inflight > 0 {
		st.pace.inflight--
	}
	if n < len(st.pace.sent) && st.pace.sent[n] {
		return
	}
	if st.pace.pending == nil {
		st.pace.pending = map[int]struct{}{}
	}
	st.pace.pending[n] = struct{}{}
}

// sentWhole records that piece n was sent whole to a child.
func (st *seedTask) sentWhole(n, numPieces int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if n < 0 || n >= numPieces {
		return
	}
	if len(st.pace.sent) != numPieces {
		st.pace.sent = make([]bool, numPieces)
	}
	st.pace.sent[n] = true
	st.pace.active = time.Now()
	if _, ok := st.pace.pending[n]; ok {
		delete(st.pace.pending, n)
		st.wakeLocked()
	}
}

// unpace turns pacing off for the task (a preheat wants all of it).
func (st *seedTask) unpace() {
	st.mu.Lock()
	st.pace.unpaced = true
	st.wakeLocked()
	st.mu.Unlock()
}

// resetPace forgets the fill's started pieces (a fill attempt begins or
// ends).
func (st *seedTask) resetPace() {
	st.mu.Lock()
	st.pace.inflight = 0
	st.mu.Unlock()
}

// forgetPaced forgets which pieces were fetched and sent (the content
// changed at the origin; its pieces are fetched again).
func (st *seedTask) forgetPaced() {
	st.mu.Lock()
	st.pace.pending, st.pace.sent = nil, nil
	st.mu.Unlock()
}

// reported tells the seed that a peer of task id reported pieces.
func (s *seeder) reported(id string) {
	st := s.get(id)
	if st == nil {
		return
	}
	st.mu.Lock()
	st.pace.active = time.Now()
	if len(st.pace.pending) > 0 {
		st.wakeLocked()
	}
	st.mu.Unlock()
}

// exclusive prunes st's pending pieces that a live peer now holds and
// returns how many pieces exist only here, counting those the fill is
// fetching.
func (s *seeder) exclusive(st *seedTask) int {
	st.mu.Lock()
	cand := make([]int, 0, len(st.pace.pending))
	for n := range st.pace.pending {
		cand = append(cand, n)
	}
	st.mu.Unlock()
	var held []int
	if s.holdersOf != nil {
		for _, n := range cand {
			if len(s.holdersOf(st.id, n, "", 1)) > 0 {
				held = append(held, n)
			}
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, n := range held {
		delete(st.pace.pending, n)
	}
	return len(st.pace.pending) + st.pace.inflight
}

// paceFill waits, if the pacing rule says so, before the fill of st
// starts piece n of t (the piece its range worker picked, see seedSink.
// Claim), and counts the piece as started (counted true). It returns
// without counting when the seeder's context ends (the fill then fails on
// it) or when piece n no longer needs the fill: stored, or claimed by an
// on-demand fetch, while the fill waited.
func (s *seeder) paceFill(st *seedTask, t *cache.Task, n int) (counted bool) {
	lead := leadPieces(s.lead, t.Layout().PieceSize)
	var began time.Time
	for {
		downloading := 0
		if s.swarm != nil {
			peers, done := s.swarm(st.id)
			downloading = peers - done
		}
		st.mu.Lock()
		quiet := time.Since(st.pace.active) > paceQuiet
		unpaced := st.pace.unpaced || st.state == stateFailed || st.closed
		st.mu.Unlock()
		excl := 0
		if paced(lead, downloading, quiet, unpaced) {
			// Paced: count (the pieces held elsewhere only then, as
			// an unpaced fill's list may be long).
			excl = s.exclusive(st)
		}
		st.mu.Lock()
		admit := paceAdmit(lead, excl, downloading, quiet, unpaced)
		if _, claimed := st.claimed[n]; !admit && (t.Has(n) || claimed) {
			st.mu.Unlock()
			return false // the piece came another way: nothing to start
		}
		if admit {
			st.pace.inflight++
			if !began.IsZero() {
				st.pace.waited += time.Since(began)
			}
			st.mu.Unlock()
			return true
		}
		wake := st.wakeChLocked()
		st.mu.Unlock()
		if began.IsZero() {
			began = time.Now()
		}
		select {
		case <-wake:
		case <-time.After(pacePoll):
		case <-s.ctx.Done():
			return false
		}
	}
}

// unstarted takes back a piece paceFill counted that the fill did not
// start after all (another fetcher holds it, or it is stored).
func (st *seedTask) unstarted() {
	st.mu.Lock()
	if st.pace.inflight > 0 {
		st.pace.inflight--
	}
	st.wakeLocked()
	st.mu.Unlock()
}

// waitedPaced is how long the fill of st has waited for the swarm.
func (st *seedTask) waitedPaced() time.Duration {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.pace.waited
}

// PieceSent implements upload.SentNotifier: piece n of taskID was sent
// whole to a child.
func (k seedTasks) PieceSent(taskID string, n int) {
	st := k.s.get(taskID)
	if st == nil {
		return
	}
	_, t, _ := st.snapshot()
	if t == nil {
		return
	}
	st.sentWhole(n, t.NumPieces())
}
