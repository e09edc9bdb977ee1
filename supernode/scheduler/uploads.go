package scheduler

// ReportUploaded records a peer's cumulative upload counter (sent with its
// heartbeats) and derives its upload rate from the previous report. A
// counter that went down (the peer restarted) starts over.
func (s *Scheduler) ReportUploaded(peerID string, total int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peers[peerID]
	if p == nil {
		return
	}
	now := s.now()
	if !p.uploadedAt.IsZero() && total >= p.uploaded {
		if dt := now.Sub(p.uploadedAt).Seconds(); dt > 0 {
			p.uploadRate = float64(total-p.uploaded) / dt
		}
	} else {
		p.uploadRate = -1
	}
	p.uploaded, p.uploadedAt = total, now
}

// UploadRate is the peer's upload rate in bytes per second between its
// last two heartbeats; false until it has reported twice.
func (s *Scheduler) UploadRate(peerID string) (float64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peers[peerID]
	if p == nil || p.uploadedAt.IsZero() || p.uploadRate < 0 {
		return 0, false
	}
	return p.uploadRate, true
}
