package scheduler

// Candidate is what the evaluator knows about a prospective parent.
type Candidate struct {
	// Pieces is how many pieces the parent holds; NumPieces the task's total.
	Pieces, NumPieces int
	// Load is how many children currently use the parent; Slots how many
	// uploads it serves at once.
	Load, Slots int
	// SameIDC and SameRack compare the parent's locality labels with the
	// child's (unset labels never match).
	SameIDC, SameRack bool
	// Failures counts recent failures reported against the parent.
	Failures int
}

// Weights of the score terms; they sum to 1.
const (
	weightPieces      = 0.45
	weightFree        = 0.30
	weightLocality    = 0.15
	weightReliability = 0.10
)

// Score rates a candidate parent in [0, 1]; higher is better. It is a pure
// function of its argument:
//
//	score = 0.45*pieces + 0.30*free + 0.15*locality + 0.10*reliability
//
//	pieces      = Pieces / NumPieces          (what it can serve now)
//	free        = 1 - Load/Slots, clamped      (spare upload capacity)
//	locality    = 1 same rack, 0.5 same IDC, 0 otherwise
//	reliability = 1 / (1 + Failures)
//
// Pieces dominates because a parent that holds nothing serves nothing yet;
// free upload capacity comes next so that load spreads over the swarm
// instead of piling on the first complete peers.
func Score(c Candidate) float64 {
	pieces := 0.0
	if c.NumPieces > 0 {
		pieces = float64(c.Pieces) / float64(c.NumPieces)
	}
	free := 1.0
	if c.Slots > 0 {
		free = 1 - float64(c.Load)/float64(c.Slots)
		if free < 0 {
			free = 0
		}
	}
	locality := 0.0
	switch {
	case c.SameIDC && c.SameRack:
		locality = 1
	case c.SameIDC:
		locality = 0.5
	}
	reliability := 1 / (1 + float64(c.Failures))
	return weightPieces*pieces + weightFree*free + weightLocality*locality + weightReliability*reliability
}
