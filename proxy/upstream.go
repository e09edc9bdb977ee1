package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/registry"
)

// anonDeniedFor is how long a repository whose token server refused
// anonymous access is left to the client's own credentials.
const anonDeniedFor = 5 * time.Minute

// upstream sends requests to registries and origins. For a GET or HEAD
// without the client's Authorization it answers bearer challenges itself
// with anonymous tokens (a registry.Authorizer without credentials),
// cached and shared by all clients, so a pull of many layers by many
// clients costs the token server one request per repository; when
// anonymous access is refused, the client gets the registry's original
// 401 and does its own token flow. A client's own Authorization is
// forwarded as is and never cached or shared.
type upstream struct {
	base         http.RoundTripper
	auth         *registry.Authorizer
	tokenFetches atomic.Int64
	log          logrus.FieldLogger

	mu     sync.Mutex
	denied map[string]time.Time // host/repo -> until
}

func newTransport() *http.Transport {
	return &http.Transport{
		Proxy: nil, // never loop through an environment proxy
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		DisableCompression:    true,
	}
}

func newUpstream(base http.RoundTripper, log logrus.FieldLogger) *upstream {
	u := &upstream{base: base, log: log, denied: map[string]time.Time{}}
	tokens := &http.Client{Transport: countingTransport{base, &u.tokenFetches}, Timeout: 30 * time.Second}
	u.auth = registry.NewAuthorizer(tokens, nil)
	return u
}

// countingTransport counts the requests it sends.
type countingTransport struct {
	http.RoundTripper
	n *atomic.Int64
}

func (c countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.RoundTripper.RoundTrip(req)
}

func (u *upstream) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("Authorization") != "" || (req.Method != http.MethodGet && req.Method != http.MethodHead) {
		return u.base.RoundTrip(req)
	}
	host, repo := req.URL.Host, registry.RepositoryOf(req.URL.Path)
	if auth := u.anonymousAuth(req.Context(), host, repo); auth != "" {
		resp, err := u.base.RoundTrip(withAuth(req, auth))
		if err != nil || resp.StatusCode != http.StatusUnauthorized {
			return resp, err
		}
		// Refused before its time (registry restarted, key rotated): forget
		// it and start over.
		drain(resp)
		u.auth.Reset(host)
	}
	resp, err := u.base.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	if err := u.auth.AddChallenge(req.Context(), resp); err != nil || u.isDenied(host, repo) {
		return resp, nil
	}
	// Keep the 401 to hand back if anonymous access does not work.
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if rerr != nil {
		return resp, nil
	}
	r := req.Clone(req.Context())
	ok, err := u.auth.Authorize(req.Context(), r, repo)
	if err != nil || !ok {
		if errors.Is(err, registry.ErrTokenDenied) {
			u.deny(host, repo)
		}
		if err != nil && req.Context().Err() == nil {
			u.log.WithError(err).WithFields(logrus.Fields{"registry": host, "repo": repo}).
				Info("mirror: no anonymous token; passing the registry's challenge to the client")
		}
		return resp, nil
	}
	retry, err := u.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if retry.StatusCode == http.StatusUnauthorized || retry.StatusCode == http.StatusForbidden {
		// The token server hands out tokens without access to this
		// repository: the client needs its own credentials.
		drain(retry)
		u.deny(host, repo)
		u.log.WithFields(logrus.Fields{"registry": host, "repo": repo}).
			Info("mirror: anonymous access refused; passing the registry's challenge to the client")
		return resp, nil
	}
	return retry, nil
}

// anonymousAuth returns an Authorization value with an anonymous token for
// pulling repo from host, when the registry is known to want one and
// anonymous access works; "" otherwise.
func (u *upstream) anonymousAuth(ctx context.Context, host, repo string) string {
	if !u.auth.Known(host) || u.isDenied(host, repo) {
		return ""
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+"/v2/", nil)
	if err != nil {
		return ""
	}
	ok, err := u.auth.Authorize(ctx, r, repo)
	if err != nil {
		if errors.Is(err, registry.ErrTokenDenied) {
			u.deny(host, repo)
		}
		return ""
	}
	if !ok {
		return ""
	}
	return r.Header.Get("Authorization")
}

func (u *upstream) deny(host, repo string) {
	u.mu.Lock()
	u.denied[host+"/"+repo] = time.Now().Add(anonDeniedFor)
	u.mu.Unlock()
}

func (u *upstream) isDenied(host, repo string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	until, ok := u.denied[host+"/"+repo]
	if ok && time.Now().After(until) {
		delete(u.denied, host+"/"+repo)
		return false
	}
	return ok
}

func withAuth(req *http.Request, auth string) *http.Request {
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", auth)
	return r
}

func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}
