package main

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/damselfly-p2p/damselfly/testenv"
)

// storeProxy is a reverse proxy in front of the S3 store that counts the
// body bytes the store sends back: object bytes (GET of a key, 200 or 206)
// apart from everything else (listings, errors). Every peer reaches the
// store through it, so its counters are what the store served. It listens
// from the start (so the supernode can be told its address); the store
// behind it is set later.
type storeProxy struct {
	ln     net.Listener
	srv    *http.Server
	target atomic.Pointer[url.URL]

	objectBytes, otherBytes, objectGets atomic.Int64
}

// startStoreProxy listens on a free loopback port; tb.Cleanup closes it.
func startStoreProxy(tb testenv.TB) *storeProxy {
	p := &storeProxy{ln: testenv.ListenLoopback(tb)}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			t := p.target.Load()
			r.Out.URL.Scheme, r.Out.URL.Host = t.Scheme, t.Host
			// SigV4 signs the Host the client used: keep it.
			r.Out.Host = r.In.Host
		},
		// No transparent gzip: count the bytes as they come off the wire.
		Transport:      &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 32},
		ModifyResponse: p.count,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "demo store proxy: "+err.Error(), http.StatusBadGateway)
		},
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.target.Load() == nil {
			http.Error(w, "demo store proxy: no store yet", http.StatusServiceUnavailable)
			return
		}
		rp.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	go p.srv.Serve(p.ln)
	tb.Cleanup(func() { p.srv.Close() })
	return p
}

// Addr is the proxy's host:port; URL its base URL.
func (p *storeProxy) Addr() string { return p.ln.Addr().String() }
func (p *storeProxy) URL() string  { return "http://" + p.Addr() }

// setStore points the proxy at the store's base URL.
func (p *storeProxy) setStore(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return err
	}
	if u.Scheme == "" || u.Host == "" {
		return errors.New("store endpoint needs a scheme and host: " + endpoint)
	}
	p.target.Store(u)
	return nil
}

func (p *storeProxy) count(resp *http.Response) error {
	counter := &p.otherBytes
	req := resp.Request
	if req.Method == http.MethodGet && (resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusPartialContent) {
		// Path-style: /BUCKET/KEY; a listing is /BUCKET or /BUCKET/.
		_, key, _ := strings.Cut(strings.TrimPrefix(req.URL.Path, "/"), "/")
		if key != "" {
			counter = &p.objectBytes
			p.objectGets.Add(1)
		}
	}
	resp.Body = &countingBody{ReadCloser: resp.Body, n: counter}
	return nil
}

// snapshot is the proxy's counters at one time.
type snapshot struct{ object, other, gets int64 }

func (p *storeProxy) snap() snapshot {
	return snapshot{p.objectBytes.Load(), p.otherBytes.Load(), p.objectGets.Load()}
}

func (s snapshot) sub(o snapshot) snapshot {
	return snapshot{s.object - o.object, s.other - o.other, s.gets - o.gets}
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countingBody) Read(b []byte) (int, error) {
	n, err := c.ReadCloser.Read(b)
	c.n.Add(int64(n))
	return n, err
}
