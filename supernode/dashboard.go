package supernode

// The operators' dashboard (issue 17): the page from package dashboard,
// public, and its data under the admin token:
//
//	GET /                           the page (no data)
//	GET /dashboard/{app.js,style.css}
//	GET /api/v1/dashboard           -> dashboard.Cluster (this supernode and
//	                                   the other cluster members, cluster.go)
//	GET /api/v1/tasks/{id}/pieces   -> dashboard.PieceMap
//
// A sampler reads the scheduler's byte counters every second to derive
// throughput (per task, per peer, overall) and keeps a short history of it
// for the sparklines. It also remembers the counters of peers that left a
// task, so that bytes delivered by peers do not vanish from the totals
// when a swarm disperses.

import (
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/damselfly-p2p/damselfly/supernode/dashboard"
	"github.com/damselfly-p2p/damselfly/supernode/scheduler"
	"github.com/damselfly-p2p/damselfly/wire"
)

// Dashboard sampling.
const (
	dashInterval = time.Second
	dashHistory  = 120 // samples kept per series
)

// dashboardRoutes registers the operators' live dashboard (GET / and its
// assets) and its JSON endpoints, and starts the sampler.
func (s *Supernode) dashboardRoutes() {
	page := dashboard.Handler()
	s.mux.Handle("GET /{$}", page)
	s.mux.Handle("GET "+dashboard.AssetPrefix, page)
	a := s.auth
	d := newDashSampler()
	s.mux.Handle("GET "+dashboard.SummaryPath, a.secretCall(a.admin, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		doc := s.dashboardDoc(d)
		if !localOnly(r) {
			doc = s.withMembers(r.Context(), doc)
		}
		writeJSON(w, &doc)
	})))
	s.mux.Handle("GET "+dashboard.PiecesPathPattern, a.secretCall(a.admin, http.HandlerFunc(s.handlePieces)))
	go d.run(s)
}

// pairKey names one peer's part in one task.
type pairKey struct{ task, peer string }

type pairCounters struct{ fromPeers, fromSeed int64 }

// dashSampler derives rates from successive scheduler snapshots.
type dashSampler struct {
	mu       sync.Mutex
	lastAt   time.Time
	last     map[pairKey]pairCounters
	departed map[string]pairCounters // task -> counters of peers gone from it
	taskRate map[string]float64
	peerRate map[string]float64
	rate     float64
	taskHist map[string]*dashboard.Series
	hist     *dashboard.Series
}

func newDashSampler() *dashSampler {
	return &dashSampler{last: map[pairKey]pairCounters{}, departed: map[string]pairCounters{},
		taskRate: map[string]float64{}, peerRate: map[string]float64{},
		taskHist: map[string]*dashboard.Series{}, hist: dashboard.NewSeries(dashHistory)}
}

func (d *dashSampler) run(s *Supernode) {
	tick := time.NewTicker(dashInterval)
	defer tick.Stop()
	d.sample(s.sched.TaskViews(), time.Now())
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-tick.C:
			d.sample(s.sched.TaskViews(), now)
		}
	}
}

// sample folds one snapshot of the scheduler into the rates and histories.
// A counter that went down (a peer that re-registered) counts from zero.
func (d *dashSampler) sample(views map[string]scheduler.TaskView, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	first := d.lastAt.IsZero()
	dt := now.Sub(d.lastAt).Seconds()
	if !first && dt <= 0 {
		return
	}
	cur := make(map[pairKey]pairCounters, len(d.last))
	taskDelta := map[string]int64{}
	peerDelta := map[string]int64{}
	var total int64
	for id, v := range views {
		for _, p := range v.Peers {
			k := pairKey{id, p.PeerID}
			c := pairCounters{p.FromPeers, p.FromSeed}
			cur[k] = c
			prev := d.last[k]
			delta := c.fromPeers + c.fromSeed - prev.fromPeers - prev.fromSeed
			if delta < 0 {
				delta = c.fromPeers + c.fromSeed
			}
			taskDelta[id] += delta
			peerDelta[p.PeerID] += delta
			total += delta
		}
	}
	for k, c := range d.last {
		if _, ok := cur[k]; !ok {
			dep := d.departed[k.task]
			dep.fromPeers += c.fromPeers
			dep.fromSeed += c.fromSeed
			d.departed[k.task] = dep
		}
	}
	for id := range d.departed {
		if _, ok := views[id]; !ok {
			delete(d.departed, id) // the task itself is gone
		}
	}
	d.last, d.lastAt = cur, now
	if first {
		// Nothing to divide by yet: the counters are only the baseline.
		return
	}
	d.taskRate = map[string]float64{}
	for id := range views {
		r := float64(taskDelta[id]) / dt
		d.taskRate[id] = r
		h := d.taskHist[id]
		if h == nil {
			h = dashboard.NewSeries(dashHistory)
			d.taskHist[id] = h
		}
		h.Add(r)
	}
	for id := range d.taskHist {
		if _, ok := views[id]; !ok {
			delete(d.taskHist, id)
		}
	}
	d.peerRate = map[string]float64{}
	for id, n := range peerDelta {
		d.peerRate[id] = float64(n) / dt
	}
	d.rate = float64(total) / dt
	d.hist.Add(d.rate)
}

// dashRates is what the sampler knows at one moment.
type dashRates struct {
	taskRate, peerRate map[string]float64
	taskHist           map[string][]float64
	departed           map[string]pairCounters
	rate               float64
	hist               []float64
}

func (d *dashSampler) snapshot() dashRates {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := dashRates{taskRate: d.taskRate, peerRate: d.peerRate, rate: d.rate, hist: d.hist.Values(),
		taskHist: make(map[string][]float64, len(d.taskHist)), departed: make(map[string]pairCounters, len(d.departed))}
	for id, h := range d.taskHist {
		r.taskHist[id] = h.Values()
	}
	for id, c := range d.departed {
		r.departed[id] = c
	}
	return r
}

// dashboardDoc is the dashboard document of this supernode alone
// (withMembers adds the other members' nodes).
func (s *Supernode) dashboardDoc(d *dashSampler) dashboard.Cluster {
	node := s.dashboardNode(d.snapshot())
	doc := dashboard.Cluster{GeneratedAt: time.Now().UTC(), Interval: dashInterval.Milliseconds(),
		Nodes: []dashboard.Node{node}, History: node.History}
	for _, n := range doc.Nodes {
		doc.Totals.Add(n.Totals)
	}
	return doc
}

// dashboardNode is this supernode's part of the dashboard.
func (s *Supernode) dashboardNode(rates dashRates) dashboard.Node {
	views := s.sched.TaskViews()
	n := dashboard.Node{Supernode: s.cfg.AdvertiseAddr, Uptime: time.Since(s.started).Round(time.Second).String(),
		Tasks: []dashboard.Task{}, Peers: []dashboard.Peer{}, History: rates.hist}
	for _, st := range s.seeds.all() {
		t := s.dashboardTask(st, views[st.id], rates)
		n.Tasks = append(n.Tasks, t)
		n.Totals.Tasks++
		if t.Status != dashboard.StateComplete && t.Status != dashboard.StateFailed && t.Status != dashboard.StateWaiting {
			n.Totals.ActiveTasks++
		}
		n.Totals.BytesFromPeers += t.BytesFromPeers
		n.Totals.BytesFromSeed += t.BytesFromSeed
		n.Totals.BytesFromOrigin += t.BytesFromOrigin
	}
	sort.Slice(n.Tasks, func(i, j int) bool { return n.Tasks[i].CreatedAt.Before(n.Tasks[j].CreatedAt) })
	downloaded := map[string]int64{}
	for _, v := range views {
		for _, p := range v.Peers {
			downloaded[p.PeerID] += p.FromPeers + p.FromSeed
		}
	}
	for _, p := range s.sched.Peers() {
		dp := dashboard.Peer{PeerStatus: p, DownloadRate: rates.peerRate[p.PeerID],
			BytesDownloaded: downloaded[p.PeerID]}
		if up, ok := s.sched.UploadRate(p.PeerID); ok {
			dp.UploadRate = &up
		}
		n.Peers = append(n.Peers, dp)
		if p.Isolated {
			n.Totals.IsolatedPeers++
		}
	}
	n.Totals.Peers = len(n.Peers)
	n.Totals.Throughput = rates.rate
	n.Totals.OriginSaved = dashboard.OriginSavedPercent(n.Totals.BytesFromPeers, n.Totals.BytesFromSeed, n.Totals.BytesFromOrigin)
	n.Preheats = s.preheatList()
	return n
}

// dashboardTask renders one seed task with its swarm.
func (s *Supernode) dashboardTask(st *seedTask, v scheduler.TaskView, rates dashRates) dashboard.Task {
	ts := s.taskStatus(st)
	t := dashboard.Task{TaskStatus: ts, Name: dashboard.TaskName(st.url), Throughput: rates.taskRate[st.id],
		History: rates.taskHist[st.id]}
	if t.History == nil {
		t.History = []float64{}
	}
	if ts.NumPieces > 0 {
		t.SeedProgress = float64(ts.SeedPieces) / float64(ts.NumPieces)
	}
	var sum float64
	for _, p := range v.Peers {
		f := 1.0
		if !p.Done && v.NumPieces > 0 {
			f = min(float64(p.Pieces)/float64(v.NumPieces), 1)
		}
		sum += f
		switch {
		case p.Done:
			t.Spread[4]++
		default:
			t.Spread[min(int(4*f), 3)]++
		}
	}
	if len(v.Peers) > 0 {
		t.SwarmProgress = sum / float64(len(v.Peers))
	}
	dep := rates.departed[st.id]
	t.BytesFromPeers = ts.BytesPeerToPeer + dep.fromPeers
	t.BytesFromSeed = ts.BytesServed
	t.OriginSaved = dashboard.OriginSavedPercent(t.BytesFromPeers, t.BytesFromSeed, t.BytesFromOrigin)
	switch {
	case ts.State == stateFailed:
		t.Status = dashboard.StateFailed
	case ts.State != stateDone:
		t.Status = dashboard.StateSeeding
	case ts.Peers == 0:
		t.Status = dashboard.StateWaiting
	case ts.PeersDone < ts.Peers:
		t.Status = dashboard.StateDownloading
	default:
		t.Status = dashboard.StateComplete
	}
	if t.Status == dashboard.StateSeeding && ts.Peers > 0 && ts.PeersDone == ts.Peers {
		// Lazy peers done with what they wanted while the seed fills.
		t.Status = dashboard.StateDownloading
	}
	return t
}

// preheatList is GET /api/v1/preheats' answer, newest first.
func (s *Supernode) preheatList() []wire.PreheatStatus {
	if s.preheats == nil {
		return []wire.PreheatStatus{}
	}
	return s.preheats.list()
}

func (s *Supernode) handlePieces(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	st := s.seeds.get(id)
	if st == nil {
		if !localOnly(r) {
			if m, ok := s.memberPieces(r.Context(), id); ok {
				writeJSON(w, &m)
				return
			}
		}
		writeError(w, http.StatusNotFound, wire.CodeUnknownTask, "no such task", 0)
		return
	}
	m := dashboard.PieceMap{TaskID: id, Holders: []int{}}
	if _, t, _ := st.snapshot(); t != nil {
		m.NumPieces, m.PieceSize = t.NumPieces(), t.Meta().PieceSize
		var b strings.Builder
		b.Grow(m.NumPieces)
		for i := 0; i < m.NumPieces; i++ {
			if t.Has(i) {
				b.WriteByte('1')
			} else {
				b.WriteByte('0')
			}
		}
		m.Seed = b.String()
	}
	if holders, peers, ok := s.sched.PieceHolders(id); ok && len(holders) == m.NumPieces {
		m.Holders, m.Peers = holders, peers
	} else {
		m.Holders = make([]int, m.NumPieces)
	}
	writeJSON(w, &m)
}
