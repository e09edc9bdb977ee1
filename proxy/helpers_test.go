package proxy_test

import (
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/p2p"
	"github.com/damselfly-p2p/damselfly/proxy"
	"github.com/damselfly-p2p/damselfly/supernode"
	"github.com/damselfly-p2p/damselfly/testenv"
	"github.com/damselfly-p2p/damselfly/trust/egress"
)

// logBuffer collects log output (safe for concurrent use).
type logBuffer = testenv.LogBuffer

// newFakeRegistry starts a fake registry (package testenv) with auth.
func newFakeRegistry(t *testing.T, auth testenv.FakeAuth) *testenv.FakeRegistry {
	t.Helper()
	auth.TokenDelay = 20 * time.Millisecond // make concurrent token requests overlap
	return testenv.NewFakeRegistry(t, auth)
}

// cluster is an in-process supernode and one peer behind a proxy.
type cluster struct {
	sn    *supernode.Supernode
	snURL string
	peer  *p2p.Peer
	proxy *proxy.Proxy
	srv   *httptest.Server
	logs  *logBuffer
}

func testLogger(logs *logBuffer) *logrus.Logger {
	l := logrus.New()
	l.SetOutput(logs)
	l.SetLevel(logrus.DebugLevel)
	return l
}

// startSupernode serves an in-process supernode on loopback.
func startSupernode(t *testing.T, log logrus.FieldLogger) (*supernode.Supernode, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The tests' origins and registries are on loopback, which the
	// supernode's default origin policy refuses.
	policy, err := egress.New(egress.Options{Allow: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	sn, err := supernode.New(supernode.Config{DataDir: t.TempDir(), AdvertiseAddr: ln.Addr().String(), Egress: policy, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: sn.Handler()}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		sn.Close()
	})
	return sn, ln.Addr().String()
}

// startCluster starts a supernode (unless snAddr is given: then the peer
// uses that address, live or not), a peer and a proxy with cfg.
func startCluster(t *testing.T, cfg proxy.Config, snAddr string) *cluster {
	t.Helper()
	c := &cluster{logs: &logBuffer{}}
	log := testLogger(c.logs)
	if snAddr == "" {
		c.sn, snAddr = startSupernode(t, log)
	}
	c.snURL = "http://" + snAddr
	peer, err := p2p.New(p2p.Config{DataDir: t.TempDir(), Supernodes: []string{snAddr}, UploadListen: "127.0.0.1:0",
		StallTimeout: 5 * time.Second, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	c.peer = peer
	cfg.Peer = peer
	cfg.Log = log
	if cfg.Linger == 0 {
		cfg.Linger = 200 * time.Millisecond
	}
	px, err := proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.proxy = px
	c.srv = httptest.NewServer(px)
	t.Cleanup(func() {
		c.srv.Close()
		px.Close()
		peer.Close()
		if t.Failed() {
			t.Logf("logs:\n%s", tail(c.logs.String(), 60))
		}
	})
	return c
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// get sends a GET through the proxy with extra headers ("K: V").
func get(t *testing.T, url string, headers ...string) (*http.Response, []byte) {
	t.Helper()
	return do(t, http.MethodGet, url, headers...)
}

func do(t *testing.T, method, url string, headers ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp, body
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}
