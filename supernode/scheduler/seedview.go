package scheduler

import "github.com/damselfly-p2p/damselfly/wire"

// HoldersOf names up to max live peers of the task, other than exclude,
// that hold piece n: a peer counts while it is registered, not isolated
// and not reported unreachable; a peer that finished the task holds every
// piece. The least loaded come first. The seed sends children asking for
// a piece it lacks but vouches for (after a failover) to them
// (supernode/vouch.go).
func (s *Scheduler) HoldersOf(taskID string, n int, exclude string, max int) []wire.Parent {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tasks[taskID]
	if t == nil || n < 0 || n >= t.numPieces || max <= 0 {
		return nil
	}
	now := s.now()
	var found []*peer
	for _, pt := range t.peers {
		p := pt.peer
		if p.id == exclude || p.host.UploadAddr == "" || now.Before(p.isolatedUntil) || p.unreachable() {
			continue
		}
		if pt.done || pt.bitmap.Has(n) {
			found = append(found, p)
		}
	}
	// Least loaded first (a stable insertion sort: lists are short).
	for i := 1; i < len(found); i++ {
		for j := i; j > 0 && found[j].load < found[j-1].load; j-- {
			found[j], found[j-1] = found[j-1], found[j]
		}
	}
	out := make([]wire.Parent, 0, min(max, len(found)))
	for _, p := range found[:min(max, len(found))] {
		out = append(out, wire.Parent{PeerID: p.id, Addr: p.host.UploadAddr})
	}
	return out
}
