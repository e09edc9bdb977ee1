//go:build e2e

package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/testenv"
	"github.com/damselfly-p2p/damselfly/trust/tlsconf"
	"github.com/damselfly-p2p/damselfly/wire"
)

// The trust tests script the attacks of the "Trust" issue against real
// processes on loopback; each must end in a refusal, with nothing leaked and
// nothing wrong served.

// apiAnswer is one raw answer of a supernode or upload server.
type apiAnswer struct {
	status int
	header http.Header
	body   []byte
}

// errorMessage is the "message" of a JSON error answer ("" otherwise).
func (a apiAnswer) errorMessage() string {
	var e wire.ErrorResponse
	json.Unmarshal(a.body, &e)
	return e.Message
}

// call sends method url with in as a JSON body (nil: none) and bearer as
// the Authorization (""; none) through client, failing the test on a
// transport error.
func call(t *testing.T, client *http.Client, method, url, bearer string, in any) apiAnswer {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return apiAnswer{status: resp.StatusCode, header: resp.Header, body: b}
}

// countingServer is a loopback HTTP server standing for an internal service
// or a foreign host: it counts every request (and those carrying an
// Authorization header) and answers with h.
type countingServer struct {
	*httptest.Server
	requests, withAuth atomic.Int64
}

func newCountingServer(t *testing.T, h http.Handler) *countingServer {
	t.Helper()
	c := &countingServer{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.requests.Add(1)
		if r.Header.Get("Authorization") != "" {
			c.withAuth.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(c.Close)
	return c
}

// addr is the server's host:port.
func (c *countingServer) addr() string { return strings.TrimPrefix(c.URL, "http://") }

// serveBytes serves data at every path (ranges, HEAD and conditional
// requests through http.ServeContent).
func serveBytes(data []byte) http.Handler {
	mod := time.Now().Add(-time.Hour)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "blob", mod, bytes.NewReader(data))
	})
}

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// register registers peerID for url with bearer (the cluster token for a
// first claim) and returns the raw answer.
func register(t *testing.T, client *http.Client, sn *testenv.Supernode, bearer, peerID, url string, header http.Header) apiAnswer {
	t.Helper()
	return call(t, client, http.MethodPost, sn.URL("/api/v1/tasks/register"), bearer, wire.RegisterRequest{
		PeerID: peerID, Host: wire.Host{Hostname: peerID, UploadAddr: "127.0.0.1:1"}, URL: url, Header: header})
}

// assertNoFile fails the test if path exists.
func assertNoFile(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		t.Fatalf("%s exists after a refused download", path)
	}
}

// waitFail waits for p and fails the test unless it exited non-zero.
func waitFail(t *testing.T, p *testenv.Proc, timeout time.Duration) {
	t.Helper()
	code, err := p.Wait(timeout)
	if err != nil || code == 0 {
		t.Fatalf("%s: exit %d, %v, want a non-zero exit; log:\n%s", p.Name, code, err, p.Tail(30))
	}
}

// TestTrustNoToken: with a cluster token every supernode route but
// /healthz and a dfdaemon's upload server answer 401 to a caller without
// one; a peer's credential cannot speak for another peer.
func TestTrustNoToken(t *testing.T) {
	bin := bins(t)
	tr := testenv.NewTrust(t, testenv.TrustOptions{ClusterToken: true, AdminToken: true})
	origin := testenv.NewOrigin(t)
	sum := origin.AddRandom("f.bin", 3*MiB, 31)
	sn := tr.StartSupernode(t, bin, testenv.AllowOrigins(origin.Addr())...)
	d := tr.StartDaemon(t, bin, sn.Addr)
	client := tr.HTTPClient(t, 30*time.Second)

	// A real task, so that the piece routes name something that exists.
	out := filepath.Join(t.TempDir(), "f.bin")
	p := testenv.Start(t, bin, "dfget", origin.URL("f.bin"), "-o", out, "--daemon-sock", d.Sock, "--no-progress")
	waitOK(t, p, time.Minute)
	assertSHA(t, out, sum)
	st := sn.Status(t)
	task := st.Task(origin.URL("f.bin"))
	if task == nil {
		t.Fatalf("no task for the download in %+v", st.Tasks)
	}
	id := task.TaskID

	routes := []struct{ method, path string }{
		{http.MethodPost, "/api/v1/tasks/register"},
		{http.MethodPost, "/api/v1/tasks/sync"},
		{http.MethodPost, "/api/v1/peers/heartbeat"},
		{http.MethodPost, "/api/v1/peers/announce"},
		{http.MethodPost, "/api/v1/peers/leave"},
		{http.MethodGet, "/api/v1/status"},
		{http.MethodGet, "/api/v1/tasks/" + id},
		{http.MethodGet, "/metrics"},
		{http.MethodPost, "/api/v1/preheats"},
		{http.MethodGet, "/api/v1/preheats"},
		{http.MethodPost, "/api/v1/registry/notifications"},
		{http.MethodGet, "/peer/tasks/" + id + "/pieces/0"},
		{http.MethodGet, "/peer/tasks/" + id + "/bitmap"},
	}
	for _, rt := range routes {
		for _, bearer := range []string{"", "not-the-token"} {
			t.Run(fmt.Sprintf("supernode %s %s bearer=%q", rt.method, rt.path, bearer), func(t *testing.T) {
				a := call(t, client, rt.method, sn.URL(rt.path), bearer, map[string]any{"peerID": "x"})
				if a.status != http.StatusUnauthorized {
					t.Errorf("answered %d, want 401: %.200s", a.status, a.body)
				}
			})
		}
	}
	t.Run("healthz open", func(t *testing.T) {
		if a := call(t, client, http.MethodGet, sn.URL("/healthz"), "", nil); a.status != http.StatusOK {
			t.Errorf("/healthz answered %d", a.status)
		}
	})
	for _, path := range []string{"/peer/tasks/" + id + "/pieces/0", "/peer/tasks/" + id + "/bitmap"} {
		// The cluster token is not a task credential either.
		for _, bearer := range []string{"", tr.ClusterToken} {
			t.Run(fmt.Sprintf("dfdaemon %s with cluster token=%v", path, bearer != ""), func(t *testing.T) {
				a := call(t, client, http.MethodGet, tr.Scheme()+"://"+d.UploadAddr+path, bearer, nil)
				if a.status != http.StatusUnauthorized {
					t.Errorf("answered %d, want 401: %.100q", a.status, a.body)
				}
			})
		}
	}

	t.Run("wrong peer credential", func(t *testing.T) {
		url := origin.URL("f.bin")
		ra := register(t, client, sn, tr.ClusterToken, "peer-a", url, nil)
		rb := register(t, client, sn, tr.ClusterToken, "peer-b", url, nil)
		credA, credB := ra.header.Get(wire.PeerCredentialHeader), rb.header.Get(wire.PeerCredentialHeader)
		if ra.status != http.StatusOK || rb.status != http.StatusOK || credA == "" || credB == "" {
			t.Fatalf("registrations: %d %.200s / %d %.200s; credentials issued: %v %v", ra.status, ra.body, rb.status, rb.body, credA != "", credB != "")
		}
		before := peerStatus(t, sn, "peer-b")
		// The cluster token no longer claims a known peer ID either.
		for _, bearer := range []string{credA, tr.ClusterToken} {
			attacks := []struct {
				path string
				body any
			}{
				{"/api/v1/peers/announce", wire.AnnounceRequest{PeerID: "peer-b", Host: wire.Host{Hostname: "evil", UploadAddr: "127.0.0.1:9"}}},
				{"/api/v1/tasks/register", wire.RegisterRequest{PeerID: "peer-b", Host: wire.Host{Hostname: "evil", UploadAddr: "127.0.0.1:9"}, URL: url}},
				{"/api/v1/tasks/sync", wire.SyncRequest{PeerID: "peer-b", TaskID: id, Done: true, BadParents: []wire.ParentReport{{PeerID: "peer-b", Reason: "corrupt"}}}},
				{"/api/v1/peers/heartbeat", wire.HeartbeatRequest{PeerID: "peer-b"}},
				{"/api/v1/peers/leave", wire.LeaveRequest{PeerID: "peer-b"}},
			}
			for _, at := range attacks {
				a := call(t, client, http.MethodPost, sn.URL(at.path), bearer, at.body)
				if a.status != http.StatusUnauthorized && a.status != http.StatusForbidden {
					t.Errorf("%s for peer-b with %s answered %d: %.200s", at.path, credName(bearer, credA), a.status, a.body)
				}
			}
		}
		// Peer A, with its own credential, reports B as a bad parent many
		// times for a task A never asked B for: B stays a normal peer.
		for range 10 {
			call(t, client, http.MethodPost, sn.URL("/api/v1/tasks/sync"), credA, wire.SyncRequest{PeerID: "peer-a", TaskID: "0000000000000000000000000000000000000000000000000000000000000000",
				BadParents: []wire.ParentReport{{PeerID: "peer-b", Reason: "corrupt"}}})
		}
		after := peerStatus(t, sn, "peer-b")
		if after.Addr != before.Addr || after.Hostname != before.Hostname || after.Isolated || after.Tasks != before.Tasks {
			t.Errorf("peer-b changed: before %+v, after %+v", before, after)
		}
	})
}

func credName(bearer, credA string) string {
	if bearer == credA {
		return "peer-a's credential"
	}
	return "the cluster token"
}

// peerStatus returns peerID's entry in the supernode's status, failing the
// test if it is absent.
func peerStatus(t *testing.T, sn *testenv.Supernode, peerID string) testenv.PeerStatus {
	t.Helper()
	for _, p := range sn.Status(t).Peers {
		if p.PeerID == peerID {
			return p
		}
	}
	t.Fatalf("%s is not in the supernode's status", peerID)
	return testenv.PeerStatus{}
}

// TestTrustSSRF: with a valid token, an internal URL (loopback, not
// allowed) cannot be fetched through the seed: not directly, not through a
// 302 from an allowed origin, not through preheat; the internal server
// sees no request and the answers do not tell a listening port from a
// closed one.
func TestTrustSSRF(t *testing.T) {
	bin := bins(t)
	tr := testenv.NewTrust(t, testenv.TrustOptions{ClusterToken: true, AdminToken: true})
	internal := newCountingServer(t, serveBytes([]byte("internal credentials")))
	redirector := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, internal.URL+"/creds", http.StatusFound)
	}))
	closed := fmt.Sprintf("http://127.0.0.1:%d/creds", testenv.FreePort(t))
	sn := tr.StartSupernode(t, bin, testenv.AllowOrigins(redirector.addr())...)
	client := tr.HTTPClient(t, 30*time.Second)

	var messages []string
	for i, url := range []string{internal.URL + "/creds", redirector.URL + "/go", closed, "http://[::1]:" + strings.Split(internal.addr(), ":")[1] + "/creds"} {
		a := register(t, client, sn, tr.ClusterToken, fmt.Sprintf("prober-%d", i), url, nil)
		if a.status < 400 {
			t.Errorf("register %s answered %d: %.200s", url, a.status, a.body)
		}
		if bytes.Contains(a.body, []byte("internal credentials")) {
			t.Errorf("register %s leaked the internal body", url)
		}
		messages = append(messages, a.errorMessage())
	}
	for _, m := range messages[1:] {
		if m != messages[0] {
			t.Errorf("error texts differ (a port scanner could tell them apart): %q", messages)
			break
		}
	}

	// Preheat (admin) of the internal URL and through the redirect.
	for _, url := range []string{internal.URL + "/creds", redirector.URL + "/go"} {
		a := call(t, client, http.MethodPost, sn.URL("/api/v1/preheats"), tr.AdminToken, wire.PreheatRequest{URL: url, Type: wire.PreheatFile})
		if a.status >= 400 {
			continue // refused outright
		}
		var st wire.PreheatStatus
		if err := json.Unmarshal(a.body, &st); err != nil || st.ID == "" {
			t.Fatalf("preheat %s: %d %.200s", url, a.status, a.body)
		}
		deadline := time.Now().Add(30 * time.Second)
		for st.State != wire.PreheatSuccess && st.State != wire.PreheatFailed && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			a = call(t, client, http.MethodGet, sn.URL("/api/v1/preheats/"+st.ID), tr.AdminToken, nil)
			json.Unmarshal(a.body, &st)
		}
		if st.State != wire.PreheatFailed {
			t.Errorf("preheat of %s ended %q, want failed", url, st.State)
		}
	}
	if n := internal.requests.Load(); n != 0 {
		t.Errorf("the internal server received %d requests", n)
	}
	if redirector.requests.Load() == 0 {
		t.Error("the allowed redirecting origin was never asked: the redirect case tested nothing")
	}
}

// TestTrustPoisoning: an attacker registers its own blob URL under the
// digest of a real blob before the victim; the victim ends with the real
// bytes or a failure, never the attacker's.
func TestTrustPoisoning(t *testing.T) {
	bin := bins(t)
	tr := testenv.NewTrust(t, testenv.TrustOptions{ClusterToken: true})
	good := randomBytes(5*MiB, 41)
	bad := randomBytes(5*MiB, 42)
	d := sha256Hex(good)
	real := newCountingServer(t, serveBytes(good))
	evil := newCountingServer(t, serveBytes(bad))
	sn := tr.StartSupernode(t, bin, testenv.AllowOrigins(real.addr(), evil.addr())...)
	client := tr.HTTPClient(t, 30*time.Second)

	evilURL := evil.URL + "/v2/x/blobs/sha256:" + d
	realURL := real.URL + "/v2/lib/blobs/sha256:" + d
	a := call(t, client, http.MethodPost, sn.URL("/api/v1/tasks/register"), tr.ClusterToken, wire.RegisterRequest{
		PeerID: "attacker", Host: wire.Host{Hostname: "attacker", UploadAddr: "127.0.0.1:1"}, URL: evilURL, Lazy: true})
	t.Logf("attacker's registration: %d %.200s", a.status, a.body)
	if a.status == http.StatusOK {
		// Make the seed fetch the attacker's bytes (as a lazy reader would).
		var reg wire.RegisterResponse
		json.Unmarshal(a.body, &reg)
		for i := range manifest.NewLayout(reg.Length).NumPieces() {
			call(t, client, http.MethodGet, sn.URL(fmt.Sprintf("/peer/tasks/%s/pieces/%d", reg.TaskID, i)), reg.TaskCredential, nil)
		}
	}

	// Each victim gets the real bytes or fails without a file; once the
	// seed found the mismatch it refetches from the next requester's URL,
	// so the last victim must get the real bytes.
	const victims = 3
	for i := range victims {
		out := filepath.Join(t.TempDir(), "blob")
		p := tr.Dfget(t, bin, sn.Addr, realURL, out)
		code, err := p.Wait(2 * time.Minute)
		if err != nil {
			t.Fatalf("victim %d: %v", i, err)
		}
		switch {
		case code == 0:
			assertSHA(t, out, d)
		case i == victims-1:
			t.Fatalf("victim %d still fails (exit %d): the poisoned task never recovered; log:\n%s", i, code, p.Tail(30))
		default:
			t.Logf("victim %d failed (exit %d): allowed, as long as no file is left", i, code)
			assertNoFile(t, out)
		}
	}
	if real.requests.Load() == 0 {
		t.Error("the real origin was never asked")
	}
}

// TestTrustPrivateContent: alice downloads with her credentials; mallory,
// without, gets a non-zero exit and no file, also after the revalidation
// interval, and cannot take the pieces from the seed or alice's daemon.
func TestTrustPrivateContent(t *testing.T) {
	bin := bins(t)
	tr := testenv.NewTrust(t, testenv.TrustOptions{ClusterToken: true})
	data := randomBytes(4*MiB, 51)
	origin := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer alice" {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		serveBytes(data).ServeHTTP(w, r)
	}))
	const revalidate = time.Second
	sn := tr.StartSupernode(t, bin, append(testenv.AllowOrigins(origin.addr()), "--revalidate", revalidate.String())...)
	alice := tr.StartDaemon(t, bin, sn.Addr)
	url := origin.URL + "/private/model.bin"

	out := filepath.Join(t.TempDir(), "alice.bin")
	p := testenv.Start(t, bin, "dfget", url, "-o", out, "--daemon-sock", alice.Sock, "--no-progress", "--header", "Authorization: Bearer alice")
	waitOK(t, p, time.Minute)
	assertSHA(t, out, sha256Hex(data))

	mallory := func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "mallory.bin")
		p := tr.Dfget(t, bin, sn.Addr, url, out)
		waitFail(t, p, time.Minute)
		assertNoFile(t, out)
		if log := p.Log(); strings.Contains(log, "unknown flag") || !strings.Contains(log, "401") && !strings.Contains(log, "credentials") {
			t.Errorf("mallory's dfget failed for another reason than a refusal:\n%s", p.Tail(10))
		}
		// The raw API: no task credential for mallory.
		client := tr.HTTPClient(t, 30*time.Second)
		a := register(t, client, sn, tr.ClusterToken, fmt.Sprintf("mallory-%d", time.Now().UnixNano()), url, nil)
		if a.status != http.StatusForbidden || bytes.Contains(a.body, []byte("taskCredential")) {
			t.Errorf("mallory's registration answered %d: %.300s", a.status, a.body)
		}
	}
	t.Run("mallory", mallory)
	time.Sleep(revalidate + 500*time.Millisecond)
	t.Run("mallory after revalidation", mallory)

	t.Run("pieces without a task credential", func(t *testing.T) {
		st := sn.Status(t)
		task := st.Task(url)
		if task == nil {
			t.Fatalf("no task for %s", url)
		}
		client := tr.HTTPClient(t, 30*time.Second)
		for _, base := range []string{sn.URL(""), tr.Scheme() + "://" + alice.UploadAddr} {
			a := call(t, client, http.MethodGet, base+"/peer/tasks/"+task.TaskID+"/pieces/0", tr.ClusterToken, nil)
			if a.status != http.StatusUnauthorized || bytes.Contains(a.body, data[:64]) {
				t.Errorf("%s answered %d to mallory's piece request", base, a.status)
			}
		}
	})
}

// TestTrustDatasetHeaders: dfmount -H sends its header to the manifest's
// own host only, never to a foreign host a dataset entry names.
func TestTrustDatasetHeaders(t *testing.T) {
	bin := bins(t)
	entry := randomBytes(MiB, 61)
	foreign := newCountingServer(t, serveBytes(entry))
	man := fmt.Sprintf(`{"version":1,"files":[{"path":"a.bin","size":%d,"digest":"sha256:%s","url":"%s/data/a.bin"}]}`,
		len(entry), sha256Hex(entry), foreign.URL)
	home := newCountingServer(t, serveBytes([]byte(man)))
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(home.addr(), foreign.addr())...)
	mnt := t.TempDir()
	p := startMount(t, bin, home.URL+"/ds/manifest.json", mnt, "--type", "dataset", "--supernode", sn.Addr,
		"--data-dir", t.TempDir(), "--no-daemon", "--upload-listen", "127.0.0.1:0",
		"-H", "Authorization: Bearer dataset-secret", "--allow-origin", foreign.addr())
	got := sha256Of(t, filepath.Join(mnt, "a.bin"))
	stopMount(t, p)
	if got != sha256Hex(entry) {
		t.Errorf("a.bin: sha256 %s, want %s", got, sha256Hex(entry))
	}
	if home.withAuth.Load() == 0 {
		t.Error("the manifest's own host never got the header: the test proves nothing")
	}
	if n := foreign.withAuth.Load(); n != 0 {
		t.Errorf("the foreign host got %d requests with an Authorization header (of %d)", n, foreign.requests.Load())
	}
}

// TestTrustSwarmMTLS: ten peers over mutual TLS with a cluster token get
// correct files; without a client certificate the upload servers refuse
// the connection.
func TestTrustSwarmMTLS(t *testing.T) {
	bin := bins(t)
	tr := testenv.NewTrust(t, testenv.TrustOptions{ClusterToken: true, TLS: true})
	origin := testenv.NewOrigin(t)
	sum := origin.AddRandom("f.bin", 24*MiB, 71)
	sn := tr.StartSupernode(t, bin, testenv.AllowOrigins(origin.Addr())...)
	d := tr.StartDaemon(t, bin, sn.Addr)
	out := t.TempDir()
	var procs []*testenv.Proc
	for i := range 10 {
		procs = append(procs, tr.Dfget(t, bin, sn.Addr, origin.URL("f.bin"), filepath.Join(out, fmt.Sprintf("f%d", i))))
	}
	waitAll(t, procs, 3*time.Minute)
	var fromPeers int64
	for i, p := range procs {
		assertSHA(t, filepath.Join(out, fmt.Sprintf("f%d", i)), sum)
		fromPeers += parseResult(t, p).Peers
	}
	t.Logf("10 peers over mTLS: %d bytes from other peers, origin served %d", fromPeers, origin.BytesServed("f.bin"))

	// A client that trusts the cluster CA but presents no certificate.
	noCert, err := tlsconf.Options{CAFile: tr.TLS.CAFile}.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	bare := &http.Client{Transport: &http.Transport{TLSClientConfig: noCert}, Timeout: 10 * time.Second}
	withCert := tr.HTTPClient(t, 10*time.Second)
	for _, addr := range []string{sn.Addr, d.UploadAddr} {
		url := "https://" + addr + "/peer/tasks/" + strings.Repeat("0", 64) + "/pieces/0"
		if resp, err := bare.Get(url); err == nil {
			resp.Body.Close()
			t.Errorf("%s answered %s to a client without a certificate", addr, resp.Status)
		}
		// The control: with the cluster's certificate the server answers
		// (401 without a task credential).
		if a := call(t, withCert, http.MethodGet, url, "", nil); a.status != http.StatusUnauthorized {
			t.Errorf("%s answered %d with a certificate and no credential, want 401", addr, a.status)
		}
	}
}
