package testenv

import (
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// StoreProxy stands between S3 clients and an S3-compatible store (path
// style), counting what the store serves: object GETs (GETs of
// /BUCKET/KEY, whatever the answer) and the body bytes of those answered
// 200 or 206, listings, and the body bytes of every other answer. Requests pass through unchanged, the
// Host header too, so SigV4 signatures stay valid. Every client of a test
// or bench reaches the store through it, so its counts are what the store
// served.
type StoreProxy struct {
	URL  string // http://ADDR
	Addr string // ADDR (host:port), for an origin policy's allow list
	// RefuseSeed makes it refuse (403) presigned GETs of anything but the
	// first byte: a supernode's checks of presigned URLs pass, its seed's
	// fetches through them fail (peers sign their own GETs in headers).
	RefuseSeed atomic.Bool

	srv                                                       *http.Server
	tr                                                        *http.Transport
	target                                                    atomic.Pointer[url.URL]
	objectGets, objectBytes, lists, otherBytes, answers, reqs atomic.Int64
}

// StoreCounts is what a StoreProxy counted.
type StoreCounts struct {
	ObjectGets, ObjectBytes int64 // object GETs, and the body bytes of those answered 200/206
	Lists                   int64 // ListObjects requests
	OtherBytes              int64 // body bytes of every other answer (listings, errors, HEADs)
	Answers, Requests       int64 // answers from the store; requests received (refused ones too)
}

// Bytes is every body byte the store sent.
func (c StoreCounts) Bytes() int64 { return c.ObjectBytes + c.OtherBytes }

// Sub is c less an earlier count o: what was served in between.
func (c StoreCounts) Sub(o StoreCounts) StoreCounts {
	return StoreCounts{c.ObjectGets - o.ObjectGets, c.ObjectBytes - o.ObjectBytes, c.Lists - o.Lists,
		c.OtherBytes - o.OtherBytes, c.Answers - o.Answers, c.Requests - o.Requests}
}

// StartStoreProxy starts a proxy on a free loopback port in front of the
// store at endpoint (its base URL); with endpoint "" it answers 503 until
// SetStore. tb.Cleanup stops it.
func StartStoreProxy(tb TB, endpoint string) *StoreProxy {
	tb.Helper()
	ln := ListenLoopback(tb)
	p := &StoreProxy{URL: "http://" + ln.Addr().String(), Addr: ln.Addr().String()}
	if endpoint != "" {
		if err := p.SetStore(endpoint); err != nil {
			ln.Close()
			tb.Fatalf("store proxy: %v", err)
		}
	}
	// As many kept connections as clients keep requests in flight, so
	// that the proxy adds no connection setups of its own; no transparent
	// gzip, so that bytes are counted as they come off the wire.
	tr := &http.Transport{Proxy: nil, DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		MaxIdleConns: 512, MaxIdleConnsPerHost: 512, IdleConnTimeout: time.Minute, DisableCompression: true}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			t := p.target.Load()
			r.Out.URL.Scheme, r.Out.URL.Host = t.Scheme, t.Host
			r.Out.Host = r.In.Host // SigV4 signs the Host the client used
			if _, ok := r.In.Header["User-Agent"]; !ok {
				r.Out.Header.Set("User-Agent", "") // add none the client did not sign
			}
		},
		Transport:      tr,
		ModifyResponse: p.count,
		FlushInterval:  -1,
		ErrorLog:       log.New(io.Discard, "", 0),
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.reqs.Add(1)
		if p.target.Load() == nil {
			http.Error(w, "store proxy: no store yet", http.StatusServiceUnavailable)
			return
		}
		if p.RefuseSeed.Load() && r.URL.Query().Has("X-Amz-Signature") && r.Header.Get("Range") != "bytes=0-0" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		rp.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 30 * time.Second}
	p.srv, p.tr = srv, tr
	go srv.Serve(ln)
	tb.Cleanup(p.Close)
	return p
}

// Close stops the proxy: the store is unreachable through it from then on.
func (p *StoreProxy) Close() {
	p.srv.Close()
	p.tr.CloseIdleConnections()
}

// SetStore points the proxy at the store's base URL.
func (p *StoreProxy) SetStore(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return err
	}
	if u.Scheme == "" || u.Host == "" {
		return errors.New("store endpoint needs a scheme and a host: " + endpoint)
	}
	p.target.Store(u)
	return nil
}

// Counts returns the counts so far.
func (p *StoreProxy) Counts() StoreCounts {
	return StoreCounts{ObjectGets: p.objectGets.Load(), ObjectBytes: p.objectBytes.Load(), Lists: p.lists.Load(),
		OtherBytes: p.otherBytes.Load(), Answers: p.answers.Load(), Requests: p.reqs.Load()}
}

func (p *StoreProxy) count(resp *http.Response) error {
	p.answers.Add(1)
	req := resp.Request
	if req.URL.Query().Has("list-type") {
		p.lists.Add(1)
	}
	counter := &p.otherBytes
	// Path style: /BUCKET/KEY; a listing is /BUCKET or /BUCKET/.
	if _, key, _ := strings.Cut(strings.TrimPrefix(req.URL.Path, "/"), "/"); key != "" &&
		req.Method == http.MethodGet && !req.URL.Query().Has("list-type") {
		p.objectGets.Add(1)
		if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusPartialContent {
			counter = &p.objectBytes
		}
	}
	resp.Body = &countingBody{ReadCloser: resp.Body, n: counter}
	return nil
}

// countingBody adds what is read from a body to n.
type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countingBody) Read(b []byte) (int, error) {
	n, err := c.ReadCloser.Read(b)
	c.n.Add(int64(n))
	return n, err
}
