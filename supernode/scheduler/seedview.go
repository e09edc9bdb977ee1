package scheduler

// PeersHolding returns how many live peers of the task hold piece n: a
// peer counts while it is registered, not isolated and not reported
// unreachable; a peer that finished the task holds every piece. The seed
// asks this to put off origin fetches of pieces the swarm already has
// after a failover (supernode/seed.go).
func (s *Scheduler) PeersHolding(taskID string, n int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tasks[taskID]
	if t == nil || n < 0 || n >= t.numPieces {
		return 0
	}
	now := s.now()
	count := 0
	for _, pt := range t.peers {
		p := pt.peer
		if now.Before(p.isolatedUntil) || p.unreachable() {
			continue
		}
		if pt.done || pt.bitmap.Has(n) {
			count++
		}
	}
	return count
}
