package p2p

import (
	"maps"
	"math/rand/v2"
	"slices"
	"time"
)

// pieceState is where one piece of a download stands:
//
//	missing --(dispatch assigns it to a parent)--> inFlight
//	inFlight --(verified and written to the store)--> stored (final)
//	inFlight --(any failure: error, 404, 503, corrupt, cancelled)--> missing
//
// A missing piece may additionally be deferred (the seed answered "busy:
// piece", meaning it just gave the piece to others: the seed is not asked
// again until the deferral ends, while peers still may be) and urgent (a
// lazy reader waits for it). Stored is read from the store itself, not
// mirrored: another download of the same task in this peer (a Lazy next to
// a Download) may store pieces too.
type pieceState uint8

const (
	pieceMissing pieceState = iota
	pieceInFlight
	pieceStored
)

func (s pieceState) String() string {
	switch s {
	case pieceMissing:
		return "missing"
	case pieceInFlight:
		return "in flight"
	case pieceStored:
		return "stored"
	}
	return "unknown"
}

// Limits on how hard one child leans on one parent.
const (
	maxInflightPerParent = 3
	maxInflightFromSeed  = 2
	// maxBackgroundWhileReading is how many pieces nobody waits for may be
	// in flight while a reader waits: background work yields its window
	// (and its share of the links) to reads.
	maxBackgroundWhileReading = 1
)

// pickView is what the pick policy sees of a download at one instant. The
// policy only reads it; the dispatcher applies each assignment (the piece
// goes in flight, the parent's and the total in-flight counts go up) before
// it asks for the next one.
type pickView struct {
	numPieces int
	// state and digestKnown describe piece i.
	state       func(i int) pieceState
	digestKnown func(i int) bool
	// parents in any order, the seed (if any) among them.
	parents []*parent
	// urgent counts readers waiting for each piece.
	urgent map[int]int
	// deferred holds, per piece, until when the seed is not to be asked.
	deferred map[int]time.Time
	// inflight is how many pieces are in flight in all; background how
	// many of them nobody waits for.
	inflight, background int
	// lazy downloads keep a slot free for reads; prefetch allows fetching
	// pieces nobody waits for.
	lazy, prefetch bool
}

// pickPolicy chooses the next piece to fetch and the parent to fetch it
// from. Rules, in order:
//
//  1. Eligible parents: not dropped and not backing off (now >= busyUntil).
//     A peer parent holding (or relaying, see relay.go) at least one piece
//     is a holder; a holder with fewer than maxInflightPerParent (3)
//     requests in flight is usable. A parent relaying a piece counts as
//     holding it.
//  2. Urgent pieces first (a reader waits, or readahead asked; lowest
//     piece first, not in flight, not stored): from the usable peer parent
//     holding it with the fewest requests in flight if its digest is
//     known; when only saturated holders have it, the piece waits for one
//     of their slots (a sequential reader's readahead must not move a
//     file's worth of pieces onto the seed); else from the seed whatever
//     its bitmap and in-flight count (it fetches the piece from the
//     origin on demand).
//  3. Without prefetch nothing else is fetched. A lazy download stops at
//     concurrency-1 pieces in flight, keeping a slot for the next read.
//     While a reader waits for a piece (urgent and not stored, in flight
//     or not), at most maxBackgroundWhileReading (1) piece nobody waits
//     for is in flight: background work yields to reads.
//  4. Rarest first: among missing pieces with a known digest, the one held
//     by the fewest usable peer parents, from the least busy of them (ties
//     go to the first found; the scan starts at a random piece so that
//     children spread over the pieces).
//  5. The seed only when no usable peer parent has any such piece: the
//     first piece (in scan order) the seed has or is fetching (it answers
//     once the piece is stored), that is not deferred, and
//     either whose digest is unknown (only the seed vouches for it) or that
//     no holder has (not even a saturated one). The seed takes at most
//     maxInflightFromSeed (2) requests while holders exist, the whole
//     window (concurrency) when it is the only source.
//
// now is the clock of the backoff and deferral rules; start gives where the
// scan begins, in [0, n].
type pickPolicy struct {
	concurrency int
	now         func() time.Time
	start       func(n int) int
}

func newPickPolicy(concurrency int) pickPolicy {
	return pickPolicy{concurrency: concurrency, now: time.Now, start: func(n int) int { return rand.IntN(n + 1) }}
}

// next returns the next assignment, or a nil parent when nothing should
// be fetched now.
func (pp pickPolicy) next(v *pickView) (int, *parent) {
	now := pp.now()
	var seed *parent
	usable := make([]*parent, 0, len(v.parents))
	// holders are live peer parents even if saturated: a piece one of them
	// holds is not worth the seed's upload.
	holders := make([]*parent, 0, len(v.parents))
	for _, par := range v.parents {
		if par.dropped || now.Before(par.busyUntil) {
			continue
		}
		if par.seed {
			seed = par
			continue
		}
		if par.offers() {
			holders = append(holders, par)
			if par.inflight < maxInflightPerParent {
				usable = append(usable, par)
			}
		}
	}
	if i, par := pp.urgent(v, usable, holders, seed); par != nil {
		return i, par
	}
	if !v.prefetch {
		return -1, nil
	}
	if v.lazy && v.inflight >= pp.concurrency-1 {
		return -1, nil
	}
	if v.background >= maxBackgroundWhileReading && readsWaiting(v) {
		return -1, nil
	}
	i, par, seedPiece := pp.rarest(v, usable, holders, seed, now)
	if par != nil {
		return i, par
	}
	seedLimit := maxInflightFromSeed
	if len(holders) == 0 {
		seedLimit = pp.concurrency
	}
	if seedPiece >= 0 && seed.inflight < seedLimit {
		return seedPiece, seed
	}
	return -1, nil
}

// readsWaiting reports whether a reader waits for a piece not yet stored.
func readsWaiting(v *pickView) bool {
	for i := range v.urgent {
		if v.state(i) != pieceStored {
			return true
		}
	}
	return false
}

// urgent applies rule 2, lowest piece first (a reader's earlier bytes
// first; also deterministic).
func (pp pickPolicy) urgent(v *pickView, usable, holders []*parent, seed *parent) (int, *parent) {
	for _, i := range slices.Sorted(maps.Keys(v.urgent)) {
		if v.state(i) != pieceMissing {
			continue
		}
		var choice *parent
		if v.digestKnown(i) {
			choice = leastBusyHolder(usable, i)
			if choice == nil && heldBy(holders, i) {
				continue // a saturated peer holds it: wait for its slot
			}
		}
		if choice == nil {
			choice = seed
		}
		if choice != nil {
			return i, choice
		}
	}
	return -1, nil
}

// rarest applies rule 4 and finds rule 5's candidate for the seed
// (seedPiece, -1 for none).
func (pp pickPolicy) rarest(v *pickView, usable, holders []*parent, seed *parent, now time.Time) (piece int, par *parent, seedPiece int) {
	n := v.numPieces
	bestPiece, bestCount := -1, 1<<30
	var bestParent *parent
	seedPiece = -1
	start := pp.start(n)
	for k := 0; k < n; k++ {
		i := (start + k) % n
		if v.state(i) != pieceMissing {
			continue
		}
		seedOK := seed != nil && seed.has(i) && !now.Before(v.deferred[i])
		if !v.digestKnown(i) {
			// Only the seed vouches for unknown digests.
			if seedPiece < 0 && seedOK {
				seedPiece = i
			}
			continue
		}
		count := 0
		for _, par := range usable {
			if par.has(i) {
				count++
			}
		}
		if choice := leastBusyHolder(usable, i); choice != nil {
			if count < bestCount {
				bestPiece, bestCount, bestParent = i, count, choice
			}
			continue
		}
		if seedPiece < 0 && seedOK && !heldBy(holders, i) {
			seedPiece = i
		}
	}
	return bestPiece, bestParent, seedPiece
}

// leastBusyHolder returns the parent among ps holding piece i with the
// fewest requests in flight (the first such), or nil.
func leastBusyHolder(ps []*parent, i int) *parent {
	var choice *parent
	for _, par := range ps {
		if par.has(i) && (choice == nil || par.inflight < choice.inflight) {
			choice = par
		}
	}
	return choice
}

func heldBy(ps []*parent, i int) bool {
	for _, par := range ps {
		if par.has(i) {
			return true
		}
	}
	return false
}
