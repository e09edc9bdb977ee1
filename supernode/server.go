package supernode

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/cache"
	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/origin"
	"github.com/damselfly-p2p/damselfly/p2p/upload"
	"github.com/damselfly-p2p/damselfly/supernode/scheduler"
	"github.com/damselfly-p2p/damselfly/trust"
	"github.com/damselfly-p2p/damselfly/trust/egress"
	"github.com/damselfly-p2p/damselfly/wire"
)

// SeedPeerID is the peer ID under which the seed appears as a parent.
const SeedPeerID = "supernode-seed"

// Config configures a Supernode. Zero fields take the defaults in parentheses.
type Config struct {
	// DataDir holds the seed's piece store (required).
	DataDir string
	// AdvertiseAddr is host:port at which peers reach this supernode's
	// seed (required: the listen address, with a routable host).
	AdvertiseAddr string
	// OriginConcurrency is how many range requests the seed keeps in flight
	// to one origin (4).
	OriginConcurrency int
	// SeedUploadSlots caps concurrent piece uploads from the seed (8). Low
	// values push peers to serve each other.
	SeedUploadSlots int
	// SeedFanout is how many children get a fresh piece from the seed
	// before the rest are told to fetch it from them (2), and
	// SeedFanoutWindow how long the seed waits for them to relay it
	// before serving it again (2s). See upload.WithFanout.
	SeedFanout       int
	SeedFanoutWindow time.Duration
	// Revalidate is how long a finished seed copy is trusted before the next
	// registration revalidates it with the origin (30s; negative: never).
	Revalidate time.Duration
	// Quota and TTL bound the seed's cache (0: unbounded).
	Quota int64
	TTL   time.Duration
	// Scheduler tunes parent selection.
	Scheduler scheduler.Config
	// Source is the seed's origin client (default: origin.New with
	// origin.WithPolicy(Egress)). A Source given here is used as is, so it
	// must apply the policy itself.
	Source *origin.Client
	Log    logrus.FieldLogger

	// ClusterToken is the cluster's shared token. When set, every route but
	// GET /healthz requires a bearer credential (see the package doc);
	// absent, authentication is off.
	ClusterToken trust.Secret
	// AdminToken authorizes status, task status, preheats and metrics;
	// absent, the cluster token does.
	AdminToken trust.Secret
	// NotificationsToken authorizes the registry webhook. Absent while a
	// cluster token is set, the webhook is refused.
	NotificationsToken trust.Secret
	// Egress decides which origins the seed, revalidation, preheat and
	// notifications may reach (nil: the strict default policy, which
	// refuses loopback, link-local, metadata and own addresses).
	Egress *egress.Policy
	// CredentialTTL is the lifetime of issued peer and task credentials (1h).
	CredentialTTL time.Duration
	// RegisterRate is how many registrations a second one client (its
	// peer credential's peer, else its IP address) may make
	// (DefaultRegisterRate; negative: unlimited), with bursts of
	// RegisterBurst (DefaultRegisterBurst). Beyond, 429 with Retry-After.
	RegisterRate  float64
	RegisterBurst int
	// MaxOpenTasks caps the seed tasks kept open (DefaultMaxOpenTasks;
	// negative: no cap), SeedIdle closes those unused this long
	// (DefaultSeedIdle; negative: never). Closed tasks stay in the store
	// and are reopened by the next registration. See FDBound.
	MaxOpenTasks int
	SeedIdle     time.Duration
	// PreheatQueue bounds unfinished preheats (DefaultPreheatQueue;
	// beyond, 429) and PreheatTimeout the run of one
	// (DefaultPreheatTimeout).
	PreheatQueue   int
	PreheatTimeout time.Duration
	// StatusLimit is the default and StatusMaxLimit the largest page of
	// tasks and peers in GET /api/v1/status (DefaultStatusLimit,
	// MaxStatusLimit).
	StatusLimit, StatusMaxLimit int
	// Cluster names the other supernodes (HOST:PORT, or a DNS name
	// standing for several, as peers take them; this one's advertise
	// address may be among them). The dashboard shows them and image
	// preheats send each blob to its owner (cluster.go). ClusterTLS is
	// the client TLS configuration for calls to them (nil: plain HTTP).
	Cluster    []string
	ClusterTLS *tls.Config
	// SealSecret keys the seals on published digest lists, with which a
	// task's next owner adopts the digests peers present after a failover
	// instead of fetching the file again (vouch.go). Every supernode of a
	// cluster needs the same one; peers must not have it. Absent, the
	// admin token keys them when it differs from the cluster token; with
	// neither, nothing is sealed or adopted.
	SealSecret trust.Secret
	// S3Endpoints are the object store endpoints (SCHEME://HOST[:PORT])
	// whose presigned URLs peers may register s3:// tasks with (s3.go);
	// empty, s3 tasks are refused and peers read from the store directly.
	S3Endpoints []string
	// SeedLead is how many pieces no peer holds the seed's background
	// fill may fetch ahead of the swarm, so that little dies with a
	// killed owner (DefaultSeedLead; negative: unpaced). See seedpace.go.
	SeedLead int
}

// Supernode is the tracker, scheduler and seed. Create it with New, serve
// its Handler, and Close it when done.
type Supernode struct {
	cfg     Config
	log     logrus.FieldLogger
	store   *cache.Store
	sched   *scheduler.Scheduler
	seeds   *seeder
	upload  *upload.Server
	mux     *http.ServeMux
	started time.Time
	ctx     context.Context
	cancel  context.CancelFunc
	metrics *metrics
	// preheats runs preheat jobs (preheat.go).
	preheats *preheater
	auth     *auth
	// regLimits rate-limits registrations per client (limits.go).
	regLimits *clientLimits
	// cluster knows the other supernodes (cluster.go).
	cluster *clusterView
	// s3 checks s3:// registrations and holds their presigned URLs (s3.go).
	s3 *s3Gate
}

// New opens the seed store and returns a supernode.
func New(cfg Config) (*Supernode, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("supernode: data dir not set")
	}
	if _, _, err := net.SplitHostPort(cfg.AdvertiseAddr); err != nil {
		return nil, fmt.Errorf("supernode: advertise address %q: %w", cfg.AdvertiseAddr, err)
	}
	if cfg.OriginConcurrency <= 0 {
		cfg.OriginConcurrency = 4
	}
	if cfg.SeedUploadSlots <= 0 {
		cfg.SeedUploadSlots = 8
	}
	if cfg.SeedFanout == 0 {
		cfg.SeedFanout = 2
	}
	if cfg.SeedFanoutWindow <= 0 {
		cfg.SeedFanoutWindow = 2 * time.Second
	}
	if cfg.Revalidate == 0 {
		cfg.Revalidate = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	if cfg.MaxOpenTasks == 0 {
		cfg.MaxOpenTasks = DefaultMaxOpenTasks
	}
	if cfg.SeedIdle == 0 {
		cfg.SeedIdle = DefaultSeedIdle
	}
	if cfg.SeedLead == 0 {
		cfg.SeedLead = DefaultSeedLead
	}
	if cfg.CredentialTTL <= 0 {
		cfg.CredentialTTL = trust.DefaultTTL
	}
	if cfg.Egress == nil {
		p, err := egress.New(egress.Options{})
		if err != nil {
			return nil, fmt.Errorf("supernode: default origin policy: %w", err)
		}
		cfg.Egress = p
	}
	if cfg.Source == nil {
		cfg.Source = origin.New(origin.WithLogger(cfg.Log), origin.WithPolicy(cfg.Egress))
	}
	au, err := newAuth(cfg)
	if err != nil {
		return nil, fmt.Errorf("supernode: %w", err)
	}
	cv, err := newClusterView(cfg)
	if err != nil {
		return nil, fmt.Errorf("supernode: %w", err)
	}
	gate, err := newS3Gate(cfg.S3Endpoints, cfg.Revalidate, cfg.Log)
	if err != nil {
		return nil, fmt.Errorf("supernode: %w", err)
	}
	store, err := cache.Open(cfg.DataDir, cache.WithQuota(cfg.Quota), cache.WithTTL(cfg.TTL), cache.WithLogger(cfg.Log))
	if err != nil {
		return nil, fmt.Errorf("supernode: open seed store: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Supernode{cfg: cfg, log: cfg.Log, store: store, sched: scheduler.New(cfg.Scheduler),
		started: time.Now(), ctx: ctx, cancel: cancel, metrics: newMetrics(), auth: au,
		regLimits: newClientLimits(cfg.RegisterRate, cfg.RegisterBurst), cluster: cv, s3: gate}
	s.seeds = &seeder{store: store, src: cfg.Source, log: cfg.Log, concurrency: cfg.OriginConcurrency,
		revalidate: cfg.Revalidate, ctx: ctx, tasks: map[string]*seedTask{},
		maxOpen: cfg.MaxOpenTasks, idle: cfg.SeedIdle, s3: gate,
		onLayout: s.sched.SetTask, onOrigin: func(n int) { s.metrics.originBytes.Add(float64(n)) }}
	s.seeds.holdersOf = s.sched.HoldersOf
	s.seeds.lead, s.seeds.swarm = cfg.SeedLead, s.sched.TaskCounts
	if s.seeds.seal, err = sealKeyFor(cfg); err != nil {
		store.Close()
		cancel()
		return nil, err
	}
	if s.seeds.seal.IsZero() && !cfg.ClusterToken.IsZero() {
		cfg.Log.Info("no admin token distinct from the cluster token: digest lists are not sealed, so after a failover the next owner's seed fetches the whole file again")
	}
	// Holders the scheduler no longer knows (they left) neither count
	// towards a piece's fan-out nor are named to children.
	uploadOpts := []upload.Option{upload.WithSlots(cfg.SeedUploadSlots), upload.WithLogger(cfg.Log),
		upload.WithFanout(cfg.SeedFanout, cfg.SeedFanoutWindow), upload.WithPeerAddr(s.sched.UploadAddr)}
	if au.on {
		uploadOpts = append(uploadOpts, upload.WithTaskAuth(au.tasks))
	}
	s.upload = upload.New(seedTasks{s.seeds}, append(uploadOpts,
		upload.WithOnServe(func(taskID string, n int64) {
			if st := s.seeds.get(taskID); st != nil {
				st.served.Add(n)
			}
			s.metrics.servedBytes.Add(float64(n))
		}))...)
	s.mux = http.NewServeMux()
	s.routes()
	go s.janitor()
	return s, nil
}

// Handler serves the API, the seed's pieces, /healthz and /metrics.
func (s *Supernode) Handler() http.Handler { return s.mux }

// Close stops background work and closes the store.
func (s *Supernode) Close() error {
	s.cancel()
	return s.store.Close()
}

func (s *Supernode) routes() {
	a := s.auth
	s.mux.Handle("POST /api/v1/tasks/register", a.peerCall(s.handleRegister))
	s.mux.Handle("POST /api/v1/tasks/sync", a.peerCall(s.handleSync))
	s.mux.Handle("POST /api/v1/peers/heartbeat", a.peerCall(s.handleHeartbeat))
	s.mux.Handle("POST /api/v1/peers/announce", a.peerCall(s.handleAnnounce))
	s.mux.Handle("POST /api/v1/peers/leave", a.peerCall(s.handleLeave))
	s.mux.Handle("GET /api/v1/status", a.secretCall(a.admin, http.HandlerFunc(s.handleStatus)))
	s.mux.Handle("GET /api/v1/tasks/{id}", a.secretCall(a.admin, http.HandlerFunc(s.handleTask)))
	s.preheatRoutes()
	s.dashboardRoutes()
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.metrics.collectors()...)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "damselfly_supernode_peers",
		Help: "Peers known to the scheduler."}, func() float64 { return float64(s.sched.NumPeers()) }))
	s.mux.Handle("GET /metrics", a.secretCall(a.admin, promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))
	s.mux.Handle("/peer/", s.upload)
}

// janitor expires silent peers, closes idle seed tasks and runs cache GC.
func (s *Supernode) janitor() {
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	gcEvery := 0
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		if n := s.sched.Expire(); n > 0 {
			s.log.WithField("peers", n).Info("expired silent peers")
		}
		s.seeds.prune(time.Now())
		if gcEvery++; gcEvery%12 == 0 {
			if removed, freed, err := s.store.GC(s.ctx); err != nil {
				s.log.WithError(err).Warn("cache GC")
			} else if len(removed) > 0 {
				s.log.WithFields(logrus.Fields{"tasks": len(removed), "bytes": freed}).Info("cache GC")
			}
		}
	}
}

func (s *Supernode) handleRegister(w http.ResponseWriter, r *http.Request) {
	if !s.admitRegistration(w, r) {
		return
	}
	var req wire.RegisterRequest
	if !decode(w, r, &req) {
		return
	}
	if req.PeerID == "" {
		writeError(w, http.StatusBadRequest, wire.CodeBadRequest, "peerID is required", 0)
		return
	}
	if !s.auth.bindPeer(w, r, req.PeerID, true, s.sched.Knows) {
		return
	}
	id, ok := s.registerID(w, r, &req)
	if !ok {
		return
	}
	s.metrics.registrations.Inc()
	st, err := s.seeds.ensure(r.Context(), id, req.URL, req.Header, req.Digest, req.Lazy)
	if err != nil {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, wire.CodeRateLimited, err.Error(), 0)
		return
	}
	s.seeds.offerSealed(st, req.PeerID, req.Sealed)
	select {
	case <-st.ready:
	case <-r.Context().Done():
		return
	}
	state, t, serr := st.snapshot()
	if state == stateFailed {
		s.writeSeedError(w, serr)
		return
	}
	if err := s.seeds.authorize(r.Context(), st, req.URL, req.Header); err != nil {
		writeError(w, http.StatusForbidden, wire.CodeForbidden, err.Error(), 0)
		return
	}
	parents, err := s.sched.Register(id, req.PeerID, req.Host, nil)
	if err != nil {
		writeError(w, http.StatusInternalServerError, wire.CodeInternal, err.Error(), 0)
		return
	}
	s.metrics.parentsAssigned.Add(float64(len(parents)))
	if len(parents) == 0 {
		s.metrics.seedOnly.Inc()
	}
	m := t.Meta()
	ds, _, seal := s.seeds.published(st, t)
	resp := wire.RegisterResponse{TaskID: id, Length: m.Length, PieceSize: m.PieceSize, ETag: m.ETag,
		LastModified: m.LastModified, Digests: ds, SeedDone: t.Complete(),
		Parents: append(parents, s.seedParent()), TaskCredential: s.auth.taskCredential(req.PeerID, id), Seal: seal}
	s.log.WithFields(logrus.Fields{"task": id[:12], "peer": req.PeerID, "parents": len(parents)}).Debug("registered")
	writeJSON(w, &resp)
}

func (s *Supernode) handleSync(w http.ResponseWriter, r *http.Request) {
	var req wire.SyncRequest
	if !decode(w, r, &req) {
		return
	}
	if !s.auth.bindPeer(w, r, req.PeerID, false, s.sched.Knows) {
		return
	}
	s.metrics.syncs.Inc()
	s.metrics.pieceReports.Add(float64(len(req.Finished)))
	st := s.seeds.get(req.TaskID)
	if st == nil {
		writeError(w, http.StatusNotFound, wire.CodeUnknownTask, "task not known here; register again", 0)
		return
	}
	st.touch()
	if err := s.sched.Finished(req.TaskID, req.PeerID, req.Finished, req.Done); err != nil {
		writeError(w, http.StatusNotFound, wire.CodeUnknownPeer, "peer not registered for this task; register again", 0)
		return
	}
	if len(req.Finished) > 0 || req.Done {
		s.seeds.reported(req.TaskID) // may wake a paced fill
	}
	// Reports count only from a child registered for the task, against a
	// peer serving it.
	for _, b := range req.BadParents {
		if b.PeerID == SeedPeerID || !s.sched.ReportBadIn(req.TaskID, req.PeerID, b.PeerID, b.Reason) {
			continue
		}
		s.metrics.badReports.Inc()
		s.log.WithFields(logrus.Fields{"parent": b.PeerID, "reason": b.Reason, "reporter": req.PeerID}).Warn("parent reported")
	}
	s.sched.Traffic(req.TaskID, req.PeerID, req.BytesFromPeers, req.BytesFromSeed)
	state, t, serr := st.snapshot()
	var resp wire.SyncResponse
	if state == stateFailed {
		resp.SeedError = s.concealSeedError(serr).Error()
	} else if t != nil {
		if ds, n, seal := s.seeds.published(st, t); n > req.KnownDigests {
			resp.Digests, resp.Seal = ds, seal
		}
		resp.SeedDone = t.Complete()
	}
	if req.WantParents && !req.Done {
		ps, err := s.sched.MoreParents(req.TaskID, req.PeerID)
		if err == nil {
			resp.Parents = ps
			s.metrics.parentsAssigned.Add(float64(len(ps)))
		}
	}
	if req.RefreshTaskCredential {
		resp.TaskCredential = s.auth.taskCredential(req.PeerID, req.TaskID)
	}
	writeJSON(w, &resp)
}

func (s *Supernode) handleHeartbeat(w http.ResponseWriter, r *http.Request) {
	var req wire.HeartbeatRequest
	if !decode(w, r, &req) {
		return
	}
	if !s.auth.bindPeer(w, r, req.PeerID, false, s.sched.Knows) {
		return
	}
	if err := s.sched.Heartbeat(req.PeerID); err != nil {
		writeError(w, http.StatusNotFound, wire.CodeUnknownPeer, "unknown peer; announce again", 0)
		return
	}
	if req.UploadedBytes > 0 {
		s.sched.ReportUploaded(req.PeerID, req.UploadedBytes)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Supernode) handleAnnounce(w http.ResponseWriter, r *http.Request) {
	var req wire.AnnounceRequest
	if !decode(w, r, &req) {
		return
	}
	if req.PeerID == "" {
		writeError(w, http.StatusBadRequest, wire.CodeBadRequest, "peerID is required", 0)
		return
	}
	if !s.auth.bindPeer(w, r, req.PeerID, true, s.sched.Knows) {
		return
	}
	s.sched.Announce(req.PeerID, req.Host, req.Tasks)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Supernode) handleLeave(w http.ResponseWriter, r *http.Request) {
	var req wire.LeaveRequest
	if !decode(w, r, &req) {
		return
	}
	if !s.auth.bindPeer(w, r, req.PeerID, false, s.sched.Knows) {
		return
	}
	s.sched.Leave(req.PeerID)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Supernode) handleStatus(w http.ResponseWriter, r *http.Request) {
	pg, err := parsePage(r, s.cfg.StatusLimit, s.cfg.StatusMaxLimit)
	if err != nil {
		writeError(w, http.StatusBadRequest, wire.CodeBadRequest, err.Error(), 0)
		return
	}
	seeds := s.seeds.all()
	sort.Slice(seeds, func(i, j int) bool { return seeds[i].created.Before(seeds[j].created) })
	peers := s.sched.Peers()
	st := wire.Status{Supernode: s.cfg.AdvertiseAddr, Uptime: time.Since(s.started).Round(time.Second).String(),
		Tasks: []wire.TaskStatus{}, Peers: pageOf(peers, pg),
		TotalTasks: len(seeds), TotalPeers: len(peers), Offset: pg.offset, Limit: pg.limit}
	for _, t := range pageOf(seeds, pg) {
		st.Tasks = append(st.Tasks, s.taskStatus(t))
	}
	if st.Peers == nil {
		st.Peers = []wire.PeerStatus{}
	}
	writeJSON(w, &st)
}

func (s *Supernode) handleTask(w http.ResponseWriter, r *http.Request) {
	st := s.seeds.get(r.PathValue("id"))
	if st == nil {
		writeError(w, http.StatusNotFound, wire.CodeUnknownTask, "no such task", 0)
		return
	}
	ts := s.taskStatus(st)
	writeJSON(w, &ts)
}

func (s *Supernode) taskStatus(st *seedTask) wire.TaskStatus {
	state, t, err := st.snapshot()
	ts := wire.TaskStatus{TaskID: st.id, URL: manifest.RedactURL(st.url), State: state,
		BytesFromOrigin: st.fromOrigin.Load(), BytesServed: st.served.Load(), CreatedAt: st.created}
	if err != nil {
		ts.Error = err.Error()
	}
	if t != nil {
		m := t.Meta()
		ts.Length, ts.PieceSize, ts.SeedPieces, ts.NumPieces = m.Length, m.PieceSize, t.Count(), t.NumPieces()
	}
	ts.Peers, ts.PeersDone = s.sched.TaskCounts(st.id)
	ts.BytesPeerToPeer, _ = s.sched.TaskTraffic(st.id)
	return ts
}

func (s *Supernode) seedParent() wire.Parent {
	return wire.Parent{PeerID: SeedPeerID, Addr: s.cfg.AdvertiseAddr, Seed: true}
}

// taskIDFor derives the task ID of a registration and checks the one the
// peer computed, if any.
func taskIDFor(req *wire.RegisterRequest) (string, error) {
	if _, err := manifest.ParseURL(req.URL); err != nil {
		return "", err
	}
	var id string
	if req.Digest != "" {
		d, err := manifest.ParseDigest(req.Digest)
		if err != nil {
			return "", err
		}
		id = manifest.DigestTaskID(d)
	} else {
		var err error
		if id, err = manifest.TaskID(req.URL, req.Tag, req.Filters); err != nil {
			return "", err
		}
	}
	if req.TaskID != "" && req.TaskID != id {
		return "", fmt.Errorf("task ID %q does not match the URL (want %s)", req.TaskID, id)
	}
	return id, nil
}

// seedTasks exposes finished and in-progress seed tasks to the upload server.
type seedTasks struct{ s *seeder }

func (k seedTasks) Lookup(id string) (*cache.Task, func(), bool) {
	st := k.s.get(id)
	if st == nil || !st.acquire() {
		return nil, nil, false
	}
	state, t, _ := st.snapshot()
	if t == nil || state == stateFailed {
		st.release()
		return nil, nil, false
	}
	return t, st.release, true
}

var _ upload.Relayer = seedTasks{}

// Relaying implements upload.Relayer: the pieces the seed is fetching now
// (its fill's and on-demand fetches). A child may ask for one: a piece the
// fill is reading from the origin streams to it as it arrives (Relay);
// one an on-demand fetch is getting goes out once stored (FetchPiece
// waits for it). Either way a lone child's next pieces are asked for before
// they land, not after its next piece-map poll (with the fill paced to the
// swarm, every piece waited for that round trip).
func (k seedTasks) Relaying(id string, numPieces int) (manifest.Bitmap, uint64, <-chan struct{}) {
	st := k.s.get(id)
	if st == nil {
		return nil, 0, nil
	}
	return st.arriving(numPieces)
}

// Relay implements upload.Relayer: a stream of piece n of task id while
// the fill reads it from the origin.
func (k seedTasks) Relay(ctx context.Context, id string, n int) (io.ReadCloser, int64, bool) {
	st := k.s.get(id)
	if st == nil {
		return nil, 0, false
	}
	return st.relays.Reader(ctx, id, n)
}

// FetchPiece implements upload.PieceFetcher: the seed fetches a piece it
// lacks from the origin when a peer asks for it.
func (k seedTasks) FetchPiece(ctx context.Context, id string, n int) error {
	st := k.s.get(id)
	if st == nil || !st.acquire() {
		return errors.New("unknown task")
	}
	defer st.release()
	if err := k.s.fetchPiece(ctx, st, n); err != nil {
		// The requester sees only what an origin's status answer says.
		var se *origin.StatusError
		if errors.As(err, &se) || errors.Is(err, context.Canceled) {
			return err
		}
		k.s.logFor(st).WithField("reason", egress.Reason(err)).Debug("seed: on-demand piece fetch failed")
		return egress.Conceal(err)
	}
	return nil
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, 16<<20))
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, wire.CodeBadRequest, "invalid JSON body: "+err.Error(), 0)
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string, originStatus int) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(wire.ErrorResponse{Code: code, Message: msg, OriginStatus: originStatus})
}

// writeSeedError reports a failed seed: origin status errors keep the
// origin's code so that the client can say exactly what went wrong; every
// other failure is the one "origin unavailable" (the reason is logged).
func (s *Supernode) writeSeedError(w http.ResponseWriter, err error) {
	var se *origin.StatusError
	if errors.As(err, &se) {
		writeError(w, http.StatusBadGateway, wire.CodeOrigin, se.Error(), se.Code)
		return
	}
	writeError(w, http.StatusBadGateway, wire.CodeOrigin, s.concealSeedError(err).Error(), 0)
}

// concealSeedError is the seed failure as a remote caller may see it.
func (s *Supernode) concealSeedError(err error) error {
	var se *origin.StatusError
	if errors.As(err, &se) {
		return err
	}
	s.log.WithField("reason", egress.Reason(err)).Debug("seed failure answered as origin unavailable")
	return egress.Conceal(err)
}

// AddOwnAddr tells the origin policy about a listener of this process
// (its Addr().String(), or the advertise address), so that no origin URL
// can make the supernode fetch from itself.
func (s *Supernode) AddOwnAddr(addr string) error {
	if err := s.cfg.Egress.AddOwnAddr(addr); err != nil {
		return fmt.Errorf("supernode: own address %s: %w", addr, err)
	}
	return nil
}

// SetPeerTTL changes how long silent peers are kept (before serving).
func (s *Supernode) SetPeerTTL(d time.Duration) {
	if d > 0 {
		s.sched.SetPeerTTL(d)
	}
}
