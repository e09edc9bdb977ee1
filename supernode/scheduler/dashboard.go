package scheduler

import (
	"cmp"
	"slices"
)

// Read-only views of the swarm for the supernode's dashboard.

// PeerProgress is one peer's part in a task as the scheduler last heard it.
type PeerProgress struct {
	PeerID string
	// Pieces is how many pieces the peer holds; Done whether it holds all.
	Pieces int
	Done   bool
	// FromPeers and FromSeed are the peer's cumulative byte counters for
	// the task, as it last reported them.
	FromPeers, FromSeed int64
}

// TaskView is one task's swarm: its piece count and every peer in it,
// sorted by peer ID.
type TaskView struct {
	TaskID    string
	NumPieces int
	Peers     []PeerProgress
}

// TaskViews returns a snapshot of every task the scheduler knows, keyed
// by task ID.
func (s *Scheduler) TaskViews() map[string]TaskView {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]TaskView, len(s.tasks))
	for id, t := range s.tasks {
		v := TaskView{TaskID: id, NumPieces: t.numPieces, Peers: make([]PeerProgress, 0, len(t.peers))}
		for _, pt := range t.peers {
			v.Peers = append(v.Peers, PeerProgress{PeerID: pt.peer.id, Pieces: pt.count, Done: pt.done,
				FromPeers: pt.fromPeers, FromSeed: pt.fromSeed})
		}
		slices.SortFunc(v.Peers, func(a, b PeerProgress) int { return cmp.Compare(a.PeerID, b.PeerID) })
		out[id] = v
	}
	return out
}

// PieceHolders returns, for each piece of the task, how many of its peers
// hold it, and how many peers the task has; ok is false for an unknown
// task.
func (s *Scheduler) PieceHolders(taskID string) (holders []int, peers int, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tasks[taskID]
	if t == nil {
		return nil, 0, false
	}
	holders = make([]int, t.numPieces)
	for _, pt := range t.peers {
		if pt.done {
			for i := range holders {
				holders[i]++
			}
			continue
		}
		for i := range holders {
			if pt.bitmap.Has(i) {
				holders[i]++
			}
		}
	}
	return holders, len(t.peers), true
}
