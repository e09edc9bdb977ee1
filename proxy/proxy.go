// Package proxy owns dfdaemon's registry mirror and HTTP forward proxy:
// the HTTP server docker (registry-mirrors) and containerd (hosts.toml)
// point at. Registry blob GETs are served through the host's P2P peer as
// tasks keyed by the blob digest, streamed to the client as pieces arrive
// (Range requests answered as http.ServeContent does) and checked against
// the digest; every other request (manifests, tags, HEAD, token
// challenges, pushes) passes through to the upstream registry unchanged.
// The client's Authorization goes to the registry (directly, or through
// the supernode's seed for back-to-source) and never to other peers.
//
// It does not download, store or schedule anything itself (package p2p
// does), and never logs credentials or tokens.
package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/meter"
	"github.com/damselfly-p2p/damselfly/p2p"
	"github.com/damselfly-p2p/damselfly/registry"
)

// Opener opens a URL for lazy, prioritized reads; *p2p.Peer is one.
type Opener interface {
	OpenLazy(ctx context.Context, req p2p.Request, opt p2p.LazyOptions) (*p2p.Lazy, error)
}

// Config configures a Proxy. Zero fields take the defaults in parentheses.
type Config struct {
	// Peer runs P2P downloads. Nil: every request passes through.
	Peer Opener
	// Registry is the upstream of mirror requests that name none (no
	// containerd ?ns=), as scheme://host[:port]
	// (https://registry-1.docker.io).
	Registry string
	// Insecure lists registry hosts (host[:port]) reached over plain HTTP
	// when a request names them with ?ns=.
	Insecure []string
	// Rules choose P2P or direct per URL (DefaultRules).
	Rules []Rule
	// ForwardProxy turns on the plain forward proxy (absolute-URI
	// requests) and CONNECT tunnels (dfdaemon --forward-proxy). Off, only
	// the registry mirror is served: an open forward proxy on a host port
	// lets anyone who reaches it fetch or tunnel to what the host reaches.
	ForwardProxy bool
	// Transport sends upstream requests (a tuned http.Transport).
	Transport http.RoundTripper
	// ReadTimeout bounds how long one read of a P2P blob waits for its
	// pieces before the response is aborted (60s).
	ReadTimeout time.Duration
	// Linger keeps a blob's task open after its last reader left, so a
	// follow-up request does not register again and an interrupted pull's
	// blob keeps downloading while it makes progress (30s).
	Linger time.Duration
	Log    logrus.FieldLogger
}

// Stats counts what the proxy did since it started.
type Stats struct {
	// P2PRequests is blob (or file) GETs served through P2P, and P2PBytes
	// the body bytes sent for them.
	P2PRequests int64 `json:"p2pRequests"`
	P2PBytes    int64 `json:"p2pBytes"`
	// Verified counts full-body P2P responses whose digest matched;
	// DigestMismatches those aborted because it did not.
	Verified         int64 `json:"verified"`
	DigestMismatches int64 `json:"digestMismatches"`
	// Aborted counts P2P responses cut short (pieces did not arrive, or
	// the client left).
	Aborted int64 `json:"aborted"`
	// Fallbacks counts P2P requests passed through because the task could
	// not be opened (origin error, no supernode and nothing cached).
	Fallbacks int64 `json:"fallbacks"`
	// Passthrough counts requests sent to the upstream as they came,
	// PassthroughBytes their response body bytes.
	Passthrough      int64 `json:"passthrough"`
	PassthroughBytes int64 `json:"passthroughBytes"`
	// Tunnels counts CONNECT tunnels.
	Tunnels int64 `json:"tunnels"`
	// TokenFetches counts anonymous token requests to token servers.
	TokenFetches int64 `json:"tokenFetches"`
}

type stats struct {
	p2pRequests, p2pBytes, verified, mismatches, aborted, fallbacks atomic.Int64
	passthrough, passthroughBytes, tunnels                          atomic.Int64
}

// Proxy is the registry mirror and forward proxy; it is an http.Handler.
type Proxy struct {
	cfg      Config
	log      logrus.FieldLogger
	registry *url.URL // default upstream, nil if none
	insecure map[string]bool
	up       *upstream
	rp       *httputil.ReverseProxy
	lazies   *lazyTable
	st       stats
}

// StatsPath and HealthPath are served by the proxy itself.
const (
	StatsPath  = "/_damselfly/stats"
	HealthPath = "/_damselfly/healthz"
)

type targetKey struct{}

// New returns a proxy.
func New(cfg Config) (*Proxy, error) {
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	if cfg.Transport == nil {
		cfg.Transport = newTransport()
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 60 * time.Second
	}
	if cfg.Linger <= 0 {
		cfg.Linger = 30 * time.Second
	}
	if cfg.Rules == nil {
		cfg.Rules = DefaultRules()
	}
	for i := range cfg.Rules {
		if cfg.Rules[i].re == nil {
			if err := cfg.Rules[i].compile(); err != nil {
				return nil, err
			}
		}
	}
	p := &Proxy{cfg: cfg, log: cfg.Log, insecure: map[string]bool{}}
	if cfg.Registry != "" {
		u, err := url.Parse(strings.TrimRight(cfg.Registry, "/"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("registry %q: want scheme://host[:port], e.g. https://registry-1.docker.io", cfg.Registry)
		}
		u.Path = ""
		p.registry = u
	}
	for _, h := range cfg.Insecure {
		if h = strings.TrimSpace(h); h != "" {
			p.insecure[h] = true
		}
	}
	p.up = newUpstream(cfg.Transport, cfg.Log)
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			target := pr.In.Context().Value(targetKey{}).(*url.URL)
			pr.Out.URL = target
			pr.Out.Host = ""
		},
		Transport:     p.up,
		FlushInterval: 100 * time.Millisecond,
		ModifyResponse: func(resp *http.Response) error {
			resp.Body = meter.NewReadCloser(resp.Body, &p.st.passthroughBytes)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			target := r.Context().Value(targetKey{}).(*url.URL)
			if r.Context().Err() == nil {
				p.log.WithError(err).WithFields(logrus.Fields{"method": r.Method, "upstream": manifest.RedactURL(target.String())}).
					Warn("proxy: upstream request failed")
			}
			http.Error(w, "damselfly proxy: upstream "+target.Host+" failed: "+err.Error(), http.StatusBadGateway)
		},
	}
	p.lazies = &lazyTable{p: p, m: map[string]*lazyEntry{}}
	return p, nil
}

// Close releases the tasks the proxy holds open.
func (p *Proxy) Close() error {
	p.lazies.closeAll()
	return nil
}

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	return Stats{P2PRequests: p.st.p2pRequests.Load(), P2PBytes: p.st.p2pBytes.Load(),
		Verified: p.st.verified.Load(), DigestMismatches: p.st.mismatches.Load(), Aborted: p.st.aborted.Load(),
		Fallbacks: p.st.fallbacks.Load(), Passthrough: p.st.passthrough.Load(),
		PassthroughBytes: p.st.passthroughBytes.Load(), Tunnels: p.st.tunnels.Load(),
		TokenFetches: p.up.tokenFetches.Load()}
}

// ForwardProxyOff is the text of the 403 answer to forward-proxy and
// CONNECT requests while Config.ForwardProxy is off.
const ForwardProxyOff = "damselfly proxy: the forward proxy and CONNECT are off on this dfdaemon " +
	"(start it with --forward-proxy to enable them); only the registry mirror (/v2/) is served"

// ServeHTTP routes: CONNECT tunnels, absolute-URI requests (forward
// proxy), /v2/... (registry mirror), and the proxy's own paths.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case (r.Method == http.MethodConnect || r.URL.IsAbs()) && !p.cfg.ForwardProxy:
		http.Error(w, ForwardProxyOff, http.StatusForbidden)
	case r.Method == http.MethodConnect:
		p.tunnel(w, r)
	case r.URL.IsAbs():
		p.forward(w, r)
	case r.URL.Path == HealthPath:
		io.WriteString(w, "ok\n")
	case r.URL.Path == StatsPath:
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(p.Stats())
	case r.URL.Path == "/v2" || strings.HasPrefix(r.URL.Path, "/v2/"):
		p.mirror(w, r)
	default:
		http.Error(w, "damselfly registry mirror: only /v2/ registry API requests are served here; "+
			"use it as a forward proxy (absolute URLs) for other files", http.StatusNotFound)
	}
}

var hostRE = regexp.MustCompile(`^[A-Za-z0-9.-]+(:[0-9]+)?$|^\[[0-9A-Fa-f:.]+\](:[0-9]+)?$`)

// upstreamFor picks the registry of a mirror request: containerd's ?ns=
// names it, else the configured default.
func (p *Proxy) upstreamFor(r *http.Request) (*url.URL, error) {
	ns := r.URL.Query().Get("ns")
	if ns == "" {
		if p.registry == nil {
			return nil, errors.New("no upstream registry: start dfdaemon with --registry, or use a client that sends ?ns= (containerd)")
		}
		u := *p.registry
		return &u, nil
	}
	host := ns
	if host == registry.DockerHub {
		host = registry.DockerHubHost
	}
	if !hostRE.MatchString(host) {
		return nil, fmt.Errorf("bad ns=%q: want a registry host[:port]", ns)
	}
	scheme := "https"
	if p.registry != nil && p.registry.Host == host {
		scheme = p.registry.Scheme
	}
	if p.insecure[host] || p.insecure[ns] {
		scheme = "http"
	}
	return &url.URL{Scheme: scheme, Host: host}, nil
}

// mirror serves a registry API request: blob GETs through P2P when the
// rules say so, everything else passed through.
func (p *Proxy) mirror(w http.ResponseWriter, r *http.Request) {
	base, err := p.upstreamFor(r)
	if err != nil {
		http.Error(w, "damselfly registry mirror: "+err.Error(), http.StatusBadRequest)
		return
	}
	target := *base
	target.Path = r.URL.Path
	target.RawPath = r.URL.RawPath
	q := r.URL.Query()
	q.Del("ns")
	target.RawQuery = q.Encode()
	repo, dgst, isBlob := registry.ParseBlobPath(r.URL.Path)
	if isBlob && r.Method == http.MethodGet && p.cfg.Peer != nil {
		if rule := match(p.cfg.Rules, target.String()); rule != nil && !rule.Direct {
			header := p.originHeader(r, target.Host, repo)
			if p.serveP2P(w, r, &target, string(dgst), header) {
				return
			}
		}
	}
	p.passthrough(w, r, &target)
}

// forward serves an absolute-URI request as a forward proxy.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request) {
	if r.URL.Scheme != "http" {
		http.Error(w, "damselfly proxy: only http:// URLs can be proxied this way; use CONNECT for https", http.StatusBadRequest)
		return
	}
	target := *r.URL
	target.User = nil
	rule := match(p.cfg.Rules, target.String())
	rule.apply(&target)
	if rule != nil && !rule.Direct && r.Method == http.MethodGet && p.cfg.Peer != nil {
		repo, dgst, _ := registry.ParseBlobPath(target.Path)
		header := p.originHeader(r, target.Host, repo)
		if p.serveP2P(w, r, &target, string(dgst), header) {
			return
		}
	}
	p.passthrough(w, r, &target)
}

// originHeader is what the origin gets for back-to-source: the client's
// Authorization (and cookies, for plain files), or an anonymous registry
// token the proxy holds for the repository. Nothing else of the client's
// request is passed on: the task is shared with every other client.
func (p *Proxy) originHeader(r *http.Request, host, repo string) http.Header {
	h := http.Header{}
	if a := r.Header.Get("Authorization"); a != "" {
		h.Set("Authorization", a)
	} else if repo != "" {
		if a := p.up.anonymousAuth(r.Context(), host, repo); a != "" {
			h.Set("Authorization", a)
		}
	}
	if repo == "" {
		for _, c := range r.Header.Values("Cookie") {
			h.Add("Cookie", c)
		}
	}
	return h
}

func (p *Proxy) passthrough(w http.ResponseWriter, r *http.Request, target *url.URL) {
	p.st.passthrough.Add(1)
	p.log.WithFields(logrus.Fields{"method": r.Method, "upstream": manifest.RedactURL(target.String())}).Debug("proxy: pass through")
	ctx := context.WithValue(r.Context(), targetKey{}, target)
	p.rp.ServeHTTP(w, r.WithContext(ctx))
}
