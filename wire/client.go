package wire

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/trust"
)

// Error is a supernode's error answer.
type Error struct {
	HTTPStatus int
	// RetryAfter is the answer's Retry-After (for 429), at least 100ms.
	RetryAfter time.Duration
	ErrorResponse
}

func (e *Error) Error() string {
	if e.OriginStatus != 0 {
		return e.Message
	}
	return fmt.Sprintf("supernode: %s (%s)", e.Message, e.Code)
}

// IsCode reports whether err is a supernode Error with the given code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// ErrUnreachable wraps failures to reach any supernode.
var ErrUnreachable = errors.New("no supernode reachable")

// Default intervals of a Client's membership upkeep.
const (
	// DefaultResolveInterval is how often a supernode DNS name is resolved
	// again (a Kubernetes headless service gains and loses addresses).
	DefaultResolveInterval = 30 * time.Second
	// DefaultProbeInterval is how often a supernode marked down is probed
	// with GET /healthz; it takes its tasks back once it answers.
	DefaultProbeInterval = 2 * time.Second
)

// Client talks to a cluster of supernodes. Each task has an owner: the
// live supernode ranked first by rendezvous hashing of the task ID
// (HRWOrder). Task-scoped calls (Register, Sync, each owner's share of an
// Announce) go to the owner, and fall over to the next supernode in the
// task's HRW order on transport errors; the supernode that failed is
// marked down and probed (GET /healthz) every probe interval until it
// answers again, when its tasks move back to it. Peer-scoped calls
// (Heartbeat, Leave) go to every live supernode the peer has talked to.
//
// A configured address whose host is a DNS name resolving to several
// addresses stands for all of them (one supernode each), resolved again
// every resolve interval. Each supernode signs its own peer credentials,
// so the client keeps one per supernode address.
//
// With a single supernode it behaves as a plain client of that supernode.
type Client struct {
	entries []string // configured host:port entries
	http    *http.Client
	scheme  string
	// cluster and admin are the cluster and admin tokens (zero: none).
	cluster, admin trust.Secret

	lookup        func(ctx context.Context, host string) ([]string, error)
	resolveEvery  time.Duration
	probeEvery    time.Duration
	probeTimeout  time.Duration
	taskPlaceKeep time.Duration

	mu         sync.Mutex
	members    []string // current supernode addresses, sorted
	nodes      map[string]*node
	resolvedAt time.Time
	resolving  bool
	current    string // the supernode that last answered
	// places maps a task ID to the supernode the peer last registered,
	// synced or announced it at.
	places map[string]place
}

// node is what the client knows of one supernode address.
type node struct {
	down    bool
	checked time.Time // when it was last marked down or probed
	probing bool
	talked  bool   // a peer call was answered here
	cred    string // the peer credential it issued ("" before one)
	// tlsName is the DNS name the address was resolved from (server name
	// for TLS); hc is then its own HTTP client.
	tlsName string
	hc      *http.Client
}

type place struct {
	addr string
	at   time.Time
}

// Option configures a Client.
type Option func(*Client)

// WithClusterToken makes the client authenticate with the cluster token
// (registrations of a new peer ID, and any call before the supernode has
// issued a peer credential).
func WithClusterToken(s trust.Secret) Option { return func(c *Client) { c.cluster = s } }

// WithAdminToken makes status and preheat calls carry the admin token.
func WithAdminToken(s trust.Secret) Option { return func(c *Client) { c.admin = s } }

// WithTLS makes the client speak HTTPS with cfg (nil: plain HTTP).
func WithTLS(cfg *tls.Config) Option {
	return func(c *Client) {
		if cfg == nil {
			return
		}
		c.scheme = "https"
		c.http.Transport.(*http.Transport).TLSClientConfig = cfg
	}
}

// WithIntervals sets how often DNS names are resolved again and how often
// a supernode marked down is probed (zero: the defaults).
func WithIntervals(resolve, probe time.Duration) Option {
	return func(c *Client) {
		if resolve > 0 {
			c.resolveEvery = resolve
		}
		if probe > 0 {
			c.probeEvery = probe
		}
	}
}

// WithResolver replaces the DNS lookup of supernode names (tests).
func WithResolver(lookup func(ctx context.Context, host string) ([]string, error)) Option {
	return func(c *Client) { c.lookup = lookup }
}

// NewClient returns a client for the supernodes at addrs (host:port; a
// host may be a DNS name standing for several supernodes).
func NewClient(addrs []string, opts ...Option) (*Client, error) {
	var clean []string
	for _, a := range addrs {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("supernode address %q: want HOST:PORT: %w", a, err)
		}
		if !slices.Contains(clean, a) {
			clean = append(clean, a)
		}
	}
	if len(clean) == 0 {
		return nil, errors.New("no supernode address given")
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second,
	}
	c := &Client{entries: clean, http: &http.Client{Transport: tr}, scheme: "http",
		lookup: net.DefaultResolver.LookupHost, resolveEvery: DefaultResolveInterval,
		probeEvery: DefaultProbeInterval, probeTimeout: 2 * time.Second, taskPlaceKeep: 2 * time.Minute,
		nodes: map[string]*node{}, places: map[string]place{}}
	for _, o := range opts {
		o(c)
	}
	// Until names are resolved, every entry is a member as given.
	c.setMembers(literalMembers(clean))
	c.current = clean[0]
	return c, nil
}

// Scheme is "https" when the client uses TLS, else "http".
func (c *Client) Scheme() string { return c.scheme }

// PeerCredential returns the credential the supernode that last answered
// issued to this client's peer, or "" before one was issued.
func (c *Client) PeerCredential() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.nodes[c.current]; n != nil {
		return n.cred
	}
	return ""
}

// Addrs returns the configured supernode addresses.
func (c *Client) Addrs() []string { return c.entries }

// Current returns the supernode address last used successfully.
func (c *Client) Current() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.current
}

// Members returns the supernode addresses the configured ones stand for
// (DNS names resolved), sorted.
func (c *Client) Members(ctx context.Context) []string {
	c.refresh(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.members)
}

// Live reports whether addr is not marked down.
func (c *Client) Live(addr string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[addr]
	return n != nil && !n.down
}

// Owner returns the supernode that owns taskID now: the first live one in
// the task's HRW order (the first of all when none is live).
func (c *Client) Owner(ctx context.Context, taskID string) string {
	order := c.order(ctx, taskID)
	return order[0]
}

// Register registers a download at the task's owner; it may wait while the
// seed learns the content's length from the origin. A rate-limited
// registration (429) is retried after the supernode's Retry-After, as long
// as ctx allows.
func (c *Client) Register(ctx context.Context, req *RegisterRequest) (*RegisterResponse, error) {
	key := req.TaskID
	if key == "" {
		key = registerKey(req)
	}
	for {
		var resp RegisterResponse
		addr, err := c.routed(ctx, c.order(ctx, key), "/api/v1/tasks/register", jsonBody(req), &resp, 2*time.Minute)
		var e *Error
		if errors.As(err, &e) && e.Code == CodeRateLimited {
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("%w (%w)", ctx.Err(), err)
			case <-time.After(e.RetryAfter):
				continue
			}
		}
		if err != nil {
			return nil, err
		}
		id := resp.TaskID
		if id == "" {
			id = key
		}
		c.placeTask(id, addr)
		return &resp, nil
	}
}

// registerKey is the task ID a registration without one derives (as the
// supernode does), or its URL when that fails (the supernode then refuses
// it anyway).
func registerKey(req *RegisterRequest) string {
	if req.Digest != "" {
		if d, err := manifest.ParseDigest(req.Digest); err == nil {
			return manifest.DigestTaskID(d)
		}
	} else if id, err := manifest.TaskID(req.URL, req.Tag, req.Filters); err == nil {
		return id
	}
	return req.URL
}

// Sync reports progress to the task's owner and fetches digests and
// parents. An owner that does not know the peer or the task (it took the
// task over, or restarted) answers unknown_peer or unknown_task: the peer
// registers again there.
func (c *Client) Sync(ctx context.Context, req *SyncRequest) (*SyncResponse, error) {
	var resp SyncResponse
	addr, err := c.routed(ctx, c.order(ctx, req.TaskID), "/api/v1/tasks/sync", jsonBody(req), &resp, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c.placeTask(req.TaskID, addr)
	return &resp, nil
}

// Heartbeat keeps the peer alive at every live supernode it has talked to.
// It answers unknown_peer (so the peer announces what it holds) when one
// of them forgot the peer, or when a task the peer holds has moved to
// another owner since the peer last reported it.
func (c *Client) Heartbeat(ctx context.Context, req *HeartbeatRequest) error {
	targets := c.talkedLive(ctx)
	if len(targets) == 0 {
		targets = c.order(ctx, req.PeerID)[:1]
	}
	var unknown error
	var errs []error
	answered := 0
	for _, addr := range targets {
		err := c.one(ctx, peerCall, addr, http.MethodPost, "/api/v1/peers/heartbeat", mustJSON(req), nil, 5*time.Second)
		switch {
		case err == nil:
			answered++
		case isTransport(err):
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		case IsCode(err, CodeUnknownPeer):
			answered++
			unknown = err
		default:
			answered++
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		}
	}
	if unknown != nil {
		return unknown
	}
	if moved := c.movedTask(ctx); moved != "" {
		return &Error{HTTPStatus: http.StatusNotFound, ErrorResponse: ErrorResponse{Code: CodeUnknownPeer,
			Message: fmt.Sprintf("task %.12s moved to supernode %s; announce again", moved, c.Owner(ctx, moved))}}
	}
	if answered == 0 {
		return fmt.Errorf("%w: %w", ErrUnreachable, errors.Join(errs...))
	}
	return errors.Join(errs...)
}

// Announce tells each task's owner that the peer holds it. With no tasks,
// it introduces the peer to one supernode.
func (c *Client) Announce(ctx context.Context, req *AnnounceRequest) error {
	if len(req.Tasks) == 0 {
		_, err := c.routed(ctx, c.order(ctx, req.PeerID), "/api/v1/peers/announce", jsonBody(req), nil, 10*time.Second)
		return err
	}
	pending := req.Tasks
	var errs []error
	for round := 0; len(pending) > 0 && round < 8; round++ {
		groups := map[string][]AnnouncedTask{}
		var addrs []string
		for _, t := range pending {
			owner := c.Owner(ctx, t.TaskID)
			if _, ok := groups[owner]; !ok {
				addrs = append(addrs, owner)
			}
			groups[owner] = append(groups[owner], t)
		}
		pending = nil
		for _, addr := range addrs {
			part := *req
			part.Tasks = groups[addr]
			err := c.one(ctx, peerCall, addr, http.MethodPost, "/api/v1/peers/announce", mustJSON(&part), nil, 10*time.Second)
			switch {
			case err == nil:
				for _, t := range part.Tasks {
					c.placeTask(t.TaskID, addr)
				}
			case isTransport(err) && ctx.Err() == nil && c.anyLive():
				// addr is marked down now: its tasks go to their next owner.
				pending = append(pending, part.Tasks...)
			default:
				errs = append(errs, fmt.Errorf("announce %d tasks to %s: %w", len(part.Tasks), addr, err))
			}
		}
	}
	c.prunePlaces(req.Tasks)
	return errors.Join(errs...)
}

// Leave says the peer is going away, to every supernode it has talked to.
func (c *Client) Leave(ctx context.Context, req *LeaveRequest) error {
	var errs []error
	for _, addr := range c.talkedLive(ctx) {
		if err := c.one(ctx, peerCall, addr, http.MethodPost, "/api/v1/peers/leave", mustJSON(req), nil, 3*time.Second); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		}
	}
	return errors.Join(errs...)
}

// Status fetches the status document of the current supernode (failing
// over to the others in turn).
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	if err := c.Admin(ctx, http.MethodGet, "/api/v1/status", nil, &st, 10*time.Second); err != nil {
		return nil, err
	}
	return &st, nil
}

// Admin sends an admin call (status, preheats): method and path on the
// current supernode (failing over to the others in turn), in (if not nil)
// as the JSON body, the JSON answer decoded into out (if not nil).
func (c *Client) Admin(ctx context.Context, method, path string, in, out any, timeout time.Duration) error {
	members := c.Members(ctx)
	c.mu.Lock()
	start := max(slices.Index(members, c.current), 0)
	c.mu.Unlock()
	order := append(slices.Clone(members[start:]), members[:start]...)
	return c.adminOrdered(ctx, order, method, path, in, out, timeout)
}

// AdminFor sends an admin call about taskID to the task's owner, failing
// over in the task's HRW order (preheats go to the owner). It returns the
// address that answered.
func (c *Client) AdminFor(ctx context.Context, taskID, method, path string, in, out any, timeout time.Duration) (string, error) {
	var at string
	order := c.order(ctx, taskID)
	for i, addr := range order {
		at = addr
		err := c.adminOrdered(ctx, order[i:i+1], method, path, in, out, timeout)
		if err == nil || !errors.Is(err, ErrUnreachable) || ctx.Err() != nil {
			return at, err
		}
		if i == len(order)-1 {
			return "", err
		}
	}
	return "", fmt.Errorf("%w: no supernode", ErrUnreachable)
}

// AdminAt sends an admin call to the supernode at addr only.
func (c *Client) AdminAt(ctx context.Context, addr, method, path string, in, out any, timeout time.Duration) error {
	return c.adminOrdered(ctx, []string{addr}, method, path, in, out, timeout)
}

func (c *Client) adminOrdered(ctx context.Context, order []string, method, path string, in, out any, timeout time.Duration) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("encode %s request: %w", path, err)
		}
	}
	var errs []error
	for _, addr := range order {
		err := c.one(ctx, adminCall, addr, method, path, body, out, timeout)
		if err == nil || !isTransport(err) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	return fmt.Errorf("%w: %w", ErrUnreachable, errors.Join(errs...))
}

func jsonBody(v any) func(string) ([]byte, error) {
	return func(string) ([]byte, error) { return json.Marshal(v) }
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("wire: encode %T: %v", v, err)) // plain structs always encode
	}
	return b
}

// routed sends a peer call to the supernodes of order in turn: only
// transport errors fail over; an answer (even an error answer) is final.
// It returns the address that answered.
func (c *Client) routed(ctx context.Context, order []string, path string, body func(addr string) ([]byte, error), out any, timeout time.Duration) (string, error) {
	var errs []error
	for _, addr := range order {
		b, err := body(addr)
		if err != nil {
			return "", fmt.Errorf("encode %s request: %w", path, err)
		}
		err = c.one(ctx, peerCall, addr, http.MethodPost, path, b, out, timeout)
		if err == nil || !isTransport(err) {
			return addr, err
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	return "", fmt.Errorf("%w: %w", ErrUnreachable, errors.Join(errs...))
}

type transportError struct{ err error }

func (e transportError) Error() string { return e.err.Error() }
func (e transportError) Unwrap() error { return e.err }

func isTransport(err error) bool {
	var t transportError
	return errors.As(err, &t)
}

// endpoint classes choose the credential a call carries.
type endpoint int

const (
	peerCall  endpoint = iota // register, sync, heartbeat, announce, leave
	adminCall                 // status, preheats
)

// one sends one call to addr, and marks addr down on a transport error,
// up on an answer.
func (c *Client) one(ctx context.Context, kind endpoint, addr, method, path string, body []byte, out any, timeout time.Duration) error {
	err := c.doOne(ctx, kind, addr, method, path, body, out, timeout)
	switch {
	case err != nil && isTransport(err):
		if ctx.Err() == nil {
			c.markDown(addr)
		}
	default:
		c.mu.Lock()
		if n := c.nodes[addr]; n != nil {
			n.down = false
			if kind == peerCall {
				n.talked = true
			}
		}
		c.current = addr
		c.mu.Unlock()
	}
	return err
}

func (c *Client) doOne(ctx context.Context, kind endpoint, addr, method, path string, body []byte, out any, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.scheme+"://"+addr+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	auth, withCred := c.bearer(kind, addr)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.httpFor(addr).Do(req)
	if err != nil {
		return transportError{err}
	}
	defer resp.Body.Close()
	if kind == peerCall {
		c.mu.Lock()
		if n := c.nodes[addr]; n != nil {
			if cred := resp.Header.Get(PeerCredentialHeader); cred != "" {
				n.cred = cred
			} else if resp.StatusCode == http.StatusUnauthorized {
				// A stale credential (a lost key): the next registration
				// starts again from the cluster token.
				n.cred = ""
			}
		}
		c.mu.Unlock()
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return transportError{fmt.Errorf("read %s answer: %w", path, err)}
	}
	if resp.StatusCode >= 300 {
		e := &Error{HTTPStatus: resp.StatusCode, RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}
		if json.Unmarshal(data, &e.ErrorResponse) != nil || e.Code == "" {
			e.Code = CodeInternal
			e.Message = fmt.Sprintf("%s answered %s", path, resp.Status)
		}
		if e.Code == CodeShuttingDown {
			return transportError{e}
		}
		if kind == peerCall && resp.StatusCode == http.StatusUnauthorized && !withCred && !c.cluster.IsZero() &&
			(strings.HasSuffix(path, "/sync") || strings.HasSuffix(path, "/heartbeat")) {
			// This supernode never issued the peer a credential (it took a
			// task over from a dead owner): to the peer, it does not know
			// it yet, and a registration or announce introduces it.
			e.Code = CodeUnknownPeer
			e.Message = fmt.Sprintf("supernode %s has not met this peer yet; register again", addr)
		}
		return e
	}
	if out == nil || len(data) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode %s answer: %w", path, err)
	}
	return nil
}

// bearer returns the Authorization value for a call to addr ("" for none)
// and whether it is the peer's own credential.
func (c *Client) bearer(kind endpoint, addr string) (string, bool) {
	if kind == adminCall {
		if !c.admin.IsZero() {
			return "Bearer " + c.admin.Reveal(), false
		}
		if !c.cluster.IsZero() {
			return "Bearer " + c.cluster.Reveal(), false
		}
		return "", false
	}
	c.mu.Lock()
	var cred string
	if n := c.nodes[addr]; n != nil {
		cred = n.cred
	}
	c.mu.Unlock()
	if cred != "" {
		return "Bearer " + cred, true
	}
	if !c.cluster.IsZero() {
		return "Bearer " + c.cluster.Reveal(), false
	}
	return "", false
}

// retryAfter reads a Retry-After in seconds, bounded to [100ms, 30s].
func retryAfter(v string) time.Duration {
	d := 100 * time.Millisecond
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
		d = time.Duration(n) * time.Second
	}
	return min(d, 30*time.Second)
}
