package supernode

import (
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/cache"
)

// After a failover (or a restart) a supernode gets registrations for a
// task it does not have from peers that already hold much of it; they
// re-report their pieces on their next sync. The new seed's fill puts off
// the pieces live peers hold and fetches from the origin only what no peer
// has. The seed still vouches only for bytes it fetched itself: digests
// are published only for pieces it holds, SeedDone only once it holds
// everything, and children keep the digests they learnt from the previous
// owner, which is how they can take the put-off pieces from each other.
//
// A put-off piece is fetched from the origin when
//   - no live peer holding it remains (they left, expired or were isolated),
//   - a peer asks the seed for it (on demand, as for any missing piece),
//   - a downloading peer that does not know every digest has reported no
//     progress for deferStall (it may need a piece only the seed can vouch
//     for: a newcomer, or a peer whose last sync with the old owner
//     predates that piece), which ends the deferral for the whole task,
//   - or deferMax after the task was created here, so that the seed
//     always ends up with the whole content.
//
// It is off unless Config.DeferHeldPieces: in testenv/e2e's kill test the
// saving was small (peers held few pieces at the kill, and peers that had
// not learnt a put-off piece's digest stall until the deferral ends), and
// once the deferral ends the fill and on-demand fetches of the same
// put-off pieces (which stalled peers all ask for at once) race, so a few
// pieces were fetched twice: after the kill the origin served 0.9 to 1.3
// times the file against exactly 1.0 without it.
const (
	deferStall = 2 * time.Second
	deferMax   = 2 * time.Minute
	deferPoll  = 500 * time.Millisecond
)

// deferral is a seed task's putting off of pieces peers hold. Guarded by
// the seed task's mu.
type deferral struct {
	until    time.Time            // zero once ended
	wake     chan struct{}        // closed when it ends
	progress map[string]time.Time // peer ID -> last sync with progress (or first sync)
}

func (d *deferral) start(now time.Time) {
	d.until, d.wake = now.Add(deferMax), make(chan struct{})
}

func (d *deferral) activeLocked(now time.Time) bool {
	return !d.until.IsZero() && now.Before(d.until)
}

// end stops the deferral: the fill fetches every missing piece.
func (st *seedTask) endDeferral() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.def.until.IsZero() {
		return false
	}
	st.def.until, st.def.progress = time.Time{}, nil
	close(st.def.wake)
	return true
}

// held reports whether a live peer holds piece n of task id.
func (s *seeder) held(id string, n int) bool {
	return s.holders != nil && s.holders(id, n) > 0
}

// deferredHeld reports whether the deferral is on and a piece the seed
// lacks is held by a peer, i.e. the fill left pieces for later.
func (s *seeder) deferredHeld(st *seedTask, t *cache.Task) bool {
	st.mu.Lock()
	active := st.def.activeLocked(time.Now())
	st.mu.Unlock()
	if !active {
		return false
	}
	for i := 0; i < t.NumPieces(); i++ {
		if !t.Has(i) && s.held(st.id, i) {
			return true
		}
	}
	return false
}

// waitDeferred waits until the put-off pieces should be looked at again.
// It returns false when the task was closed or the seeder stops.
func (s *seeder) waitDeferred(st *seedTask) bool {
	st.mu.Lock()
	wake, closed := st.def.wake, st.closed
	st.mu.Unlock()
	if closed {
		return false
	}
	timer := time.NewTimer(deferPoll)
	defer timer.Stop()
	select {
	case <-s.ctx.Done():
		return false
	case <-wake:
	case <-timer.C:
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return !st.closed
}

// noteSync watches a deferring task's downloading peers for a stall (see
// above). progressed is true when the sync reported pieces or done;
// knownDigests is how many digests the peer knows.
func (s *seeder) noteSync(st *seedTask, peerID string, progressed bool, knownDigests, numPieces int) {
	now := time.Now()
	st.mu.Lock()
	if !st.def.activeLocked(now) {
		st.mu.Unlock()
		return
	}
	if st.def.progress == nil {
		st.def.progress = map[string]time.Time{}
	}
	last, seen := st.def.progress[peerID]
	if progressed || !seen || knownDigests >= numPieces {
		st.def.progress[peerID] = now
		st.mu.Unlock()
		return
	}
	stalled := now.Sub(last) >= deferStall
	st.mu.Unlock()
	if stalled && st.endDeferral() {
		s.logFor(st).WithFields(logrus.Fields{"peer": peerID, "knownDigests": knownDigests}).
			Info("seed: a peer made no progress; fetching the pieces put off for peers")
	}
}
