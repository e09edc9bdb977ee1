package p2p_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/origin"
	"github.com/damselfly-p2p/damselfly/p2p"
	"github.com/damselfly-p2p/damselfly/supernode"
	"github.com/damselfly-p2p/damselfly/testenv"
	"github.com/damselfly-p2p/damselfly/trust"
	"github.com/damselfly-p2p/damselfly/trust/tlsconf"
)

// peerWith starts a peer like newPeer whose Config edit adjusts.
func peerWith(t *testing.T, edit func(*p2p.Config), supernodes ...string) *p2p.Peer {
	t.Helper()
	cfg := p2p.Config{DataDir: t.TempDir(), Supernodes: supernodes, UploadListen: "127.0.0.1:0",
		StallTimeout: 8 * time.Second, Log: quietLogger(),
		Source: origin.New(origin.WithRetries(1), origin.WithBackoff(time.Millisecond, 10*time.Millisecond), origin.WithLogger(quietLogger()))}
	if edit != nil {
		edit(&cfg)
	}
	p, err := p2p.New(cfg)
	if err != nil {
		t.Fatalf("p2p.New: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("peer Close: %v", err)
		}
	})
	return p
}

// blobOrigin serves content at an OCI blob URL naming digest (which may
// not be the content's) and returns that URL.
func blobOrigin(t *testing.T, content []byte, digest string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "blob", time.Unix(1, 0), bytes.NewReader(content))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/v2/library/x/blobs/" + digest
}

func sha256Digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// TestDigestTaskMismatch: content at a blob URL that does not hash to the
// URL's digest fails the download on the peer, leaves no output and no
// stored pieces, whether it came through the seed or from the origin.
func TestDigestTaskMismatch(t *testing.T) {
	content := bytes.Repeat([]byte("not the blob you asked for "), 100_000) // ~2.7 MB: several pieces
	wrong := sha256Digest([]byte("the real blob"))
	tests := []struct {
		name       string
		supernodes func(t *testing.T) []string
		req        func(url string) p2p.Request
	}{
		{"back to source, blob URL", func(*testing.T) []string { return nil },
			func(url string) p2p.Request { return p2p.Request{URL: url} }},
		{"through the seed, blob URL", func(t *testing.T) []string { return []string{startSupernode(t)} },
			func(url string) p2p.Request { return p2p.Request{URL: url} }},
		{"back to source, --digest", func(*testing.T) []string { return nil },
			func(url string) p2p.Request { return p2p.Request{URL: url + "x", Digest: wrong} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			url := blobOrigin(t, content, wrong)
			p := peerWith(t, nil, tc.supernodes(t)...)
			outDir := t.TempDir()
			req := tc.req(url)
			req.Output = filepath.Join(outDir, "out")
			res, err := download(t, p, req)
			if err == nil {
				t.Fatalf("download of mismatching content succeeded: %+v", res)
			}
			noOutput(t, outDir)
			stats, err := p.Store().List()
			if err != nil {
				t.Fatal(err)
			}
			for _, st := range stats {
				if st.Pieces > 0 {
					t.Errorf("store keeps %d pieces of task %s after the digest check failed", st.Pieces, st.Meta.TaskID)
				}
			}
		})
	}
}

// TestDigestTaskMatch: the right bytes at a blob URL download fine (the
// check does not refuse good content).
func TestDigestTaskMatch(t *testing.T) {
	content := bytes.Repeat([]byte("the blob "), 300_000)
	url := blobOrigin(t, content, sha256Digest(content))
	p := peerWith(t, nil, startSupernode(t))
	out := filepath.Join(t.TempDir(), "out")
	if _, err := download(t, p, p2p.Request{URL: url, Output: out}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("output: %v (%d bytes, want %d)", err, len(got), len(content))
	}
}

// TestUploadTaskAuth: a peer with a cluster token serves pieces and piece
// maps only to a caller with a task credential for that very task.
func TestUploadTaskAuth(t *testing.T) {
	token, err := trust.NewSecret("cluster-token-for-tests-0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	key, err := trust.DeriveKey(token)
	if err != nil {
		t.Fatal(err)
	}
	iss := trust.Issuer{Key: key}
	o := testenv.NewOrigin(t)
	o.AddRandom("f", 3<<20, 5)
	p := peerWith(t, func(c *p2p.Config) { c.ClusterToken = token })
	res, err := download(t, p, p2p.Request{URL: o.URL("f")})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := manifest.TaskID(o.URL("g"), "", nil)
	right, _ := iss.IssueTask("child", res.TaskID)
	wrongTask, _ := iss.IssueTask("child", other)
	otherKey, _ := trust.NewSecret("another-cluster-token-0123456789abcdef")
	ok2, _ := trust.DeriveKey(otherKey)
	foreign, _ := trust.Issuer{Key: ok2}.IssueTask("child", res.TaskID)
	tests := []struct {
		name, cred string
		want       int
	}{
		{"no credential", "", http.StatusUnauthorized},
		{"credential for another task", wrongTask, http.StatusUnauthorized},
		{"credential of another cluster", foreign, http.StatusUnauthorized},
		{"right credential", right, http.StatusOK},
	}
	for _, tc := range tests {
		for _, path := range []string{"pieces/0", "bitmap"} {
			t.Run(tc.name+" "+path, func(t *testing.T) {
				req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/peer/tasks/%s/%s", p.UploadAddr(), res.TaskID, path), nil)
				if tc.cred != "" {
					req.Header.Set("Authorization", "Bearer "+tc.cred)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tc.want {
					t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
				}
			})
		}
	}
}

// tlsFiles writes a CA and one certificate for 127.0.0.1 (server and
// client use) signed by it, and returns the options naming them.
func tlsFiles(t *testing.T) tlsconf.Options {
	t.Helper()
	dir := t.TempDir()
	caCert, caKey, err := tlsconf.GenerateCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caPath, _, err := tlsconf.WriteFiles(dir, "ca", caCert, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := tlsconf.GenerateCert(caCert, caKey, "node", []string{"127.0.0.1"}, time.Hour, tlsconf.UsageBoth)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath, err := tlsconf.WriteFiles(dir, "node", cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return tlsconf.Options{CertFile: certPath, KeyFile: keyPath, CAFile: caPath}
}

// TestSwarmMutualTLS: a supernode and four peers, all over mutual TLS
// (with and without a cluster token), deliver the right bytes, some going
// from peer to peer; the upload server answers no plain
// HTTP and no TLS client without a certificate from the CA.
func TestSwarmMutualTLS(t *testing.T) {
	token, err := trust.NewSecret("cluster-token-for-tests-0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		token trust.Secret
	}{{"mTLS", trust.Secret{}}, {"mTLS and cluster token", token}} {
		t.Run(tc.name, func(t *testing.T) {
			tlsOpts := tlsFiles(t)
			serverTLS, err := tlsOpts.ServerConfig()
			if err != nil {
				t.Fatal(err)
			}
			o := testenv.NewOrigin(t)
			sha := o.AddRandom("big", 6<<20, 7)
			sn := startSupernodeTLS(t, serverTLS, func(c *supernode.Config) { c.ClusterToken = tc.token })
			withTrust := func(c *p2p.Config) { c.ClusterToken, c.TLS = tc.token, tlsOpts }
			// Four peers: the seed hands each piece to a couple of children
			// only, so the others relay.
			var peers []*p2p.Peer
			for range 4 {
				peers = append(peers, peerWith(t, withTrust, sn))
			}
			results := make([]*p2p.Result, len(peers))
			errs := make([]error, len(peers))
			outs := make([]string, len(peers))
			var wg sync.WaitGroup
			for i, p := range peers {
				outs[i] = filepath.Join(t.TempDir(), "out")
				wg.Add(1)
				go func() {
					defer wg.Done()
					results[i], errs[i] = download(t, p, p2p.Request{URL: o.URL("big"), Output: outs[i], NoSource: true})
				}()
			}
			wg.Wait()
			fromPeers := int64(0)
			for i := range peers {
				if errs[i] != nil {
					t.Fatalf("peer %d: %v", i, errs[i])
				}
				if got := fileSHA256(t, outs[i]); got != sha {
					t.Errorf("peer %d: output sha256 %s, want %s", i, got, sha)
				}
				fromPeers += results[i].FromPeers
			}
			if fromPeers == 0 {
				t.Errorf("no piece went from peer to peer: %+v", results)
			}
			// Plain HTTP gets Go's "client sent an HTTP request to an HTTPS server".
			if resp, err := http.Get("http://" + peers[0].UploadAddr() + "/peer/tasks/x/bitmap"); err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusBadRequest {
					t.Errorf("plain HTTP to the TLS upload server: %s", resp.Status)
				}
			}
			insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
			if resp, err := insecure.Get("https://" + peers[0].UploadAddr() + "/peer/tasks/x/bitmap"); err == nil {
				resp.Body.Close()
				t.Errorf("client without a certificate got %s", resp.Status)
			}
		})
	}
}
