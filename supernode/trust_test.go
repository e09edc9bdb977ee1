package supernode_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/origin"
	"github.com/damselfly-p2p/damselfly/supernode"
	"github.com/damselfly-p2p/damselfly/trust"
	"github.com/damselfly-p2p/damselfly/trust/egress"
	"github.com/damselfly-p2p/damselfly/wire"
)

const clusterToken = "cluster-token-for-tests-0123456789"

func secret(t *testing.T, s string) trust.Secret {
	t.Helper()
	sec, err := trust.NewSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	return sec
}

// authNode starts a supernode with a cluster token; cfg may set more.
func authNode(t *testing.T, cfg supernode.Config) *node {
	t.Helper()
	cfg.ClusterToken = secret(t, clusterToken)
	return startNode(t, cfg)
}

// call sends a request with "Authorization: Bearer token" (none if empty)
// and extra headers.
func (n *node) call(t *testing.T, method, path, token string, body any, extra http.Header) answer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, n.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range extra {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

// registerAs registers with token and returns the answer and the peer
// credential the supernode handed out.
func (n *node) registerAs(t *testing.T, token string, req wire.RegisterRequest) (*wire.RegisterResponse, string) {
	t.Helper()
	a := n.call(t, http.MethodPost, "/api/v1/tasks/register", token, req, nil)
	if a.status != http.StatusOK {
		t.Fatalf("register %s as %s: status %d: %s", req.URL, req.PeerID, a.status, a.body)
	}
	var resp wire.RegisterResponse
	if err := json.Unmarshal(a.body, &resp); err != nil {
		t.Fatal(err)
	}
	cred := a.header.Get(wire.PeerCredentialHeader)
	if cred == "" {
		t.Fatal("register answer carries no peer credential")
	}
	return &resp, cred
}

// contentOrigin serves body at every path; requests counts the requests.
func contentOrigin(t *testing.T, body []byte, requests *atomic.Int64) *httptest.Server {
	t.Helper()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if requests != nil {
			requests.Add(1)
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	}))
	t.Cleanup(hs.Close)
	return hs
}

func policy(t *testing.T, allow ...string) *egress.Policy {
	t.Helper()
	p, err := egress.New(egress.Options{Allow: allow})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func hostOf(hs *httptest.Server) string { return strings.TrimPrefix(hs.URL, "http://") }

// TestAuthRequired: with a cluster token, every route but /healthz refuses
// a request without a bearer, and one with a wrong bearer.
func TestAuthRequired(t *testing.T) {
	n := authNode(t, supernode.Config{NotificationsToken: secret(t, "webhook-token-0123456789")})
	routes := []struct{ method, path string }{
		{"POST", "/api/v1/tasks/register"},
		{"POST", "/api/v1/tasks/sync"},
		{"POST", "/api/v1/peers/heartbeat"},
		{"POST", "/api/v1/peers/announce"},
		{"POST", "/api/v1/peers/leave"},
		{"GET", "/api/v1/status"},
		{"GET", "/api/v1/tasks/0123"},
		{"POST", "/api/v1/preheats"},
		{"GET", "/api/v1/preheats"},
		{"GET", "/api/v1/preheats/0123"},
		{"POST", "/api/v1/registry/notifications"},
		{"GET", "/metrics"},
		{"GET", "/peer/tasks/0123/pieces/0"},
		{"GET", "/peer/tasks/0123/bitmap"},
	}
	for _, rt := range routes {
		for _, tok := range []string{"", "not-the-token-0123456789"} {
			t.Run(rt.method+rt.path+"/token="+fmt.Sprint(tok != ""), func(t *testing.T) {
				a := n.call(t, rt.method, rt.path, tok, map[string]string{"peerID": "p1"}, nil)
				if a.status != http.StatusUnauthorized {
					t.Fatalf("status %d, want 401 (%s)", a.status, a.body)
				}
			})
		}
	}
	if a := n.call(t, "GET", "/healthz", "", nil, nil); a.status != http.StatusOK {
		t.Fatalf("/healthz: status %d", a.status)
	}
	// The cluster token opens the admin routes when no admin token is set,
	// and never the webhook, which has its own token.
	if a := n.call(t, "GET", "/api/v1/status", clusterToken, nil, nil); a.status != http.StatusOK {
		t.Fatalf("status with the cluster token: %d", a.status)
	}
	if a := n.call(t, "POST", "/api/v1/registry/notifications", clusterToken, map[string]any{}, nil); a.status != http.StatusUnauthorized {
		t.Fatalf("notifications with the cluster token: %d, want 401", a.status)
	}
}

// TestAdminToken: with an admin token, the cluster token no longer opens
// the admin routes.
func TestAdminToken(t *testing.T) {
	n := authNode(t, supernode.Config{AdminToken: secret(t, "admin-token-0123456789")})
	for _, path := range []string{"/api/v1/status", "/metrics", "/api/v1/preheats"} {
		if a := n.call(t, "GET", path, clusterToken, nil, nil); a.status != http.StatusUnauthorized {
			t.Errorf("%s with the cluster token: %d, want 401", path, a.status)
		}
		if a := n.call(t, "GET", path, "admin-token-0123456789", nil, nil); a.status != http.StatusOK {
			t.Errorf("%s with the admin token: %d, want 200", path, a.status)
		}
	}
}

// TestPeerBinding: a peer's credential speaks for that peer only, and the
// cluster token cannot take over a known peer ID.
func TestPeerBinding(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 1000)
	o := contentOrigin(t, body, nil)
	n := authNode(t, supernode.Config{})
	url := o.URL + "/f"
	regA, credA := n.registerAs(t, clusterToken, wire.RegisterRequest{PeerID: "peer-a", Host: peerHost("a", 4001), URL: url})
	_, credB := n.registerAs(t, clusterToken, wire.RegisterRequest{PeerID: "peer-b", Host: peerHost("b", 4002), URL: url})
	if regA.TaskCredential == "" {
		t.Fatal("register answer carries no task credential")
	}
	id := regA.TaskID
	attacks := []struct {
		name, path string
		body       any
	}{
		{"sync", "/api/v1/tasks/sync", wire.SyncRequest{PeerID: "peer-b", TaskID: id, Done: true}},
		{"report", "/api/v1/tasks/sync", wire.SyncRequest{PeerID: "peer-b", TaskID: id,
			BadParents: []wire.ParentReport{{PeerID: "peer-a", Reason: wire.ReasonCorrupt}}}},
		{"heartbeat", "/api/v1/peers/heartbeat", wire.HeartbeatRequest{PeerID: "peer-b"}},
		{"announce", "/api/v1/peers/announce", wire.AnnounceRequest{PeerID: "peer-b", Host: peerHost("evil", 6666)}},
		{"leave", "/api/v1/peers/leave", wire.LeaveRequest{PeerID: "peer-b"}},
		{"register", "/api/v1/tasks/register", wire.RegisterRequest{PeerID: "peer-b", Host: peerHost("evil", 6666), URL: url}},
	}
	for _, at := range attacks {
		t.Run("credential of A for B/"+at.name, func(t *testing.T) {
			if a := n.call(t, "POST", at.path, credA, at.body, nil); a.status != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401 (%s)", a.status, a.body)
			}
		})
	}
	for _, path := range []string{"/api/v1/tasks/register", "/api/v1/peers/announce"} {
		t.Run("cluster token for known peer "+path, func(t *testing.T) {
			a := n.call(t, "POST", path, clusterToken, wire.RegisterRequest{PeerID: "peer-b", Host: peerHost("evil", 6666), URL: url}, nil)
			if a.status != http.StatusUnauthorized || a.header.Get(wire.PeerCredentialHeader) != "" {
				t.Fatalf("status %d (credential %v), want 401 and none", a.status, a.header.Get(wire.PeerCredentialHeader) != "")
			}
		})
	}
	for _, path := range []string{"/api/v1/tasks/sync", "/api/v1/peers/heartbeat", "/api/v1/peers/leave"} {
		t.Run("cluster token on "+path, func(t *testing.T) {
			if a := n.call(t, "POST", path, clusterToken, wire.SyncRequest{PeerID: "peer-new", TaskID: id}, nil); a.status != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", a.status)
			}
		})
	}
	// B is untouched: still known, at its own address, not isolated.
	st, _ := n.statusAs(t)
	var found bool
	for _, p := range st.Peers {
		if p.PeerID == "peer-b" {
			found = true
			if p.Addr != peerHost("b", 4002).UploadAddr {
				t.Errorf("peer-b's address became %s", p.Addr)
			}
		}
		if p.PeerID == "peer-a" && (p.Isolated || p.Failures > 0) {
			t.Error("peer-a isolated by a forged report")
		}
	}
	if !found {
		t.Fatal("peer-b is gone")
	}
	// B's own credential works, and sync asks for a task credential.
	a := n.call(t, "POST", "/api/v1/tasks/sync", credB, wire.SyncRequest{PeerID: "peer-b", TaskID: id, RefreshTaskCredential: true}, nil)
	if a.status != http.StatusOK {
		t.Fatalf("B's own sync: %d %s", a.status, a.body)
	}
	var sr wire.SyncResponse
	if err := json.Unmarshal(a.body, &sr); err != nil || sr.TaskCredential == "" {
		t.Fatalf("sync answer: %v, task credential %q", err, sr.TaskCredential)
	}
	// A peer credential from another supernode's key does not verify: the
	// key is not derived from the cluster token.
	k, _ := trust.DeriveKey(secret(t, clusterToken))
	forged, _ := trust.Issuer{Key: k}.IssuePeer("peer-b")
	if a := n.call(t, "POST", "/api/v1/peers/heartbeat", forged, wire.HeartbeatRequest{PeerID: "peer-b"}, nil); a.status != http.StatusUnauthorized {
		t.Fatalf("credential minted from the cluster token: %d, want 401", a.status)
	}
}

func (n *node) statusAs(t *testing.T) (wire.Status, []byte) {
	t.Helper()
	a := n.call(t, "GET", "/api/v1/status", clusterToken, nil, nil)
	if a.status != http.StatusOK {
		t.Fatalf("status: %d", a.status)
	}
	var st wire.Status
	if err := json.Unmarshal(a.body, &st); err != nil {
		t.Fatal(err)
	}
	return st, a.body
}

// TestOriginPolicy: the seed fetches nothing from a refused address, not
// even through a redirect from an allowed origin, and says only "origin
// unavailable".
func TestOriginPolicy(t *testing.T) {
	var internalHits atomic.Int64
	internal := contentOrigin(t, []byte("internal secrets"), &internalHits)
	public := httptest.NewServer(http.RedirectHandler(internal.URL+"/admin", http.StatusFound))
	t.Cleanup(public.Close)
	n := startNode(t, supernode.Config{Egress: policy(t, hostOf(public))})
	for _, url := range []string{internal.URL + "/admin", public.URL + "/go"} {
		a := n.post(t, "/api/v1/tasks/register", wire.RegisterRequest{PeerID: "p1", URL: url})
		if a.status != http.StatusBadGateway {
			t.Fatalf("%s: status %d, want 502 (%s)", url, a.status, a.body)
		}
		if e := a.errorResponse(t); e.Message != "origin unavailable" || e.OriginStatus != 0 {
			t.Fatalf("%s: error %+v, want only \"origin unavailable\"", url, e)
		}
	}
	if h := internalHits.Load(); h != 0 {
		t.Fatalf("internal server got %d requests", h)
	}
}

// TestOriginErrorsAlike: a refused address, a closed port, a server that
// hangs and one that speaks garbage all read the same to the requester.
func TestOriginErrorsAlike(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	hang := make(chan struct{})
	hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-hang }))
	t.Cleanup(func() { close(hang); hanging.Close() })
	garbage, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { garbage.Close() })
	go func() {
		for {
			c, err := garbage.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("SSH-2.0-OpenSSH_9.2\r\n"))
			c.Close()
		}
	}()
	// Everything on loopback but the refused port is allowed.
	p := policy(t, closed, hostOf(hanging), garbage.Addr().String())
	src := origin.New(origin.WithRetries(0), origin.WithHTTPClient(&http.Client{
		Transport: p.Transport(&http.Transport{ResponseHeaderTimeout: 200 * time.Millisecond}), CheckRedirect: p.CheckRedirect}))
	n := startNode(t, supernode.Config{Egress: p, Source: src})
	urls := map[string]string{
		"refused": "http://127.0.0.1:9/f",
		"closed":  "http://" + closed + "/f",
		"hangs":   hanging.URL + "/f",
		"garbage": "http://" + garbage.Addr().String() + "/f",
	}
	for name, url := range urls {
		a := n.post(t, "/api/v1/tasks/register", wire.RegisterRequest{PeerID: "p1", URL: url})
		if a.status != http.StatusBadGateway {
			t.Fatalf("%s: status %d, want 502", name, a.status)
		}
		if e := a.errorResponse(t); e.Message != "origin unavailable" || e.Code != wire.CodeOrigin || e.OriginStatus != 0 {
			t.Errorf("%s: error %+v, want code origin, \"origin unavailable\"", name, e)
		}
	}
}

// TestDigestPoisoning: a lazy registration of an evil URL whose path names
// the digest of real content, then a registration of the real URL, never
// leaves the seed complete with the evil bytes; the next registration
// fetches the real content from its own URL.
func TestDigestPoisoning(t *testing.T) {
	real := bytes.Repeat([]byte("real content "), 100000)
	sum := sha256.Sum256(real)
	d := "sha256:" + hex.EncodeToString(sum[:])
	evilBody := bytes.Repeat([]byte("EVIL content "), 100000)
	evil := contentOrigin(t, evilBody, nil)
	good := contentOrigin(t, real, nil)
	n := startNode(t, supernode.Config{})
	evilURL := evil.URL + "/v2/lib/x/blobs/" + d
	reg := n.register(t, wire.RegisterRequest{PeerID: "mallory", URL: evilURL, Lazy: true})
	// Mallory pulls one piece through the seed (on demand), then a real
	// registration asks for everything.
	n.get(t, fmt.Sprintf("/peer/tasks/%s/pieces/0?urgent=1", reg.TaskID))
	a := n.post(t, "/api/v1/tasks/register", wire.RegisterRequest{PeerID: "alice", URL: good.URL + "/blob", Digest: d})
	if a.status != http.StatusOK && a.status != http.StatusBadGateway {
		t.Fatalf("real registration: status %d (%s)", a.status, a.body)
	}
	var ts wire.TaskStatus
	waitFor(t, "the poisoned seed to finish or fail", func() bool {
		ts = n.taskStatus(t, reg.TaskID)
		return ts.State == "done" || ts.State == "failed"
	})
	if ts.State == "done" {
		t.Fatal("seed task complete with bytes that do not hash to its digest")
	}
	if ts.SeedPieces != 0 {
		t.Fatalf("failed seed still holds %d pieces", ts.SeedPieces)
	}
	for i := 0; i < 2; i++ {
		if a := n.get(t, fmt.Sprintf("/peer/tasks/%s/pieces/%d?urgent=1", reg.TaskID, i)); a.status == http.StatusOK {
			t.Fatalf("failed seed serves piece %d", i)
		}
	}
	reg2 := n.register(t, wire.RegisterRequest{PeerID: "alice", URL: good.URL + "/blob", Digest: d})
	n.waitDone(t, reg2.TaskID)
	if got := n.seedContent(t, reg2); "sha256:"+got != d {
		t.Fatalf("seed content %s, want %s", got, d)
	}
}

// TestPrivateContent: content fetched with credentials is served to a later
// requester only if the origin accepts that requester's own credentials.
func TestPrivateContent(t *testing.T) {
	body := bytes.Repeat([]byte("private "), 10000)
	var probes atomic.Int64
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		probes.Add(1)
		if r.Header.Get("Authorization") != "Bearer alice-secret" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	}))
	t.Cleanup(o.Close)
	for _, revalidate := range []time.Duration{time.Hour, time.Nanosecond} {
		t.Run(fmt.Sprint("revalidate=", revalidate), func(t *testing.T) {
			n := authNode(t, supernode.Config{Revalidate: revalidate})
			url := o.URL + "/private"
			alice := http.Header{"Authorization": {"Bearer alice-secret"}}
			reg, _ := n.registerAs(t, clusterToken, wire.RegisterRequest{PeerID: "alice", URL: url, Header: alice})
			if reg.TaskCredential == "" {
				t.Fatal("alice got no task credential")
			}
			for name, h := range map[string]http.Header{"no header": nil, "wrong header": {"Authorization": {"Bearer mallory"}}} {
				for i := 0; i < 2; i++ { // twice: past the interval when it is 1ns
					a := n.call(t, "POST", "/api/v1/tasks/register", clusterToken,
						wire.RegisterRequest{PeerID: fmt.Sprint("mallory-", name, i), URL: url, Header: h}, nil)
					if a.status != http.StatusForbidden {
						t.Fatalf("%s: status %d, want 403 (%s)", name, a.status, a.body)
					}
					e := a.errorResponse(t)
					if e.Code != wire.CodeForbidden || strings.Contains(string(a.body), "taskCredential") {
						t.Fatalf("%s: answer %s", name, a.body)
					}
				}
			}
			// Alice is still served, with her credentials checked again when
			// the interval has passed.
			before := probes.Load()
			_, _ = n.registerAs(t, clusterToken, wire.RegisterRequest{PeerID: "alice-2", URL: url, Header: alice})
			if revalidate == time.Nanosecond && probes.Load() == before {
				t.Error("alice's credentials were not checked again after the interval")
			}
		})
	}
}

// TestSeedUploadAuth: the seed's piece server wants a task credential for
// the task, and names holders by credential and registered address, never
// by the client's header.
func TestSeedUploadAuth(t *testing.T) {
	body := bytes.Repeat([]byte("y"), 200000)
	o := contentOrigin(t, body, nil)
	n := authNode(t, supernode.Config{SeedFanout: 1, SeedFanoutWindow: time.Hour})
	url := o.URL + "/f"
	regA, _ := n.registerAs(t, clusterToken, wire.RegisterRequest{PeerID: "peer-a", Host: peerHost("a", 4001), URL: url})
	regB, _ := n.registerAs(t, clusterToken, wire.RegisterRequest{PeerID: "peer-b", Host: peerHost("b", 4002), URL: url})
	other, _ := n.registerAs(t, clusterToken, wire.RegisterRequest{PeerID: "peer-c", Host: peerHost("c", 4003), URL: o.URL + "/other"})
	n.waitDoneAs(t, regA.TaskID)
	piece := fmt.Sprintf("/peer/tasks/%s/pieces/0", regA.TaskID)
	for name, tok := range map[string]string{"none": "", "cluster token": clusterToken, "other task": other.TaskCredential} {
		if a := n.call(t, "GET", piece, tok, nil, nil); a.status != http.StatusUnauthorized {
			t.Fatalf("%s: status %d, want 401", name, a.status)
		}
	}
	forged := http.Header{"X-Damselfly-Peer": {"evil 192.0.2.1:1"}}
	if a := n.call(t, "GET", piece, regA.TaskCredential, nil, forged); a.status != http.StatusOK || !bytes.Equal(a.body, body[:len(a.body)]) {
		t.Fatalf("A with its task credential: status %d", a.status)
	}
	a := n.call(t, "GET", piece, regB.TaskCredential, nil, nil)
	if a.status != http.StatusServiceUnavailable {
		t.Fatalf("B after fan-out: status %d, want 503", a.status)
	}
	if got := a.header.Get("X-Damselfly-Holders"); got != "peer-a "+peerHost("a", 4001).UploadAddr {
		t.Fatalf("holders %q, want peer-a at its registered address", got)
	}
}

func (n *node) waitDoneAs(t *testing.T, id string) {
	t.Helper()
	waitFor(t, "seed done", func() bool {
		a := n.call(t, "GET", "/api/v1/tasks/"+id, clusterToken, nil, nil)
		var ts wire.TaskStatus
		json.Unmarshal(a.body, &ts)
		return ts.State == "done"
	})
}
