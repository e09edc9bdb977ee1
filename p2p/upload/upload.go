// Package upload owns the data plane's server side: it serves pieces and
// piece maps of the tasks a node holds to other peers over HTTP, within an
// upload slot limit and a host-wide bandwidth limit. Peers and the
// supernode's seed run the same server. It never fetches anything; with
// task authentication it verifies, but never issues, task credentials.
//
//	GET /peer/tasks/{taskID}/pieces/{n}[?urgent=1]   piece bytes (Range allowed); urgent
//	                                                 requests (a reader is waiting) skip the fan-out limit
//	GET /peer/tasks/{taskID}/bitmap?have=K&wait=D[&gen=G]
//	                                                 piece map as JSON; waits up to D (max 10s)
//	                                                 while the holder has <= K pieces (and, with
//	                                                 gen, its relay generation is still G)
//
// A node whose Tasks implement Relayer also serves pieces it is still
// fetching (cut-through relay): a GET without Range of such a piece streams
// its bytes as they arrive, and the piece map lists those pieces in
// Relaying. The seed relays the pieces its fill reads from the origin the
// same way, with the piece's digest in a trailer (it is computed as the
// piece lands); a piece it is fetching otherwise (Arriving, on demand) is
// answered once stored. A relayed stream that cannot be completed (the relaying node's
// fetch failed or its piece did not verify) is cut short.
//
// A full server answers 503 with Retry-After; a piece it lacks is 404. A
// server with a fan-out limit (the seed) also answers 503, with
// BusyHeader: piece, for a piece it has just served to enough children: they
// should fetch it from those children instead.
//
// With WithTaskAuth, every /peer/ request must carry "Authorization: Bearer
// <task credential>" for the task in its path (401 otherwise); the child a
// piece is recorded as served to is then the credential's peer, at the
// address WithPeerAddr gives for it, and PeerHeader is ignored.
package upload

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/time/rate"

	"github.com/damselfly-p2p/damselfly/cache"
	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/meter"
	"github.com/damselfly-p2p/damselfly/trust"
)

// DigestHeader carries the served piece's digest ("sha256:<hex>").
const DigestHeader = "X-Damselfly-Piece-Digest"

// PeerHeader identifies the requesting child on piece requests:
// "<peerID> <uploadAddr>". HoldersHeader, on a 503 "piece" answer, lists the
// children that just got the piece, comma-separated in the same form, so
// the child can fetch it from them.
const (
	PeerHeader    = "X-Damselfly-Peer"
	HoldersHeader = "X-Damselfly-Holders"
)

// BusyHeader tells a 503's cause: "slots" (the server is full) or "piece"
// (this piece was just served to enough children; ask them).
const BusyHeader = "X-Damselfly-Busy"

// Tasks resolves the tasks a node can serve. The returned release function
// is called when the request is done with the task.
type Tasks interface {
	Lookup(taskID string) (t *cache.Task, release func(), ok bool)
}

// PieceFetcher is implemented by Tasks that can fetch a piece they lack on
// request (the seed, from the origin). The upload server calls it for an
// absent piece and serves the piece once it returns nil. The error's text
// goes to the requester, so it must say nothing the requester may not know.
type PieceFetcher interface {
	FetchPiece(ctx context.Context, taskID string, n int) error
}

// Redirector is implemented by Tasks that may send a child asking for a
// piece they lack to peers holding it (the seed after a failover, for
// pieces it vouches for but does not hold) rather than fetch it on demand.
type Redirector interface {
	// HeldElsewhere returns holders of piece n of taskID as
	// "<peerID> <uploadAddr>" and redirect true when the child should
	// not get the piece here now: ask the holders, or (none named) ask
	// again shortly. child is the asking peer as "<peerID> <uploadAddr>",
	// or "".
	HeldElsewhere(taskID string, n int, child string) (holders []string, redirect bool)
}

// PieceSealer is implemented by Tasks that vouch for the digests of the
// pieces they serve toward other supernodes (the seed): the seal goes in
// PieceSealHeader next to DigestHeader.
type PieceSealer interface {
	PieceSeal(taskID string, n int, digest string) string
}

// SentNotifier is implemented by Tasks that want to know when a piece
// was sent whole to a child (its response fully written: all its bytes,
// relayed or not), as the seed paces its origin fetches to the swarm.
type SentNotifier interface {
	PieceSent(taskID string, n int)
}

// PieceSealHeader carries a served piece's sealed digest (see PieceSealer
// and wire.SealedPiece).
const PieceSealHeader = "X-Damselfly-Piece-Seal"

// Arriving is implemented by Tasks that list the pieces they are fetching
// now, which children may ask for too: a Relayer streams such a piece as it
// arrives; a PieceFetcher (the seed) answers once it is stored, so that a
// child's request is already there when the piece lands.
type Arriving interface {
	// Relaying returns the pieces of taskID arriving now (nil: none), a
	// generation that changes whenever that set does, and a channel closed
	// at the next change.
	Relaying(taskID string, numPieces int) (b manifest.Bitmap, gen uint64, changed <-chan struct{})
}

// Relayer is implemented by Tasks that serve pieces they are still fetching.
type Relayer interface {
	Arriving
	// Relay returns a stream of piece n of taskID, which follows the
	// piece's arrival, and its length; ok is false when the piece is not
	// arriving now. The stream fails if the piece's fetch fails; the
	// caller closes it.
	Relay(ctx context.Context, taskID string, n int) (r io.ReadCloser, size int64, ok bool)
}

// RelayHeader marks a relayed (still arriving) piece response. Such a
// response has no Content-Length; its RelayStatusTrailer says "ok" once the
// whole piece was sent, or "failed" when the relaying node's fetch of the
// piece failed (cut, or its digest did not match): the body then ends
// short, the relaying node is not at fault, and the child asks again
// elsewhere. A relayed body that ends short without the trailer means the
// relaying node failed.
const (
	RelayHeader        = "X-Damselfly-Relay"
	RelayStatusTrailer = "X-Damselfly-Relay-Status"
)

// BitmapResponse is the body of a bitmap request. Relaying (with Arriving
// tasks) lists pieces being fetched now, which can be requested too; RelayGen is
// the generation to pass as gen to wait for a change of it.
type BitmapResponse struct {
	NumPieces int             `json:"numPieces"`
	Count     int             `json:"count"`
	Bitmap    manifest.Bitmap `json:"bitmap"`
	Relaying  manifest.Bitmap `json:"relaying,omitempty"`
	RelayGen  uint64          `json:"relayGen,omitempty"`
}

// Server serves pieces. Create it with New.
type Server struct {
	tasks   Tasks
	slots   chan struct{}
	limiter *rate.Limiter
	log     logrus.FieldLogger
	onServe func(taskID string, n int64)
	served  atomic.Int64
	busy    atomic.Int64

	fanout       int
	fanoutWindow time.Duration
	fanMu        sync.Mutex
	fan          map[string][]pieceFan

	taskAuth bool
	issuer   trust.Issuer
	peerAddr func(peerID string) (string, bool)
}

// pieceFan is how often and when a piece was last served, and to whom.
type pieceFan struct {
	count   int
	last    time.Time
	holders []string // PeerHeader values of recent recipients
}

// Option configures a Server.
type Option func(*Server)

// WithSlots caps concurrent piece uploads (default 8).
func WithSlots(n int) Option {
	return func(s *Server) {
		if n > 0 {
			s.slots = make(chan struct{}, n)
		}
	}
}

// WithLimiter caps upload bandwidth (bytes/s) across all requests.
func WithLimiter(l *rate.Limiter) Option { return func(s *Server) { s.limiter = l } }

// WithFanout limits how a fresh piece spreads from this server, as a seed
// in super-seeding mode: once a piece has been served n times, further
// requests for it within window of its last upload are refused (503,
// BusyHeader "piece"), so that children fetch it from each other. Once a
// window passes with no upload of the piece, its count starts over, so a
// swarm that cannot relay the piece, or a later lone child, still gets it.
func WithFanout(n int, window time.Duration) Option {
	return func(s *Server) { s.fanout, s.fanoutWindow = n, window }
}

// WithTaskAuth makes the server serve pieces and bitmaps only to requests
// bearing a task credential, verified by v, for the task in the path;
// others get 401. The credential's peer is the child recorded for fan-out.
func WithTaskAuth(v trust.Issuer) Option {
	return func(s *Server) { s.taskAuth, s.issuer = true, v }
}

// WithPeerAddr tells the server the upload address of a peer the
// supernode knows: an authenticating server (WithTaskAuth) takes the
// holders it names in fan-out answers from it, and in any mode a recipient
// for which addr reports false (it left the swarm or expired) is neither
// named as a holder nor counted towards the piece's fan-out.
func WithPeerAddr(addr func(peerID string) (string, bool)) Option {
	return func(s *Server) { s.peerAddr = addr }
}

// WithLogger sets the logger.
func WithLogger(l logrus.FieldLogger) Option { return func(s *Server) { s.log = l } }

// WithOnServe is called after each piece upload with the bytes sent.
func WithOnServe(f func(taskID string, n int64)) Option { return func(s *Server) { s.onServe = f } }

// New returns a server over tasks.
func New(tasks Tasks, opts ...Option) *Server {
	s := &Server{tasks: tasks, slots: make(chan struct{}, 8), log: logrus.StandardLogger()}
	for _, o := range opts {
		o(s)
	}
	return s
}

// BytesServed is the total of piece bytes sent.
func (s *Server) BytesServed() int64 { return s.served.Load() }

// Rejected is how many piece requests were turned away as busy.
func (s *Server) Rejected() int64 { return s.busy.Load() }

// Slots is the upload slot count.
func (s *Server) Slots() int { return cap(s.slots) }

// InUse is how many piece uploads run now.
func (s *Server) InUse() int { return len(s.slots) }

// ServeHTTP routes /peer/ requests.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/peer/tasks/"), "/")
	child := r.Header.Get(PeerHeader)
	if s.taskAuth {
		child = ""
		claims, ok := s.authorize(r, parts[0])
		if !ok {
			trust.Unauthorized(w)
			return
		}
		if s.peerAddr != nil {
			if addr, ok := s.peerAddr(claims.PeerID); ok && addr != "" {
				child = claims.PeerID + " " + addr
			}
		}
	}
	switch {
	case len(parts) == 3 && parts[1] == "pieces":
		n, err := strconv.Atoi(parts[2])
		if err != nil || n < 0 {
			http.Error(w, "bad piece number", http.StatusBadRequest)
			return
		}
		s.servePiece(w, r, parts[0], n, child)
	case len(parts) == 2 && parts[1] == "bitmap":
		s.serveBitmap(w, r, parts[0])
	default:
		http.NotFound(w, r)
	}
}

// authorize checks the request's task credential for taskID.
func (s *Server) authorize(r *http.Request, taskID string) (trust.Claims, bool) {
	token, ok := trust.BearerToken(r)
	if !ok || taskID == "" || !strings.HasPrefix(r.URL.Path, "/peer/tasks/") {
		return trust.Claims{}, false
	}
	claims, err := s.issuer.VerifyTask(token, taskID)
	if err != nil {
		s.log.WithError(err).Debug("upload: refused a piece request")
		return trust.Claims{}, false
	}
	return claims, true
}

func (s *Server) servePiece(w http.ResponseWriter, r *http.Request, taskID string, n int, child string) {
	t, release, ok := s.tasks.Lookup(taskID)
	if !ok {
		http.Error(w, "unknown task", http.StatusNotFound)
		return
	}
	defer release()
	if n >= t.NumPieces() {
		http.Error(w, "no such piece", http.StatusNotFound)
		return
	}
	if rd, ok := s.tasks.(Redirector); ok && !t.Has(n) && r.Method == http.MethodGet && r.URL.Query().Get("urgent") == "" {
		// Answered like a piece just served to enough children: the
		// child asks the holders, and asks here again (urgent) only once
		// they are all gone; with no holder named, it asks here again
		// shortly.
		if holders, redirect := rd.HeldElsewhere(taskID, n, child); redirect {
			s.busy.Add(1)
			w.Header().Set(BusyHeader, "piece")
			w.Header().Set(HoldersHeader, strings.Join(holders, ","))
			http.Error(w, "piece held by other peers; fetch it from them", http.StatusServiceUnavailable)
			return
		}
	}
	var relay io.ReadCloser
	var relaySize int64
	// openRelay opens a stream of the piece if it is arriving now (a
	// whole-piece GET only).
	openRelay := func() bool {
		rl, isRelayer := s.tasks.(Relayer)
		if !isRelayer || r.Method != http.MethodGet || r.Header.Get("Range") != "" {
			return false
		}
		var ok bool
		relay, relaySize, ok = rl.Relay(r.Context(), taskID, n)
		return ok
	}
	if f, ok := s.tasks.(PieceFetcher); ok && !t.Has(n) && !openRelay() {
		// Not arriving here now: fetch it (or wait for the fetch that
		// has it).
		if err := f.FetchPiece(r.Context(), taskID, n); err != nil {
			s.log.WithError(err).WithField("piece", n).Warn("fetch piece on demand")
			http.Error(w, "piece not available: "+err.Error(), http.StatusBadGateway)
			return
		}
	}
	var sec *io.SectionReader
	if relay == nil {
		var err error
		if sec, err = t.PieceReader(n); err != nil && !openRelay() {
			if sec, err = t.PieceReader(n); err != nil {
				// (Tried again: the piece may have been stored meanwhile.)
				http.Error(w, "piece not present", http.StatusNotFound)
				return
			}
		}
	}
	if relay != nil {
		defer relay.Close()
	}
	// Take a slot first: a request turned away for lack of slots must not
	// count towards the piece's fan-out.
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		s.busy.Add(1)
		w.Header().Set("Retry-After", "1")
		w.Header().Set(BusyHeader, "slots")
		http.Error(w, "upload slots full", http.StatusServiceUnavailable)
		return
	}
	if r.Method == http.MethodGet && r.URL.Query().Get("urgent") == "" {
		if ok, holders := s.admitPiece(taskID, n, t.NumPieces(), child); !ok {
			s.busy.Add(1)
			w.Header().Set(BusyHeader, "piece")
			w.Header().Set(HoldersHeader, strings.Join(holders, ","))
			http.Error(w, "piece just served to other peers; fetch it from them", http.StatusServiceUnavailable)
			return
		}
	}
	t.Touch()
	if ps, ok := s.tasks.(PieceSealer); ok && relay == nil {
		if d, ok := t.PieceDigest(n); ok {
			if seal := ps.PieceSeal(taskID, n, d.String()); seal != "" {
				w.Header().Set(PieceSealHeader, seal)
			}
		}
	}
	var sent atomic.Int64
	if relay != nil {
		s.serveRelay(w, r, t, taskID, n, relay, relaySize, &sent)
		s.done(taskID, n, sent.Load(), relaySize)
		return
	}
	if s.limiter == nil && r.Method == http.MethodGet && r.Header.Get("Range") == "" {
		if s.sendFile(w, t, n, sec, &sent) {
			s.done(taskID, n, sent.Load(), sec.Size())
			return
		}
	}
	if r.Method == http.MethodGet && r.Header.Get("Range") == "" {
		s.sendPaced(w, r, t, n, sec, &sent)
		s.done(taskID, n, sent.Load(), sec.Size())
		return
	}
	rw := pieceResponse{ResponseWriter: w,
		Body: meter.NewWriter(&limitedWriter{w: w, ctx: r.Context(), limiter: s.limiter}, &sent)}
	w.Header().Set("Content-Type", "application/octet-stream")
	if d, ok := t.PieceDigest(n); ok {
		w.Header().Set(DigestHeader, d.String())
	}
	http.ServeContent(rw, r, "", time.Time{}, sec)
	s.done(taskID, n, sent.Load(), sec.Size())
}

// done counts a piece response of sent bytes of piece n (size bytes) and
// tells a SentNotifier when the whole piece went out.
func (s *Server) done(taskID string, n int, sent, size int64) {
	s.served.Add(sent)
	if s.onServe != nil {
		s.onServe(taskID, sent)
	}
	if sn, ok := s.tasks.(SentNotifier); ok && sent == size && size > 0 {
		sn.PieceSent(taskID, n)
	}
}

// serveRelay streams a piece that is still arriving, as it arrives. Its
// digest (and, from a PieceSealer, its seal) follow in trailers once the
// piece is verified and stored: a child that does not know the digest yet
// (the seed computes it as the piece lands) checks the bytes against it.
func (s *Server) serveRelay(w http.ResponseWriter, r *http.Request, t *cache.Task, taskID string, n int, relay io.Reader, size int64, sent *atomic.Int64) {
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set(RelayHeader, strconv.FormatInt(size, 10))
	h.Set("Trailer", RelayStatusTrailer+", "+DigestHeader+", "+PieceSealHeader)
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	body := meter.NewWriter(&limitedWriter{w: w, ctx: r.Context(), limiter: s.limiter}, sent)
	buf := relayBufs.Get().(*[]byte)
	defer relayBufs.Put(buf)
	for {
		k, err := relay.Read(*buf)
		if k > 0 {
			// A bounded server's write deadline moves on with each chunk.
			if _, werr := body.Write((*buf)[:k]); werr != nil {
				s.log.WithError(werr).WithField("piece", n).Debug("relay piece")
				panic(http.ErrAbortHandler)
			}
			rc.Flush()
		}
		switch {
		case err == io.EOF:
			h.Set(RelayStatusTrailer, "ok")
			if d, ok := t.PieceDigest(n); ok {
				h.Set(DigestHeader, d.String())
				if ps, ok := s.tasks.(PieceSealer); ok {
					if seal := ps.PieceSeal(taskID, n, d.String()); seal != "" {
						h.Set(PieceSealHeader, seal)
					}
				}
			}
			return
		case err != nil && r.Context().Err() != nil:
			panic(http.ErrAbortHandler)
		case err != nil:
			s.log.WithError(err).WithField("piece", n).Debug("relay piece: the piece's fetch failed")
			h.Set(RelayStatusTrailer, "failed")
			return
		}
	}
}

// relayBufs are the copy buffers of relayed streams.
var relayBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// admitPiece applies the fan-out limit and counts the upload; when it
// refuses, it returns the recent recipients to ask instead.
func (s *Server) admitPiece(taskID string, n, numPieces int, peer string) (bool, []string) {
	if s.fanout <= 0 || n >= numPieces {
		return true, nil
	}
	now := time.Now()
	s.fanMu.Lock()
	defer s.fanMu.Unlock()
	if s.fan == nil {
		s.fan = map[string][]pieceFan{}
	}
	f := s.fan[taskID]
	if len(f) != numPieces {
		f = make([]pieceFan, numPieces)
		s.fan[taskID] = f
	}
	p := &f[n]
	if now.Sub(p.last) >= s.fanoutWindow {
		// Quiet for a window: whoever got it may be gone; start over.
		p.count, p.holders = 0, p.holders[:0]
	}
	if p.count >= s.fanout && s.peerAddr != nil {
		s.dropGoneLocked(p)
	}
	if p.count >= s.fanout {
		return false, append([]string(nil), p.holders...)
	}
	p.count++
	p.last = now
	if peer != "" && len(p.holders) < 2*s.fanout {
		p.holders = append(p.holders, peer)
	}
	return true, nil
}

// dropGoneLocked forgets p's holders that peerAddr no longer knows: their
// uploads no longer count, since nobody can fetch the piece from them. fanMu
// must be held.
func (s *Server) dropGoneLocked(p *pieceFan) {
	live := p.holders[:0]
	for _, h := range p.holders {
		id, _, _ := strings.Cut(h, " ")
		if _, ok := s.peerAddr(id); ok {
			live = append(live, h)
		} else if p.count > 0 {
			p.count--
		}
	}
	clear(p.holders[len(live):])
	p.holders = live
}

// Forget drops the fan-out record of a task (after it is removed).
func (s *Server) Forget(taskID string) {
	s.fanMu.Lock()
	delete(s.fan, taskID)
	s.fanMu.Unlock()
}

func (s *Server) serveBitmap(w http.ResponseWriter, r *http.Request, taskID string) {
	t, release, ok := s.tasks.Lookup(taskID)
	if !ok {
		http.Error(w, "unknown task", http.StatusNotFound)
		return
	}
	defer release()
	have, _ := strconv.Atoi(r.URL.Query().Get("have"))
	wait, _ := time.ParseDuration(r.URL.Query().Get("wait"))
	if wait > 10*time.Second {
		wait = 10 * time.Second
	}
	rl, _ := s.tasks.(Arriving)
	gen, genErr := strconv.ParseUint(r.URL.Query().Get("gen"), 10, 64)
	followRelays := rl != nil && genErr == nil
	// relayed returns whether the relay generation moved past gen, and a
	// channel closed at its next change (nil without a Relayer).
	relayed := func() (bool, <-chan struct{}) {
		if !followRelays {
			return false, nil
		}
		_, g, ch := rl.Relaying(taskID, t.NumPieces())
		return g != gen, ch
	}
	if wait > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		woken := false
		for t.Count() <= have && t.Count() < t.NumPieces() {
			ch := t.Changed()
			moved, rch := relayed()
			if moved || t.Count() > have {
				break
			}
			select {
			case <-ch:
				woken = true
				continue
			case <-rch:
				woken = true
				continue
			case <-ctx.Done():
			}
			break
		}
		if woken {
			// Changes come in pairs (a piece stored, the next one's fetch
			// starting): answer both at once rather than each to every
			// watching child.
			settle := time.NewTimer(bitmapSettle)
			select {
			case <-settle.C:
			case <-r.Context().Done():
			}
			settle.Stop()
		}
		cancel()
	}
	resp := BitmapResponse{NumPieces: t.NumPieces()}
	if rl != nil {
		resp.Relaying, resp.RelayGen, _ = rl.Relaying(taskID, resp.NumPieces)
	}
	resp.Bitmap = t.Bitmap()
	resp.Count = resp.Bitmap.Count()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}

// bitmapSettle is how long a piece map long poll woken by a change waits
// for the changes that follow it before answering. It is on the path of
// every piece a lone child takes from a paced seed (the seed's fill waits
// for the child to take what it holds, supernode/seedpace.go): at 30 ms a
// cold 1 GiB dfget took 12.2 s against 3.35 s unpaced; at 5 ms 5.6-7.4 s.
const bitmapSettle = 5 * time.Millisecond

// sendChunk is how much of a piece one sendfile call sends: between chunks
// the write deadline of a bounded server (httpserve) moves on, so a slow
// child is cut only when it stalls.
const sendChunk = 4 << 20

// sendFile serves piece n whole (no limiter, no Range) from the store's data
// file, letting the connection send it with sendfile(2) (no copy through
// user space; TLS connections copy as before). It reports false, having
// written nothing, when the file cannot be opened; the caller then serves
// the piece the ordinary way.
func (s *Server) sendFile(w http.ResponseWriter, t *cache.Task, n int, sec *io.SectionReader, sent *atomic.Int64) bool {
	_, off, size := sec.Outer()
	f, err := os.Open(t.DataPath())
	if err != nil {
		return false
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return false
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(size, 10))
	h.Set("Accept-Ranges", "bytes")
	if d, ok := t.PieceDigest(n); ok {
		h.Set(DigestHeader, d.String())
	}
	w.WriteHeader(http.StatusOK)
	dst := readerFrom(w)
	for left := size; left > 0; {
		// A write of nothing moves a bounded server's write deadline on.
		w.Write(nil)
		k, err := dst.ReadFrom(io.LimitReader(f, min(left, sendChunk)))
		sent.Add(k)
		left -= k
		if err != nil || k == 0 {
			if err != nil {
				s.log.WithError(err).WithField("piece", n).Debug("send piece")
			}
			break
		}
	}
	return true
}

// sendPaced serves piece n whole (no Range) through the upload limiter, in
// chunks of up to maxLimitChunk read from the store with one buffer (what
// http.ServeContent would do in 32 KiB writes, each a wait on the limiter).
func (s *Server) sendPaced(w http.ResponseWriter, r *http.Request, t *cache.Task, n int, sec *io.SectionReader, sent *atomic.Int64) {
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(sec.Size(), 10))
	h.Set("Accept-Ranges", "bytes")
	if d, ok := t.PieceDigest(n); ok {
		h.Set(DigestHeader, d.String())
	}
	w.WriteHeader(http.StatusOK)
	body := meter.NewWriter(&limitedWriter{w: w, ctx: r.Context(), limiter: s.limiter}, sent)
	buf := relayBufs.Get().(*[]byte)
	defer relayBufs.Put(buf)
	if _, err := io.CopyBuffer(onlyWriter{body}, sec, *buf); err != nil {
		s.log.WithError(err).WithField("piece", n).Debug("send piece")
	}
}

// onlyWriter hides any ReadFrom of the writer it wraps, so that
// io.CopyBuffer uses the given buffer.
type onlyWriter struct{ io.Writer }

// readerFrom is the innermost io.ReaderFrom among w and the writers it
// wraps (the server's own, which uses sendfile), or w as a plain writer.
func readerFrom(w http.ResponseWriter) io.ReaderFrom {
	for cur := w; ; {
		if rf, ok := cur.(io.ReaderFrom); ok {
			return rf
		}
		u, ok := cur.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return copyTo{w}
		}
		cur = u.Unwrap()
	}
}

// copyTo is an io.ReaderFrom that copies through user space.
type copyTo struct{ w io.Writer }

func (c copyTo) ReadFrom(r io.Reader) (int64, error) { return io.Copy(c.w, r) }

// pieceResponse is the ResponseWriter a piece is served through: its body
// goes to Body (which paces and counts it). Having no ReadFrom, it keeps
// ServeContent's io.Copy on Body instead of the connection's sendfile path.
type pieceResponse struct {
	http.ResponseWriter
	Body io.Writer
}

func (r pieceResponse) Write(p []byte) (int, error) { return r.Body.Write(p) }

// limitedWriter writes to w in chunks the upload limiter (nil: none) admits,
// waiting on it before each.
type limitedWriter struct {
	w       io.Writer
	ctx     context.Context
	limiter *rate.Limiter
}

func (c *limitedWriter) Write(p []byte) (int, error) {
	if c.limiter == nil {
		return c.w.Write(p)
	}
	written := 0
	for len(p) > 0 {
		chunk := p
		if max := limitChunk(c.limiter); len(chunk) > max {
			chunk = chunk[:max]
		}
		if err := c.limiter.WaitN(c.ctx, len(chunk)); err != nil {
			return written, err
		}
		n, err := c.w.Write(chunk)
		written += n
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// limitChunk is the largest write the limiter admits in one WaitN: its
// burst, up to maxLimitChunk. Each chunk is one wait (a timer and a
// wakeup) and a write or two, so small chunks under a low rate cost more
// CPU in wakeups than the bytes do.
func limitChunk(l *rate.Limiter) int {
	b := l.Burst()
	if b <= 0 || b > maxLimitChunk {
		return maxLimitChunk
	}
	return b
}

// maxLimitChunk bounds one paced write (see limitChunk).
const maxLimitChunk = 256 << 10
