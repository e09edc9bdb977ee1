package origin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/trust/egress"
)

// Defaults of a Client built by New.
const (
	DefaultRetries        = 5
	DefaultBackoffInitial = 200 * time.Millisecond
	DefaultBackoffMax     = 5 * time.Second
	DefaultConcurrency    = 4
	// DefaultProbeBudget bounds a whole Probe or Validate, retries
	// included: an origin that never answers fails well before a peer's
	// registration (2 minutes) gives up.
	DefaultProbeBudget = 45 * time.Second

	defaultDialTimeout           = 10 * time.Second
	defaultResponseHeaderTimeout = 30 * time.Second
	defaultIdleConnsPerHost      = 16

	// readChunk is the largest single read from a response body; with a
	// limiter it is further capped at the limiter's burst.
	readChunk = 64 << 10
	// drainLimit is how much of an unwanted body is read to keep the
	// connection reusable before it is simply closed.
	drainLimit = 4 << 10
)

// Client talks to origins. It is safe for concurrent use.
type Client struct {
	hc             *http.Client
	retries        int
	backoffInitial time.Duration
	backoffMax     time.Duration
	probeBudget    time.Duration
	log            logrus.FieldLogger
	policy         *egress.Policy
	hasPolicy      bool
}

// Option configures a Client.
type Option func(*Client)

// WithProbeBudget bounds a whole Probe or Validate, retries included
// (DefaultProbeBudget).
func WithProbeBudget(d time.Duration) Option {
	return func(cl *Client) {
		if d > 0 {
			cl.probeBudget = d
		}
	}
}

// WithHTTPClient makes the Client send its requests through c.
func WithHTTPClient(c *http.Client) Option {
	return func(cl *Client) {
		if c != nil {
			cl.hc = c
		}
	}
}

// WithPolicy makes the Client's default http.Client dial, and follow
// redirects, only where p allows (see package egress; a nil p is the strict
// default policy). Use it for every fetch a remote party can cause. It has
// no effect together with WithHTTPClient, whose client is used as given.
func WithPolicy(p *egress.Policy) Option {
	return func(cl *Client) {
		cl.policy, cl.hasPolicy = p, true
	}
}

// WithRetries sets how many attempts follow the first one when a request
// fails with a temporary error (default 5). An attempt that makes progress
// (receives body bytes) does not use up the budget.
func WithRetries(n int) Option {
	return func(cl *Client) {
		if n < 0 {
			n = 0
		}
		cl.retries = n
	}
}

// WithBackoff sets the wait before the first retry and its cap; the wait
// doubles after each failed attempt and is jittered (default 200ms, 5s).
func WithBackoff(initial, max time.Duration) Option {
	return func(cl *Client) {
		if initial <= 0 {
			initial = time.Millisecond
		}
		if max < initial {
			max = initial
		}
		cl.backoffInitial, cl.backoffMax = initial, max
	}
}

// WithLogger sets the logger (default: the logrus standard logger).
func WithLogger(l logrus.FieldLogger) Option {
	return func(cl *Client) {
		if l != nil {
			cl.log = l
		}
	}
}

// New returns a Client. Its default http.Client has no overall timeout (a
// download may take hours) but gives up dialling after 10s and waiting for
// response headers after 30s, and keeps up to 16 idle connections per host.
func New(opts ...Option) *Client {
	c := &Client{
		retries:        DefaultRetries,
		backoffInitial: DefaultBackoffInitial,
		backoffMax:     DefaultBackoffMax,
		probeBudget:    DefaultProbeBudget,
		log:            logrus.StandardLogger(),
	}
	for _, o := range opts {
		o(c)
	}
	if c.hc == nil {
		if c.hasPolicy {
			c.hc = &http.Client{Transport: c.policy.Transport(defaultTransport()), CheckRedirect: c.policy.CheckRedirect}
		} else {
			c.hc = &http.Client{Transport: defaultTransport()}
		}
	}
	return c
}

func defaultTransport() *http.Transport {
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   defaultDialTimeout,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   defaultIdleConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: defaultResponseHeaderTimeout,
		// Bytes and ranges are of the representation as the origin stores
		// it; never let the transport decompress behind our back.
		DisableCompression: true,
	}
}

// retry runs op until it succeeds, fails with an error that is not
// temporary, the context ends, or the attempt budget is spent. op reports
// whether it made progress; progress restores the budget, so a long body cut
// many times still completes as long as every attempt moves forward.
func (c *Client) retry(ctx context.Context, log logrus.FieldLogger, what string, op func(attempt int) (progress bool, err error)) error {
	failures := 0
	for attempt := 1; ; attempt++ {
		progress, err := op(attempt)
		if err == nil {
			return nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			if errors.Is(err, ctxErr) {
				return err
			}
			return fmt.Errorf("%w (last error: %v)", ctxErr, err)
		}
		if !IsTemporary(err) {
			log.WithError(err).WithField("attempt", attempt).Debugf("origin: %s failed permanently", what)
			return err
		}
		if progress {
			failures = 0
		}
		if failures >= c.retries {
			log.WithError(err).WithField("attempt", attempt).Infof("origin: %s failed; giving up", what)
			return fmt.Errorf("giving up after %d attempts: %w", attempt, err)
		}
		failures++
		d := c.backoff(failures)
		log.WithError(err).WithFields(logrus.Fields{"attempt": attempt, "retryIn": d}).Infof("origin: %s failed; retrying", what)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// backoff returns the wait before retry number n (from 1): initial doubling
// per retry, capped, minus up to a quarter of jitter so that many clients
// hit by one outage do not come back in lockstep.
func (c *Client) backoff(n int) time.Duration {
	d := c.backoffInitial
	for i := 1; i < n && d < c.backoffMax; i++ {
		d *= 2
	}
	if d > c.backoffMax {
		d = c.backoffMax
	}
	if q := int64(d / 4); q > 0 {
		d -= time.Duration(rand.Int64N(q + 1))
	}
	return d
}

// checkURL validates rawURL without echoing it: URLs carry signatures, so
// errors and logs only ever show the redacted form.
func checkURL(rawURL string) (redacted string, err error) {
	redacted = manifest.RedactURL(rawURL)
	u, err := url.Parse(rawURL)
	if err != nil {
		return redacted, permanent(fmt.Errorf("invalid origin URL %s", redacted))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return redacted, permanent(fmt.Errorf("invalid origin URL %s: scheme must be http or https", redacted))
	}
	if u.Host == "" {
		return redacted, permanent(fmt.Errorf("invalid origin URL %s: no host", redacted))
	}
	return redacted, nil
}

// managedHeaders are set by this package per request; copies from the
// caller's header are dropped so they cannot turn a response into a
// surprise 206 or 304.
var managedHeaders = []string{"Range", "If-Range", "If-None-Match", "If-Modified-Since"}

// newRequest builds a request carrying the caller's header (credentials,
// typically) as given. A "Host" entry sets the request's Host.
func newRequest(ctx context.Context, method, rawURL, redacted string, header http.Header) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, rawURL, nil)
	if err != nil {
		return nil, permanent(fmt.Errorf("build %s request for %s", method, redacted))
	}
	if header != nil {
		req.Header = header.Clone()
	}
	for _, h := range managedHeaders {
		req.Header.Del(h)
	}
	if host := req.Header.Get("Host"); host != "" {
		req.Host = host
		req.Header.Del("Host")
	}
	if req.Header.Get("Accept-Encoding") == "" {
		// Lengths and ranges must be of the stored bytes.
		req.Header.Set("Accept-Encoding", "identity")
	}
	return req, nil
}

// do sends req. Transport errors name the URL; it is replaced with the
// redacted form so that errors can be logged.
func (c *Client) do(req *http.Request, redacted string) (*http.Response, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = redacted
		}
		return nil, err
	}
	return resp, nil
}

// statusError consumes resp and returns its StatusError.
func statusError(resp *http.Response, redacted string) error {
	discard(resp)
	return &StatusError{Code: resp.StatusCode, Status: resp.Status, URL: redacted}
}

// discard closes resp's body after reading a little of it, so that a small
// unwanted body does not cost the connection.
func discard(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, drainLimit)
	_ = resp.Body.Close()
}
