package bench

import (
	"context"
	"time"

	"github.com/damselfly-p2p/damselfly/cache"
)

// ProgressPoint is the swarm's state at one moment of a run.
type ProgressPoint struct {
	// T is seconds since the first peer was started.
	T float64 `json:"t"`
	// Pieces is how many pieces all peers together hold.
	Pieces int `json:"pieces"`
}

// progressEvery is how often the swarm's progress is sampled.
const progressEvery = 250 * time.Millisecond

// countStoredPieces counts the pieces a peer's store holds.
func countStoredPieces(dataDir string) int { return cache.CountPresent(dataDir) }

// sampleProgress records the pieces held by the stores in dirs every
// progressEvery from t0 until ctx ends, and returns the samples (with a
// last one taken at the end) and, per store, when it was first seen holding
// all numPieces pieces (zero time if never).
func sampleProgress(ctx context.Context, t0 time.Time, dirs []string, numPieces int) ([]ProgressPoint, []time.Time) {
	var out []ProgressPoint
	full := make([]time.Time, len(dirs))
	sample := func() {
		total := 0
		for i, d := range dirs {
			n := countStoredPieces(d)
			total += n
			if n >= numPieces && full[i].IsZero() {
				full[i] = time.Now()
			}
		}
		out = append(out, ProgressPoint{T: time.Since(t0).Seconds(), Pieces: total})
	}
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			sample()
			return out, full
		case <-tick.C:
			sample()
		}
	}
}
