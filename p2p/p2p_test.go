package p2p_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/origin"
	"github.com/damselfly-p2p/damselfly/p2p"
	"github.com/damselfly-p2p/damselfly/supernode"
	"github.com/damselfly-p2p/damselfly/testenv"
	"github.com/damselfly-p2p/damselfly/trust/egress"
)

func quietLogger() logrus.FieldLogger { return testenv.QuietLogger() }

// startSupernode serves an in-process supernode on 127.0.0.1 and returns
// its address. Its origin policy allows loopback origins (the tests'
// httptest servers); edit adjusts the rest of its Config (tokens), and
// with serverTLS it serves HTTPS.
func startSupernode(t *testing.T, edit ...func(*supernode.Config)) string {
	return startSupernodeTLS(t, nil, edit...)
}

func startSupernodeTLS(t *testing.T, serverTLS *tls.Config, edit ...func(*supernode.Config)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Any loopback port: the origins start after the supernode in some tests.
	policy, err := egress.New(egress.Options{Allow: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := supernode.Config{DataDir: t.TempDir(), AdvertiseAddr: ln.Addr().String(), Egress: policy, Log: quietLogger()}
	for _, e := range edit {
		e(&cfg)
	}
	sn, err := supernode.New(cfg)
	if err != nil {
		ln.Close()
		t.Fatalf("supernode.New: %v", err)
	}
	if serverTLS != nil {
		ln = tls.NewListener(ln, serverTLS)
	}
	srv := &http.Server{Handler: sn.Handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-served
		sn.Close()
	})
	return ln.Addr().String()
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// openPeer starts a peer with its own data dir; supernodes may be empty.
// The caller closes it.
func openPeer(t *testing.T, supernodes ...string) *p2p.Peer {
	t.Helper()
	p, err := p2p.New(p2p.Config{DataDir: t.TempDir(), Supernodes: supernodes, UploadListen: "127.0.0.1:0",
		StallTimeout: 8 * time.Second, Log: quietLogger(),
		Source: origin.New(origin.WithRetries(2), origin.WithBackoff(time.Millisecond, 10*time.Millisecond), origin.WithLogger(quietLogger()))})
	if err != nil {
		t.Fatalf("p2p.New: %v", err)
	}
	return p
}

// newPeer starts a peer closed at the end of the test.
func newPeer(t *testing.T, supernodes ...string) *p2p.Peer {
	t.Helper()
	p := openPeer(t, supernodes...)
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("peer Close: %v", err)
		}
	})
	return p
}

// peerSet closes its peers all at once at the end of the test that made
// it: a Close can take seconds while other peers are connected (see
// TestCloseWithSilentClient), so closing a swarm one by one adds up.
type peerSet struct {
	mu    sync.Mutex
	peers []*p2p.Peer
}

func newPeerSet(t *testing.T) *peerSet {
	s := &peerSet{}
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		var wg sync.WaitGroup
		for _, p := range s.peers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := p.Close(); err != nil {
					t.Errorf("peer Close: %v", err)
				}
			}()
		}
		wg.Wait()
	})
	return s
}

func (s *peerSet) add(t *testing.T, supernodes ...string) *p2p.Peer {
	t.Helper()
	p := openPeer(t, supernodes...)
	s.mu.Lock()
	s.peers = append(s.peers, p)
	s.mu.Unlock()
	return p
}

func download(t *testing.T, p *p2p.Peer, req p2p.Request) (*p2p.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return p.Download(ctx, req)
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("output: %v", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// noOutput checks that nothing, not even a temporary file, was left in dir.
func noOutput(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("failed download left %s in the output directory", e.Name())
	}
}

const (
	swarmSize = 8 << 20
	pieceSize = 1 << 20
)

func TestSwarm(t *testing.T) {
	t.Parallel()
	origin := testenv.NewOrigin(t)
	sha := origin.AddRandom("big", swarmSize, 42)
	sn := startSupernode(t)
	url := origin.URL("big")
	wantID, _ := manifest.TaskID(url, "", nil)

	const numPeers = 4
	peers := make([]*p2p.Peer, numPeers)
	set := newPeerSet(t)
	for i := range peers {
		peers[i] = set.add(t, sn)
	}
	out := t.TempDir()
	results := make([]*p2p.Result, numPeers)
	errs := make([]error, numPeers)
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = download(t, p, p2p.Request{URL: url, Output: filepath.Join(out, fmt.Sprintf("peer%d", i))})
		}()
	}
	wg.Wait()

	var fromPeers, uploaded int64
	for i, res := range results {
		if errs[i] != nil {
			t.Fatalf("peer %d: %v", i, errs[i])
		}
		if got := fileSHA256(t, filepath.Join(out, fmt.Sprintf("peer%d", i))); got != sha {
			t.Errorf("peer %d: output sha256 %s, origin %s", i, got, sha)
		}
		if res.TaskID != wantID || res.Length != swarmSize {
			t.Errorf("peer %d: result task %s length %d, want %s %d", i, res.TaskID, res.Length, wantID, swarmSize)
		}
		if res.BackToSource || res.FromOrigin != 0 {
			t.Errorf("peer %d went to the origin: %+v", i, res)
		}
		if sum := res.Reused + res.FromPeers + res.FromSeed + res.FromOrigin; sum != swarmSize {
			t.Errorf("peer %d: reused %d + peers %d + seed %d + origin %d = %d, want %d",
				i, res.Reused, res.FromPeers, res.FromSeed, res.FromOrigin, sum, swarmSize)
		}
		fromPeers += res.FromPeers
		uploaded += peers[i].UploadedBytes()
		t.Logf("peer %d: %d from peers, %d from seed, in %v", i, res.FromPeers, res.FromSeed, res.Elapsed)
	}
	if got := origin.BytesServed("big"); got > swarmSize+pieceSize {
		t.Errorf("origin served %d bytes for %d peers, want at most the file plus one piece (%d)", got, numPeers, swarmSize+pieceSize)
	}
	if fromPeers == 0 {
		t.Error("no byte came from another peer")
	}
	// What peers got from each other, other peers uploaded.
	if uploaded < fromPeers {
		t.Errorf("peers uploaded %d bytes but received %d from peers", uploaded, fromPeers)
	}

	t.Run("re-download reuses the store", func(t *testing.T) {
		before := origin.BytesServed("big")
		up := make([]int64, numPeers)
		for i, p := range peers {
			up[i] = p.UploadedBytes()
		}
		path := filepath.Join(t.TempDir(), "again")
		res, err := download(t, peers[0], p2p.Request{URL: url, Output: path})
		if err != nil {
			t.Fatal(err)
		}
		if res.Reused != swarmSize || res.FromPeers != 0 || res.FromSeed != 0 || res.FromOrigin != 0 || res.BackToSource {
			t.Errorf("result %+v, want everything reused and nothing fetched", res)
		}
		if got := fileSHA256(t, path); got != sha {
			t.Errorf("output sha256 %s, want %s", got, sha)
		}
		if got := origin.BytesServed("big"); got != before {
			t.Errorf("origin served %d more bytes", got-before)
		}
		for i, p := range peers {
			if p.UploadedBytes() != up[i] {
				t.Errorf("peer %d uploaded %d bytes for a re-download from the store", i, p.UploadedBytes()-up[i])
			}
		}
	})

	t.Run("whole-file digests", func(t *testing.T) {
		data, err := io.ReadAll(testenv.RandomReader(swarmSize, 42))
		if err != nil {
			t.Fatal(err)
		}
		goodMD5 := fmt.Sprintf("%x", md5.Sum(data))
		tests := []struct {
			name   string
			digest string
			md5    string
			ok     bool
		}{
			{"right sha256", "sha256:" + sha, "", true},
			{"right sha256, upper case", "sha256:" + strings.ToUpper(sha), "", true},
			{"right sha256 and MD5", "sha256:" + sha, goodMD5, true},
			{"wrong sha256", "sha256:" + strings.Repeat("0", 64), "", false},
			{"wrong MD5", "", strings.Repeat("0", 32), false},
			{"right sha256, wrong MD5", "sha256:" + sha, strings.Repeat("f", 32), false},
			{"malformed digest", "sha256:xyz", "", false},
			{"md5 as digest", "md5:" + goodMD5, "", false},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				dir := t.TempDir()
				path := filepath.Join(dir, "out")
				res, err := download(t, peers[1], p2p.Request{URL: url, Output: path, Digest: tc.digest, MD5: tc.md5})
				if !tc.ok {
					if err == nil {
						t.Fatalf("download succeeded (%+v), want a digest error", res)
					}
					noOutput(t, dir)
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if got := fileSHA256(t, path); got != sha {
					t.Errorf("output sha256 %s", got)
				}
			})
		}
	})

	t.Run("wrong digest on a fresh peer", func(t *testing.T) {
		p := set.add(t, sn)
		dir := t.TempDir()
		_, err := download(t, p, p2p.Request{URL: url, Output: filepath.Join(dir, "out"), Digest: "sha256:" + strings.Repeat("a", 64)})
		if err == nil || !strings.Contains(err.Error(), sha) {
			t.Errorf("error %v, want one naming the actual digest %s", err, sha)
		}
		noOutput(t, dir)
	})
}

func TestNoSupernode(t *testing.T) {
	origin := testenv.NewOrigin(t)
	sha := origin.AddRandom("f", 3<<20+777, 5)
	tests := []struct {
		name       string
		supernodes func(t *testing.T) []string
	}{
		{"unreachable supernode", func(t *testing.T) []string { return []string{closedAddr(t)} }},
		{"two unreachable supernodes", func(t *testing.T) []string { return []string{closedAddr(t), closedAddr(t)} }},
		{"no supernode configured", func(t *testing.T) []string { return nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newPeer(t, tc.supernodes(t)...)
			t.Run("no source", func(t *testing.T) {
				dir := t.TempDir()
				reqs := origin.Requests("f")
				res, err := download(t, p, p2p.Request{URL: origin.URL("f"), Output: filepath.Join(dir, "out"), NoSource: true})
				if !errors.Is(err, p2p.ErrNoSource) {
					t.Fatalf("error %v (result %+v), want one wrapping ErrNoSource", err, res)
				}
				noOutput(t, dir)
				if origin.Requests("f") != reqs {
					t.Errorf("NoSource download made %d origin requests", origin.Requests("f")-reqs)
				}
			})
			t.Run("back to source", func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "out")
				before := origin.BytesServed("f")
				res, err := download(t, p, p2p.Request{URL: origin.URL("f"), Output: path})
				if err != nil {
					t.Fatal(err)
				}
				if !res.BackToSource || res.FromOrigin != 3<<20+777 || res.FromPeers != 0 || res.FromSeed != 0 {
					t.Errorf("result %+v, want BackToSource with everything from the origin", res)
				}
				if got := origin.BytesServed("f") - before; got != 3<<20+777 {
					t.Errorf("origin served %d bytes, want %d", got, 3<<20+777)
				}
				if got := fileSHA256(t, path); got != sha {
					t.Errorf("output sha256 %s, want %s", got, sha)
				}
			})
		})
	}
}

func TestBadRequests(t *testing.T) {
	origin := testenv.NewOrigin(t)
	origin.AddRandom("f", 1<<20, 5)
	p := newPeer(t) // back to source: no supernode needed
	outDir := t.TempDir()
	tests := []struct {
		name   string
		req    p2p.Request
		inErr  string
		origin bool // the origin may have been asked
	}{
		{"empty URL", p2p.Request{URL: "", Output: filepath.Join(outDir, "a")}, "invalid URL", false},
		{"no scheme", p2p.Request{URL: "example.com/file", Output: filepath.Join(outDir, "a")}, "invalid URL", false},
		{"ftp", p2p.Request{URL: "ftp://" + origin.Addr() + "/files/f", Output: filepath.Join(outDir, "a")}, "invalid URL", false},
		{"no host", p2p.Request{URL: "http:///files/f", Output: filepath.Join(outDir, "a")}, "invalid URL", false},
		{"unparsable", p2p.Request{URL: "http://[::1/files/f", Output: filepath.Join(outDir, "a")}, "invalid URL", false},
		{"origin 404", p2p.Request{URL: origin.URL("missing"), Output: filepath.Join(outDir, "a")}, "404", true},
		{"output directory missing", p2p.Request{URL: origin.URL("f"), Output: filepath.Join(outDir, "no", "such", "dir", "a")}, "does not exist", true},
		{"output is a directory", p2p.Request{URL: origin.URL("f"), Output: outDir}, "directory", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reqs := origin.Requests("f") + origin.Requests("missing")
			start := time.Now()
			res, err := download(t, p, tc.req)
			if err == nil {
				t.Fatalf("download succeeded: %+v", res)
			}
			if !strings.Contains(err.Error(), tc.inErr) {
				t.Errorf("error %q does not mention %q", err, tc.inErr)
			}
			if !tc.origin {
				if el := time.Since(start); el > 2*time.Second {
					t.Errorf("took %v to reject a malformed URL", el)
				}
				if got := origin.Requests("f") + origin.Requests("missing") - reqs; got != 0 {
					t.Errorf("%d origin requests for a malformed URL", got)
				}
			}
			noOutput(t, outDir)
		})
	}
}

// TestConcurrentSameURL: two downloads of one URL in one peer share the
// work: the origin serves the file once.
func TestConcurrentSameURL(t *testing.T) {
	origin := testenv.NewOrigin(t)
	const size = 2<<20 + 1
	sha := origin.AddRandom("f", size, 9)
	sn := startSupernode(t)
	p := newPeer(t, sn)
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = download(t, p, p2p.Request{URL: origin.URL("f"), Output: filepath.Join(dir, fmt.Sprint(i))})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("download %d: %v", i, err)
		}
		if got := fileSHA256(t, filepath.Join(dir, fmt.Sprint(i))); got != sha {
			t.Errorf("output %d sha256 %s, want %s", i, got, sha)
		}
	}
	if got := origin.BytesServed("f"); got > size+pieceSize {
		t.Errorf("origin served %d bytes for three downloads of %d in one peer", got, size)
	}
}

// TestHeaderToOrigin: Request.Header reaches the origin, through the
// supernode's seed or directly when going back to origin.
func TestHeaderToOrigin(t *testing.T) {
	content := []byte(strings.Repeat("damselfly header test ", 100000)) // 2.2 MB
	sum := sha256.Sum256(content)
	sha := hex.EncodeToString(sum[:])
	const auth = "Bearer open-sesame"
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != auth {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		http.ServeContent(w, r, "", testenv.OriginModTime, bytes.NewReader(content))
	}))
	t.Cleanup(origin.Close)
	tests := []struct {
		name       string
		supernodes func(t *testing.T) []string
	}{
		{"through the seed", func(t *testing.T) []string { return []string{startSupernode(t)} }},
		{"back to source", func(t *testing.T) []string { return nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newPeer(t, tc.supernodes(t)...)
			dir := t.TempDir()
			_, err := download(t, p, p2p.Request{URL: origin.URL + "/f", Tag: "anon", Output: filepath.Join(dir, "anon")})
			if err == nil || !strings.Contains(err.Error(), "401") {
				t.Errorf("without the header: error %v, want the origin's 401", err)
			}
			path := filepath.Join(dir, "out")
			if _, err := download(t, p, p2p.Request{URL: origin.URL + "/f", Output: path, Header: http.Header{"Authorization": {auth}}}); err != nil {
				t.Fatalf("with the header: %v", err)
			}
			if got := fileSHA256(t, path); got != sha {
				t.Errorf("output sha256 %s, want %s", got, sha)
			}
		})
	}
}

// TestCloseWithSilentClient: a client connected to the upload server that
// has not sent a request yet (an HTTP transport's spare connection, a port
// scanner) must not hold up Close, and Close must not leave it open.
func TestCloseWithSilentClient(t *testing.T) {
	t.Parallel()
	p := newPeer(t)
	c, err := net.Dial("tcp", p.UploadAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	time.Sleep(20 * time.Millisecond) // accepted
	start := time.Now()
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	el := time.Since(start)
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, rerr := c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(rerr, &ne) && ne.Timeout() {
		t.Errorf("connection to the upload server still open 500ms after Close returned")
	}
	if el > 2*time.Second {
		t.Errorf("Close took %v with one silent client connected", el)
	}
}
