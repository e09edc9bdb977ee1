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
	"strconv"
	"strings"
	"sync"
	"time"

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

// Client talks to one of several supernodes, failing over in order and
// sticking to the last one that answered.
type Client struct {
	addrs  []string
	http   *http.Client
	scheme string
	// cluster and admin are the cluster and admin tokens (zero: none).
	cluster, admin trust.Secret

	mu      sync.Mutex
	current int
	// peerCred is the latest credential the supernode issued to this
	// client's peer (PeerCredentialHeader).
	peerCred string
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

// NewClient returns a client for the supernodes at addrs (host:port).
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
		clean = append(clean, a)
	}
	if len(clean) == 0 {
		return nil, errors.New("no supernode address given")
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second,
	}
	c := &Client{addrs: clean, http: &http.Client{Transport: tr}, scheme: "http"}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Scheme is "https" when the client uses TLS, else "http".
func (c *Client) Scheme() string { return c.scheme }

// PeerCredential returns the credential the supernode issued to this
// client's peer, or "" before one was issued.
func (c *Client) PeerCredential() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peerCred
}

// endpoint classes choose the credential a call carries.
type endpoint int

const (
	peerCall  endpoint = iota // register, sync, heartbeat, announce, leave
	adminCall                 // status, preheats
)

// bearer returns the Authorization value for a call, "" for none.
func (c *Client) bearer(kind endpoint) string {
	if kind == adminCall {
		if !c.admin.IsZero() {
			return "Bearer " + c.admin.Reveal()
		}
		if !c.cluster.IsZero() {
			return "Bearer " + c.cluster.Reveal()
		}
		return ""
	}
	if cred := c.PeerCredential(); cred != "" {
		return "Bearer " + cred
	}
	if !c.cluster.IsZero() {
		return "Bearer " + c.cluster.Reveal()
	}
	return ""
}

// Addrs returns the configured supernode addresses.
func (c *Client) Addrs() []string { return c.addrs }

// Current returns the supernode address last used successfully.
func (c *Client) Current() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addrs[c.current]
}

// Register registers a download; it may wait while the seed learns the
// content's length from the origin. A rate-limited registration (429) is
// retried after the supernode's Retry-After, as long as ctx allows.
func (c *Client) Register(ctx context.Context, req *RegisterRequest) (*RegisterResponse, error) {
	for {
		var resp RegisterResponse
		err := c.call(ctx, "/api/v1/tasks/register", req, &resp, 2*time.Minute)
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
		return &resp, nil
	}
}

// Sync reports progress and fetches digests and parents.
func (c *Client) Sync(ctx context.Context, req *SyncRequest) (*SyncResponse, error) {
	var resp SyncResponse
	if err := c.call(ctx, "/api/v1/tasks/sync", req, &resp, 10*time.Second); err != nil {
		return nil, err
	}
	return &resp, nil
}

// Heartbeat keeps the peer alive.
func (c *Client) Heartbeat(ctx context.Context, req *HeartbeatRequest) error {
	return c.call(ctx, "/api/v1/peers/heartbeat", req, nil, 5*time.Second)
}

// Announce tells the supernode which tasks the peer holds.
func (c *Client) Announce(ctx context.Context, req *AnnounceRequest) error {
	return c.call(ctx, "/api/v1/peers/announce", req, nil, 10*time.Second)
}

// Leave says the peer is going away.
func (c *Client) Leave(ctx context.Context, req *LeaveRequest) error {
	return c.call(ctx, "/api/v1/peers/leave", req, nil, 3*time.Second)
}

// Status fetches the status document of the current supernode.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	if err := c.do(ctx, adminCall, http.MethodGet, "/api/v1/status", nil, &st, 10*time.Second); err != nil {
		return nil, err
	}
	return &st, nil
}

func (c *Client) call(ctx context.Context, path string, in, out any, timeout time.Duration) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("encode %s request: %w", path, err)
	}
	return c.do(ctx, peerCall, http.MethodPost, path, body, out, timeout)
}

// Admin sends an admin call (status, preheats): method and path on the
// current supernode, in (if not nil) as the JSON body, the JSON answer
// decoded into out (if not nil).
func (c *Client) Admin(ctx context.Context, method, path string, in, out any, timeout time.Duration) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("encode %s request: %w", path, err)
		}
	}
	return c.do(ctx, adminCall, method, path, body, out, timeout)
}

// do tries each supernode, starting with the current one. Only transport
// errors fail over; an answer (even an error answer) is final.
func (c *Client) do(ctx context.Context, kind endpoint, method, path string, body []byte, out any, timeout time.Duration) error {
	c.mu.Lock()
	start := c.current
	c.mu.Unlock()
	var errs []error
	for k := 0; k < len(c.addrs); k++ {
		idx := (start + k) % len(c.addrs)
		addr := c.addrs[idx]
		err := c.doOne(ctx, kind, addr, method, path, body, out, timeout)
		if err == nil || !isTransport(err) {
			c.mu.Lock()
			c.current = idx
			c.mu.Unlock()
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	return fmt.Errorf("%w: %w", ErrUnreachable, errors.Join(errs...))
}

type transportError struct{ err error }

func (e transportError) Error() string { return e.err.Error() }
func (e transportError) Unwrap() error { return e.err }

func isTransport(err error) bool {
	var t transportError
	return errors.As(err, &t)
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
	if auth := c.bearer(kind); auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return transportError{err}
	}
	defer resp.Body.Close()
	if kind == peerCall {
		c.mu.Lock()
		if cred := resp.Header.Get(PeerCredentialHeader); cred != "" {
			c.peerCred = cred
		} else if resp.StatusCode == http.StatusUnauthorized {
			// A stale credential (another supernode, a lost key): the
			// next registration starts again from the cluster token.
			c.peerCred = ""
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

// retryAfter reads a Retry-After in seconds, bounded to [100ms, 30s].
func retryAfter(v string) time.Duration {
	d := 100 * time.Millisecond
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
		d = time.Duration(n) * time.Second
	}
	return min(d, 30*time.Second)
}
