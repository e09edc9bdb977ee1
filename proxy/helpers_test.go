package proxy_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/p2p"
	"github.com/damselfly-p2p/damselfly/proxy"
	"github.com/damselfly-p2p/damselfly/registry"
	"github.com/damselfly-p2p/damselfly/supernode"
	"github.com/damselfly-p2p/damselfly/testenv"
)

// logBuffer collects log output (safe for concurrent use).
type logBuffer = testenv.LogBuffer

// fakeRegistry is an in-process OCI registry: manifests and blobs of one
// repository, optional bearer-token auth with its own token server, and
// counters of what it served.
type fakeRegistry struct {
	t         *testing.T
	srv       *httptest.Server
	tokenSrv  *httptest.Server
	mu        sync.Mutex
	blobs     map[string][]byte // digest -> content served
	manifests map[string]fakeManifest

	// token, when set, is required as "Bearer token" on every /v2/ request.
	token string
	// anonymous lets the token server hand out tokens without credentials;
	// user/pass are the Basic credentials it accepts otherwise.
	anonymous  bool
	user, pass string

	tokenRequests atomic.Int64
	blobGets      atomic.Int64
	blobBytes     atomic.Int64
	authOnBlobs   []string
	paths         []string
}

type fakeManifest struct {
	mediaType string
	body      []byte
}

func newFakeRegistry(t *testing.T) *fakeRegistry {
	t.Helper()
	f := &fakeRegistry{t: t, blobs: map[string][]byte{}, manifests: map[string]fakeManifest{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	f.tokenSrv = httptest.NewServer(http.HandlerFunc(f.serveToken))
	t.Cleanup(f.tokenSrv.Close)
	return f
}

func (f *fakeRegistry) host() string { return strings.TrimPrefix(f.srv.URL, "http://") }

// addBlob stores random content and returns its digest.
func (f *fakeRegistry) addBlob(size int) (digest.Digest, []byte) {
	b := make([]byte, size)
	rand.Read(b)
	d := digest.FromBytes(b)
	f.mu.Lock()
	f.blobs[d.String()] = b
	f.mu.Unlock()
	return d, b
}

// addImage stores a one-layer image under tag and returns the layer.
func (f *fakeRegistry) addImage(tag string, layerSize int) (layer digest.Digest, data []byte, manifestDigest digest.Digest) {
	layer, data = f.addBlob(layerSize)
	cfg, _ := f.addBlob(200)
	m := map[string]any{"schemaVersion": 2, "mediaType": registry.MediaTypeOCIManifest,
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": 200},
		"layers": []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": layerSize}}}
	body, _ := json.Marshal(m)
	md := digest.FromBytes(body)
	f.mu.Lock()
	f.manifests[tag] = fakeManifest{registry.MediaTypeOCIManifest, body}
	f.manifests[md.String()] = fakeManifest{registry.MediaTypeOCIManifest, body}
	f.mu.Unlock()
	return layer, data, md
}

func (f *fakeRegistry) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.paths = append(f.paths, r.Method+" "+r.URL.RequestURI())
	f.mu.Unlock()
	repo := registry.RepositoryOf(r.URL.Path)
	if tok := f.currentToken(); tok != "" && r.Header.Get("Authorization") != "Bearer "+tok {
		scope := ""
		if repo != "" {
			scope = fmt.Sprintf(`,scope="repository:%s:pull"`, repo)
		}
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="fake"%s`, f.tokenSrv.URL, scope))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		return
	}
	w.Header().Set("Docker-Distribution-Api-Version", "registry/2.0")
	if r.URL.Path == "/v2/" {
		io.WriteString(w, "{}")
		return
	}
	parts := strings.Split(r.URL.Path, "/")
	ref := parts[len(parts)-1]
	switch {
	case strings.Contains(r.URL.Path, "/manifests/"):
		f.mu.Lock()
		m, ok := f.manifests[ref]
		f.mu.Unlock()
		if !ok {
			http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN"}]}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", m.mediaType)
		w.Header().Set("Docker-Content-Digest", digest.FromBytes(m.body).String())
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(m.body))
	case strings.Contains(r.URL.Path, "/blobs/"):
		f.mu.Lock()
		b, ok := f.blobs[ref]
		if r.Method == http.MethodGet {
			f.authOnBlobs = append(f.authOnBlobs, r.Header.Get("Authorization"))
		}
		f.mu.Unlock()
		if !ok {
			http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN"}]}`, http.StatusNotFound)
			return
		}
		if r.Method == http.MethodGet {
			f.blobGets.Add(1)
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Docker-Content-Digest", ref)
		w.Header().Set("Etag", `"`+ref+`"`)
		http.ServeContent(&countingWriter{ResponseWriter: w, n: &f.blobBytes}, r, "", time.Time{}, bytes.NewReader(b))
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeRegistry) serveToken(w http.ResponseWriter, r *http.Request) {
	f.tokenRequests.Add(1)
	time.Sleep(20 * time.Millisecond) // make concurrent requests overlap
	ok := f.anonymous
	if u, p, has := r.BasicAuth(); has {
		ok = u == f.user && p == f.pass
	}
	if !ok {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"token": f.currentToken(), "expires_in": 300})
}

func (f *fakeRegistry) currentToken() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.token
}

// rotateToken makes the registry accept only a new token.
func (f *fakeRegistry) rotateToken(tok string) {
	f.mu.Lock()
	f.token = tok
	f.mu.Unlock()
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n.Add(int64(n))
	return n, err
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
	sn, err := supernode.New(supernode.Config{DataDir: t.TempDir(), AdvertiseAddr: ln.Addr().String(), Log: log})
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
