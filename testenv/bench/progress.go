package bench

import (
	"context"
	"os"
	"path/filepath"
	"time"
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

// countStoredPieces counts the pieces a peer's store holds, from its
// on-disk piece records (DATA_DIR/tasks/*/pieces: one 32-byte digest per
// piece, all zeros while absent; the layout package cache uses). A store
// it cannot read counts 0.
func countStoredPieces(dataDir string) int {
	matches, _ := filepath.Glob(filepath.Join(dataDir, "tasks", "*", "pieces"))
	n := 0
	for _, m := range matches {
		if b, err := os.ReadFile(m); err == nil {
			n += countRecords(b)
		}
	}
	return n
}

// countRecords counts the non-zero 32-byte records in b.
func countRecords(b []byte) int {
	n := 0
	for i := 0; i+32 <= len(b); i += 32 {
		for _, x := range b[i : i+32] {
			if x != 0 {
				n++
				break
			}
		}
	}
	return n
}

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
