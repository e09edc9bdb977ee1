// Package scheduler owns the supernode's view of the swarm: which peers hold
// which pieces of which task, and who should download from whom. It is pure
// in-memory bookkeeping behind one mutex, with no I/O: the supernode's HTTP
// layer feeds it and the seed is handed in as an address.
package scheduler

import (
	"errors"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/wire"
)

// ErrUnknownPeer means the peer (or its task) is not registered, e.g. after a
// supernode restart: the peer should register again.
var ErrUnknownPeer = errors.New("unknown peer")

// Config tunes the scheduler. Zero fields take the defaults in parentheses.
type Config struct {
	// CandidateLimit is how many peers of a task are sampled and scored per
	// parent request (40): scoring stays O(1) as swarms grow.
	CandidateLimit int
	// ParentLimit is how many parents one request returns, the seed aside (4).
	ParentLimit int
	// MaxParents caps the parents a child is given over its life (8).
	MaxParents int
	// PeerTTL removes peers not heard from for this long (45s).
	PeerTTL time.Duration
	// IsolateFor is how long a misbehaving peer is excluded (10m).
	IsolateFor time.Duration
	// FailureThreshold isolates a peer after this many failure reports (3);
	// one corrupt-data report isolates at once.
	FailureThreshold int
	// DefaultSlots is assumed for peers that do not state upload slots (8).
	DefaultSlots int
}

func (c *Config) defaults() {
	set := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	set(&c.CandidateLimit, 40)
	set(&c.ParentLimit, 4)
	set(&c.MaxParents, 8)
	set(&c.FailureThreshold, 3)
	set(&c.DefaultSlots, 8)
	if c.PeerTTL <= 0 {
		c.PeerTTL = 45 * time.Second
	}
	if c.IsolateFor <= 0 {
		c.IsolateFor = 10 * time.Minute
	}
}

// peer is a host's peer process. Peer state machine:
//
//	active --(failures >= threshold | corrupt report)--> isolated
//	isolated --(IsolateFor elapsed)--> active (failures reset)
//	active --(unreachable report)--> unreachable (not handed out)
//	unreachable --(any request from the peer)--> active
//	any --(leave | PeerTTL without contact)--> removed
type peer struct {
	id            string
	host          wire.Host
	lastSeen      time.Time
	tasks         map[string]*peerTask
	failures      int
	isolatedUntil time.Time
	reason        string
	load          int // children currently given this peer as a parent
	// unreachableAt is when a child last reported that nothing answers at
	// the peer's address (its process may be gone): it is not handed out
	// until heard from after that.
	unreachableAt time.Time
	// uploaded is the peer's upload counter at its last heartbeat, and
	// uploadRate the bytes per second between its last two (-1: unknown).
	uploaded   int64
	uploadedAt time.Time
	uploadRate float64
}

// unreachable reports whether p was reported unreachable and not heard
// from since.
func (p *peer) unreachable() bool {
	return !p.unreachableAt.IsZero() && !p.lastSeen.After(p.unreachableAt)
}

// peerTask is one peer's participation in one task.
type peerTask struct {
	peer    *peer
	task    *task
	bitmap  manifest.Bitmap
	count   int
	done    bool
	parents map[string]bool // parents given to this child
	index   int             // position in task.peers
	// fromPeers and fromSeed are the child's cumulative counters as it
	// last reported them.
	fromPeers, fromSeed int64
}

type task struct {
	id        string
	numPieces int
	peers     []*peerTask
}

// Scheduler tracks peers and tasks and chooses parents. Safe for concurrent use.
type Scheduler struct {
	cfg Config
	now func() time.Time

	mu    sync.Mutex
	tasks map[string]*task
	peers map[string]*peer
}

// New returns a scheduler.
func New(cfg Config) *Scheduler {
	cfg.defaults()
	return &Scheduler{cfg: cfg, now: time.Now, tasks: map[string]*task{}, peers: map[string]*peer{}}
}

// SetTask declares a task and its piece count (idempotent; a changed count
// resets every peer's piece map for the task).
func (s *Scheduler) SetTask(taskID string, numPieces int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tasks[taskID]
	if t == nil {
		s.tasks[taskID] = &task{id: taskID, numPieces: numPieces}
		return
	}
	if t.numPieces != numPieces {
		t.numPieces = numPieces
		for _, pt := range t.peers {
			pt.bitmap, pt.count, pt.done = manifest.NewBitmap(numPieces), 0, false
		}
	}
}

// RemoveTask forgets a task and every peer's part in it.
func (s *Scheduler) RemoveTask(taskID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tasks[taskID]
	if t == nil {
		return
	}
	for _, pt := range append([]*peerTask(nil), t.peers...) {
		s.dropPeerTask(pt)
	}
	delete(s.tasks, taskID)
}

// Register adds peerID to the task (upserting the peer) and returns its first
// parents, best first. bitmap, if non-nil, is what the peer already holds.
func (s *Scheduler) Register(taskID, peerID string, host wire.Host, bitmap manifest.Bitmap) ([]wire.Parent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tasks[taskID]
	if t == nil {
		return nil, errors.New("task not declared")
	}
	p := s.upsertPeer(peerID, host)
	pt := s.joinTask(p, t)
	if bitmap != nil {
		s.setBitmap(pt, bitmap)
	}
	if pt.done {
		// A peer that holds everything needs no parents; giving it some
		// would count load against them for nothing.
		return nil, nil
	}
	return s.pickParents(pt, s.cfg.ParentLimit), nil
}

// Announce records that a peer holds pieces of tasks the scheduler knows;
// unknown tasks are skipped.
func (s *Scheduler) Announce(peerID string, host wire.Host, tasks []wire.AnnouncedTask) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.upsertPeer(peerID, host)
	for _, at := range tasks {
		if t := s.tasks[at.TaskID]; t != nil {
			s.setBitmap(s.joinTask(p, t), at.Bitmap)
		}
	}
}

// Finished records pieces a peer finished, and whether it is done.
func (s *Scheduler) Finished(taskID, peerID string, pieces []int, done bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	pt, err := s.lookup(taskID, peerID)
	if err != nil {
		return err
	}
	for _, i := range pieces {
		if i >= 0 && i < pt.task.numPieces && !pt.bitmap.Has(i) {
			pt.bitmap.Set(i)
			pt.count++
		}
	}
	if done && !pt.done {
		pt.done = true
		s.releaseParents(pt)
	}
	return nil
}

// Traffic records a child's cumulative byte counters for a task.
func (s *Scheduler) Traffic(taskID, peerID string, fromPeers, fromSeed int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if pt, err := s.lookup(taskID, peerID); err == nil {
		pt.fromPeers = max(pt.fromPeers, fromPeers)
		pt.fromSeed = max(pt.fromSeed, fromSeed)
	}
}

// TaskTraffic sums the byte counters the task's current peers reported.
func (s *Scheduler) TaskTraffic(taskID string) (fromPeers, fromSeed int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.tasks[taskID]; t != nil {
		for _, pt := range t.peers {
			fromPeers += pt.fromPeers
			fromSeed += pt.fromSeed
		}
	}
	return fromPeers, fromSeed
}

// MoreParents returns up to ParentLimit parents the child does not have yet,
// while it has fewer than MaxParents.
func (s *Scheduler) MoreParents(taskID, peerID string) ([]wire.Parent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pt, err := s.lookup(taskID, peerID)
	if err != nil {
		return nil, err
	}
	if pt.done {
		return nil, nil
	}
	n := s.cfg.MaxParents - len(pt.parents)
	if n > s.cfg.ParentLimit {
		n = s.cfg.ParentLimit
	}
	if n <= 0 {
		// Drop the least useful parent to make room: parents that went
		// away or got isolated are already gone from the map.
		n = 1
		s.forgetWorstParent(pt)
	}
	return s.pickParents(pt, n), nil
}

// ReportBad records a child's report against a parent. A corrupt-data report
// isolates the parent at once; other failures isolate it after
// FailureThreshold reports. An unreachable report also keeps the parent
// from being handed out until it is heard from again (a peer whose process
// is gone is not offered for PeerTTL).
func (s *Scheduler) ReportBad(parentID, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peers[parentID]
	if p == nil {
		return
	}
	p.failures++
	if reason == wire.ReasonUnreachable {
		p.unreachableAt = s.now()
	}
	if reason == wire.ReasonCorrupt || p.failures >= s.cfg.FailureThreshold {
		p.isolatedUntil = s.now().Add(s.cfg.IsolateFor)
		p.reason = reason
	}
}

// Heartbeat refreshes a peer; ErrUnknownPeer if it is not known.
func (s *Scheduler) Heartbeat(peerID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peers[peerID]
	if p == nil {
		return ErrUnknownPeer
	}
	p.lastSeen = s.now()
	return nil
}

// Leave removes a peer.
func (s *Scheduler) Leave(peerID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.peers[peerID]; p != nil {
		s.removePeer(p)
	}
}

// Expire removes peers not heard from within PeerTTL and returns how many.
func (s *Scheduler) Expire() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	cutoff := s.now().Add(-s.cfg.PeerTTL)
	n := 0
	for _, p := range s.peers {
		if p.lastSeen.Before(cutoff) {
			s.removePeer(p)
			n++
		}
	}
	return n
}

// TaskCounts returns the number of peers in a task and how many are done.
func (s *Scheduler) TaskCounts(taskID string) (peers, done int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tasks[taskID]
	if t == nil {
		return 0, 0
	}
	for _, pt := range t.peers {
		if pt.done {
			done++
		}
	}
	return len(t.peers), done
}

// Peers returns the status of every peer, sorted by ID.
func (s *Scheduler) Peers() []wire.PeerStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	out := make([]wire.PeerStatus, 0, len(s.peers))
	for _, p := range s.peers {
		iso := now.Before(p.isolatedUntil)
		st := wire.PeerStatus{PeerID: p.id, Hostname: p.host.Hostname, Addr: p.host.UploadAddr,
			IDC: p.host.IDC, Rack: p.host.Rack, Tasks: len(p.tasks), Isolated: iso,
			Failures: p.failures, LastSeen: p.lastSeen}
		if iso {
			st.Reason = p.reason
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PeerID < out[j].PeerID })
	return out
}

// NumPeers returns how many peers are known.
func (s *Scheduler) NumPeers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.peers)
}

// --- internals; callers hold s.mu ---

func (s *Scheduler) upsertPeer(id string, host wire.Host) *peer {
	p := s.peers[id]
	if p == nil {
		p = &peer{id: id, tasks: map[string]*peerTask{}}
		s.peers[id] = p
	}
	p.host = host
	p.lastSeen = s.now()
	return p
}

func (s *Scheduler) joinTask(p *peer, t *task) *peerTask {
	if pt := p.tasks[t.id]; pt != nil {
		return pt
	}
	pt := &peerTask{peer: p, task: t, bitmap: manifest.NewBitmap(t.numPieces),
		parents: map[string]bool{}, index: len(t.peers)}
	t.peers = append(t.peers, pt)
	p.tasks[t.id] = pt
	return pt
}

func (s *Scheduler) setBitmap(pt *peerTask, b manifest.Bitmap) {
	nb := manifest.NewBitmap(pt.task.numPieces)
	copy(nb, b)
	// Clear bits past the last piece so counts stay honest.
	for i := pt.task.numPieces; i < len(nb)*8; i++ {
		nb.Clear(i)
	}
	pt.bitmap, pt.count = nb, nb.Count()
	if pt.count == pt.task.numPieces && !pt.done {
		pt.done = true
		s.releaseParents(pt)
	}
}

func (s *Scheduler) lookup(taskID, peerID string) (*peerTask, error) {
	p := s.peers[peerID]
	if p == nil {
		return nil, ErrUnknownPeer
	}
	p.lastSeen = s.now()
	pt := p.tasks[taskID]
	if pt == nil {
		return nil, ErrUnknownPeer
	}
	return pt, nil
}

// pickParents samples up to CandidateLimit peers of the task, filters out
// the child itself, its current parents and isolated or gone peers, scores
// the rest with Score and returns the best n.
func (s *Scheduler) pickParents(child *peerTask, n int) []wire.Parent {
	t := child.task
	now := s.now()
	type scored struct {
		pt    *peerTask
		score float64
	}
	var cands []scored
	consider := func(pt *peerTask) {
		p := pt.peer
		if pt == child || child.parents[p.id] || now.Before(p.isolatedUntil) || p.unreachable() || p.host.UploadAddr == "" {
			return
		}
		slots := p.host.UploadSlots
		if slots <= 0 {
			slots = s.cfg.DefaultSlots
		}
		c := Candidate{Pieces: pt.count, NumPieces: t.numPieces, Load: p.load, Slots: slots,
			SameIDC:  p.host.IDC != "" && p.host.IDC == child.peer.host.IDC,
			SameRack: p.host.Rack != "" && p.host.Rack == child.peer.host.Rack,
			Failures: p.failures}
		cands = append(cands, scored{pt, Score(c)})
	}
	if len(t.peers) <= s.cfg.CandidateLimit {
		for _, pt := range t.peers {
			consider(pt)
		}
	} else {
		// Sample a random window: O(CandidateLimit) however big the swarm.
		start := rand.IntN(len(t.peers))
		for k := 0; k < s.cfg.CandidateLimit; k++ {
			consider(t.peers[(start+k)%len(t.peers)])
		}
	}
	// Shuffle before the stable sort so equal scores spread the load.
	rand.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].score > cands[j].score })
	if len(cands) > n {
		cands = cands[:n]
	}
	out := make([]wire.Parent, 0, len(cands))
	for _, c := range cands {
		child.parents[c.pt.peer.id] = true
		c.pt.peer.load++
		out = append(out, wire.Parent{PeerID: c.pt.peer.id, Addr: c.pt.peer.host.UploadAddr})
	}
	return out
}

// forgetWorstParent drops the parent with the fewest pieces from the child's
// set so that a fresh candidate can take its place.
func (s *Scheduler) forgetWorstParent(child *peerTask) {
	worst, worstCount := "", -1
	for id := range child.parents {
		p := s.peers[id]
		c := 0
		if p != nil {
			if pt := p.tasks[child.task.id]; pt != nil {
				c = pt.count
			}
		}
		if worstCount < 0 || c < worstCount {
			worst, worstCount = id, c
		}
	}
	if worst != "" {
		delete(child.parents, worst)
		if p := s.peers[worst]; p != nil && p.load > 0 {
			p.load--
		}
	}
}

func (s *Scheduler) releaseParents(child *peerTask) {
	for id := range child.parents {
		if p := s.peers[id]; p != nil && p.load > 0 {
			p.load--
		}
	}
	child.parents = map[string]bool{}
}

func (s *Scheduler) dropPeerTask(pt *peerTask) {
	s.releaseParents(pt)
	t := pt.task
	last := len(t.peers) - 1
	t.peers[pt.index] = t.peers[last]
	t.peers[pt.index].index = pt.index
	t.peers = t.peers[:last]
	delete(pt.peer.tasks, t.id)
}

func (s *Scheduler) removePeer(p *peer) {
	for _, pt := range p.tasks {
		s.dropPeerTask(pt)
	}
	delete(s.peers, p.id)
}

// SetPeerTTL changes PeerTTL.
func (s *Scheduler) SetPeerTTL(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.PeerTTL = d
}

// Knows reports whether peerID is a known (registered or announced, not
// expired) peer.
func (s *Scheduler) Knows(peerID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peers[peerID] != nil
}

// UploadAddr returns the upload address a known peer registered with.
func (s *Scheduler) UploadAddr(peerID string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peers[peerID]
	if p == nil || p.host.UploadAddr == "" {
		return "", false
	}
	return p.host.UploadAddr, true
}

// InTask reports whether peerID is registered for taskID.
func (s *Scheduler) InTask(taskID, peerID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peers[peerID]
	return p != nil && p.tasks[taskID] != nil
}

// ReportBadIn is ReportBad for a report made by childID while downloading
// taskID: it counts only when the child is registered for the task and the
// parent serves it (holds the task), and reports whether it counted.
func (s *Scheduler) ReportBadIn(taskID, childID, parentID, reason string) bool {
	s.mu.Lock()
	c, p := s.peers[childID], s.peers[parentID]
	ok := c != nil && p != nil && c.tasks[taskID] != nil && p.tasks[taskID] != nil && childID != parentID
	s.mu.Unlock()
	if ok {
		s.ReportBad(parentID, reason)
	}
	return ok
}
