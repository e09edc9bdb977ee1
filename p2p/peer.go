package p2p

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"

	"github.com/damselfly-p2p/damselfly/cache"
	"github.com/damselfly-p2p/damselfly/httpserve"
	"github.com/damselfly-p2p/damselfly/origin"
	"github.com/damselfly-p2p/damselfly/p2p/ratelimit"
	"github.com/damselfly-p2p/damselfly/p2p/upload"
	"github.com/damselfly-p2p/damselfly/trust"
	"github.com/damselfly-p2p/damselfly/trust/egress"
	"github.com/damselfly-p2p/damselfly/trust/tlsconf"
	"github.com/damselfly-p2p/damselfly/wire"
)

// Config configures a Peer. Zero fields take the defaults in parentheses.
type Config struct {
	// DataDir holds the piece store (required).
	DataDir string
	// Supernodes are host:port addresses, tried in order. Empty means no
	// supernode: every download goes to the origin.
	Supernodes []string
	// UploadListen is where the upload server listens (":0", any port).
	UploadListen string
	// AdvertiseIP is the IP other peers use to reach this one (default: the
	// listen IP, or when that is unspecified the local address of the route
	// towards the first supernode).
	AdvertiseIP string
	// UploadLimit and DownloadLimit are host-wide bytes/s caps (0: none).
	UploadLimit, DownloadLimit int64
	// UploadSlots caps concurrent piece uploads (8).
	UploadSlots int
	// Concurrency is how many pieces one download keeps in flight (8).
	Concurrency int
	// PieceTimeout bounds one piece fetch from a parent (30s).
	PieceTimeout time.Duration
	// StallTimeout is how long a download may make no progress before it
	// goes to the origin (when allowed) or fails (30s).
	StallTimeout time.Duration
	// IDC and Rack are locality labels the scheduler uses.
	IDC, Rack string
	// Quota and TTL bound the piece store (0: unbounded).
	Quota int64
	TTL   time.Duration
	// SyncSupernode fsyncs piece data before recording it (power-loss safe
	// without a re-verify after a crash; slower).
	Sync bool
	// Source is the origin client (default origin.New()). It serves the
	// URLs the local user asked for, so it checks no origin policy.
	Source *origin.Client
	// ClusterToken authenticates the peer to the supernode (first
	// registration) and is the key of the task credentials its upload
	// server requires from children. The zero Secret turns authentication
	// off.
	ClusterToken trust.Secret
	// TLS, when enabled, makes the upload server speak TLS (requiring client
	// certificates signed by TLS.CAFile when set) and every request to the
	// supernode and to parents HTTPS.
	TLS tlsconf.Options
	// Egress is the policy of fetches a remote manifest causes (dataset
	// entries); nil is egress's strict default.
	Egress *egress.Policy
	Log    logrus.FieldLogger
}

// Peer is one host's peer. Create it with New; Close it when done.
type Peer struct {
	cfg Config
	// onPiece observes pieces fetched from parents (ObservePieces).
	onPiece  atomic.Pointer[PieceObserver]
	log      logrus.FieldLogger
	id       string
	host     wire.Host
	store    *cache.Store
	snc      *wire.Client // nil without supernodes
	src      *origin.Client
	guarded  *origin.Client // src's settings under cfg.Egress, for Request.Remote
	upLimit  *rate.Limiter
	dlLimit  *rate.Limiter
	upload   *upload.Server
	httpSrv  *http.Server
	listener net.Listener
	client   *http.Client // for parents
	scheme   string       // of parents' upload servers: "http" or "https"
	// taskKeys verifies task credentials (upload server) and reads their
	// lifetime (refresh); zero without a cluster token.
	taskKeys trust.Issuer

	flights singleflight.Group
	// relays are the pieces being fetched, served to children as they
	// arrive (relay.go).
	relays upload.Relays

	// s3 presigns registrations of open s3 objects (s3swarm.go).
	s3 s3Sources

	mu   sync.Mutex
	open map[string]*openTask // tasks held open for serving

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type openTask struct {
	t        *cache.Task
	lastUsed time.Time
	active   int // downloads in progress
}

// New opens the store and starts the upload server.
func New(cfg Config) (*Peer, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("peer: data dir not set")
	}
	if cfg.UploadListen == "" {
		cfg.UploadListen = ":0"
	}
	if cfg.UploadSlots <= 0 {
		cfg.UploadSlots = 8
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.PieceTimeout <= 0 {
		cfg.PieceTimeout = 30 * time.Second
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	if cfg.Source == nil {
		cfg.Source = origin.New(origin.WithLogger(cfg.Log))
	}
	p := &Peer{cfg: cfg, log: cfg.Log, src: cfg.Source, guarded: origin.New(origin.WithPolicy(cfg.Egress), origin.WithLogger(cfg.Log)),
		open:    map[string]*openTask{},
		upLimit: ratelimit.New(cfg.UploadLimit), dlLimit: ratelimit.New(cfg.DownloadLimit)}
	var serverTLS, clientTLS *tls.Config
	if cfg.TLS.Enabled() {
		var err error
		if serverTLS, err = cfg.TLS.ServerConfig(); err != nil {
			return nil, fmt.Errorf("peer: upload server TLS: %w", err)
		}
		if clientTLS, err = cfg.TLS.ClientConfig(); err != nil {
			return nil, fmt.Errorf("peer: client TLS: %w", err)
		}
	}
	if !cfg.ClusterToken.IsZero() {
		key, err := trust.DeriveKey(cfg.ClusterToken)
		if err != nil {
			return nil, fmt.Errorf("peer: derive the task credential key: %w", err)
		}
		p.taskKeys = trust.Issuer{Key: key}
	}
	if len(cfg.Supernodes) > 0 {
		c, err := wire.NewClient(cfg.Supernodes, wire.WithClusterToken(cfg.ClusterToken), wire.WithTLS(clientTLS))
		if err != nil {
			return nil, err
		}
		p.snc = c
	}
	store, err := cache.Open(cfg.DataDir, cache.WithQuota(cfg.Quota), cache.WithTTL(cfg.TTL),
		cache.WithSync(cfg.Sync), cache.WithLogger(cfg.Log))
	if err != nil {
		return nil, fmt.Errorf("open piece store: %w", err)
	}
	p.store = store
	ln, err := net.Listen("tcp", cfg.UploadListen)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("upload server: listen on %s: %w", cfg.UploadListen, err)
	}
	if serverTLS != nil {
		ln = tls.NewListener(ln, serverTLS)
	}
	p.listener = ln
	addr, err := p.advertiseAddr(ln.Addr().(*net.TCPAddr))
	if err != nil {
		ln.Close()
		store.Close()
		return nil, err
	}
	hostname, _ := os.Hostname()
	p.id = newPeerID(hostname)
	p.host = wire.Host{Hostname: hostname, UploadAddr: addr, IDC: cfg.IDC, Rack: cfg.Rack, UploadSlots: cfg.UploadSlots}
	upOpts := []upload.Option{upload.WithSlots(cfg.UploadSlots), upload.WithLimiter(p.upLimit), upload.WithLogger(cfg.Log)}
	if !p.taskKeys.Key.IsZero() {
		upOpts = append(upOpts, upload.WithTaskAuth(p.taskKeys))
	}
	p.upload = upload.New(p, upOpts...)
	p.httpSrv = httpserve.Server(p.upload, httpserve.Limits{})
	p.scheme = "http"
	if clientTLS != nil {
		p.scheme = "https"
	}
	p.client = &http.Client{Transport: &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       clientTLS,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       60 * time.Second,
		ResponseHeaderTimeout: 15 * time.Second,
	}}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := p.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.WithError(err).Error("upload server stopped")
		}
	}()
	p.log.WithFields(logrus.Fields{"peer": p.id, "upload": addr}).Debug("peer started")
	return p, nil
}

func newPeerID(hostname string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return fmt.Sprintf("%s-%d-%s", hostname, os.Getpid(), hex.EncodeToString(b))
}

func (p *Peer) advertiseAddr(a *net.TCPAddr) (string, error) {
	port := fmt.Sprint(a.Port)
	if p.cfg.AdvertiseIP != "" {
		if net.ParseIP(p.cfg.AdvertiseIP) == nil {
			return "", fmt.Errorf("advertise IP %q is not an IP address", p.cfg.AdvertiseIP)
		}
		return net.JoinHostPort(p.cfg.AdvertiseIP, port), nil
	}
	if !a.IP.IsUnspecified() {
		return net.JoinHostPort(a.IP.String(), port), nil
	}
	// Unspecified listen address: use the local address of the route to
	// the first supernode (a UDP "connect" sends nothing).
	if len(p.cfg.Supernodes) > 0 {
		if c, err := net.Dial("udp", p.cfg.Supernodes[0]); err == nil {
			ip := c.LocalAddr().(*net.UDPAddr).IP
			c.Close()
			return net.JoinHostPort(ip.String(), port), nil
		}
	}
	return net.JoinHostPort("127.0.0.1", port), nil
}

// ID is the peer's ID.
func (p *Peer) ID() string { return p.id }

// UploadAddr is the advertised host:port of the upload server.
func (p *Peer) UploadAddr() string { return p.host.UploadAddr }

// Store is the peer's piece store.
func (p *Peer) Store() *cache.Store { return p.store }

// UploadedBytes is the total of piece bytes served to others.
func (p *Peer) UploadedBytes() int64 { return p.upload.BytesServed() }

// PieceObserver is told about every piece fetched from a parent and
// stored: source "seed" or "peers", its size, and how long its request
// took. It must not block.
type PieceObserver func(source string, bytes int, took time.Duration)

// ObservePieces installs f (nil: none), e.g. a latency histogram.
func (p *Peer) ObservePieces(f PieceObserver) {
	if f == nil {
		p.onPiece.Store(nil)
		return
	}
	p.onPiece.Store(&f)
}

// UploadStats reports the upload server's slots in use, its slot count,
// and how many requests it turned away busy.
func (p *Peer) UploadStats() (inUse, slots int, rejected int64) {
	return p.upload.InUse(), p.upload.Slots(), p.upload.Rejected()
}

// Lookup implements upload.Tasks: the tasks this peer holds open (being
// downloaded, or kept for seeding; see Restore for tasks from before a
// restart).
func (p *Peer) Lookup(taskID string) (*cache.Task, func(), bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ot := p.open[taskID]; ot != nil {
		ot.lastUsed = time.Now()
		return ot.t, func() {}, true
	}
	return nil, nil, false
}

// openTaskFor creates (or resumes) the task in the store and registers it as
// held and active.
func (p *Peer) openTaskFor(ctx context.Context, meta cache.Meta) (*cache.Task, func(), error) {
	t, err := p.store.Create(ctx, meta)
	if err != nil {
		return nil, nil, fmt.Errorf("open task in store: %w", err)
	}
	p.mu.Lock()
	ot := p.open[t.ID()]
	if ot == nil {
		ot = &openTask{t: t}
		p.open[t.ID()] = ot
	} else {
		t.Close()
		t = ot.t
	}
	ot.active++
	ot.lastUsed = time.Now()
	p.mu.Unlock()
	done := func() {
		p.mu.Lock()
		ot.active--
		ot.lastUsed = time.Now()
		p.mu.Unlock()
	}
	return t, done, nil
}

// hold keeps t open for serving; the peer takes over the caller's reference
// unless it already holds one.
func (p *Peer) hold(t *cache.Task) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ot := p.open[t.ID()]; ot != nil {
		ot.lastUsed = time.Now()
		t.Close()
		return
	}
	p.open[t.ID()] = &openTask{t: t, lastUsed: time.Now()}
}

// Restore opens every complete task in the store for serving (a daemon's
// start-up: what it held before a restart is served again and announced to
// the supernode at the next heartbeat). It returns how many it opened.
func (p *Peer) Restore(ctx context.Context) (int, error) {
	stats, err := p.store.List()
	if err != nil {
		return 0, fmt.Errorf("list stored tasks: %w", err)
	}
	n := 0
	for _, st := range stats {
		if st.Pieces < st.NumPieces || st.InUse {
			continue
		}
		t, err := p.store.Open(ctx, st.Meta.TaskID)
		if err != nil {
			p.log.WithError(err).WithField("task", st.Meta.TaskID).Warn("restore task")
			continue
		}
		p.hold(t)
		n++
	}
	return n, nil
}

// Seed keeps serving held tasks and heartbeating the supernode until ctx
// ends, re-announcing held tasks when the supernode has forgotten this peer
// (after its restart). Tasks idle for idle are closed; idle <= 0 keeps all.
func (p *Peer) Seed(ctx context.Context, idle time.Duration) {
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.ctx.Done():
			return
		case <-tick.C:
		}
		if idle > 0 {
			p.closeIdle(idle)
		}
		if p.snc == nil {
			continue
		}
		err := p.snc.Heartbeat(ctx, &wire.HeartbeatRequest{PeerID: p.id, UploadedBytes: p.UploadedBytes()})
		if wire.IsCode(err, wire.CodeUnknownPeer) {
			p.announce(ctx)
		} else if err != nil {
			p.log.WithError(err).Debug("heartbeat failed")
		}
	}
}

func (p *Peer) announce(ctx context.Context) {
	p.mu.Lock()
	req := wire.AnnounceRequest{PeerID: p.id, Host: p.host}
	for id, ot := range p.open {
		req.Tasks = append(req.Tasks, wire.AnnouncedTask{TaskID: id, Bitmap: ot.t.Bitmap()})
	}
	p.mu.Unlock()
	if err := p.snc.Announce(ctx, &req); err != nil {
		p.log.WithError(err).Debug("announce failed")
	}
}

func (p *Peer) closeIdle(idle time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, ot := range p.open {
		if ot.active == 0 && time.Since(ot.lastUsed) > idle {
			ot.t.Close()
			delete(p.open, id)
			p.relays.Forget(id)
		}
	}
}

// GC runs the store's garbage collection (tasks held open are kept).
func (p *Peer) GC(ctx context.Context) ([]string, int64, error) { return p.store.GC(ctx) }

// Close leaves the swarm, stops the upload server and closes the store.
func (p *Peer) Close() error {
	if p.snc != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		p.snc.Leave(ctx, &wire.LeaveRequest{PeerID: p.id})
		cancel()
	}
	p.cancel()
	// Let uploads in flight finish briefly (children retry elsewhere
	// anyway); connections that never sent a request count as busy for
	// Shutdown, so do not wait long.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	if err := p.httpSrv.Shutdown(ctx); err != nil {
		// Idle or slow clients: close their connections outright.
		p.httpSrv.Close()
	}
	cancel()
	p.wg.Wait()
	p.mu.Lock()
	for id, ot := range p.open {
		ot.t.Close()
		delete(p.open, id)
	}
	p.mu.Unlock()
	return p.store.Close()
}
