package supernode

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/supernode/dashboard"
	"github.com/damselfly-p2p/damselfly/trust"
	"github.com/damselfly-p2p/damselfly/trust/egress"
	"github.com/damselfly-p2p/damselfly/wire"
)

const (
	dashCluster = "dashboard-test-cluster-token-0123456789"
	dashAdmin   = "dashboard-test-admin-token-0123456789ab"
)

// dashNode is a supernode with a cluster and an admin token, served on
// loopback, and an origin holding one file.
type dashNode struct {
	sn      *Supernode
	base    string
	fileURL string
	length  int64
}

func startDashNode(t *testing.T) *dashNode {
	t.Helper()
	content := bytes.Repeat([]byte("damselfly dashboard "), (5<<20)/20)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "f.bin", time.Unix(1700000000, 0), bytes.NewReader(content))
	}))
	t.Cleanup(origin.Close)
	policy, err := egress.New(egress.Options{Allow: []string{"127.0.0.0/8"}})
	if err != nil {
		t.Fatal(err)
	}
	mustSecret := func(s string) trust.Secret {
		sec, err := trust.NewSecret(s)
		if err != nil {
			t.Fatal(err)
		}
		return sec
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	srv := httptest.NewUnstartedServer(nil)
	sn, err := New(Config{DataDir: t.TempDir(), AdvertiseAddr: srv.Listener.Addr().String(), Egress: policy, Log: log,
		ClusterToken: mustSecret(dashCluster), AdminToken: mustSecret(dashAdmin)})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = sn.Handler()
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		sn.Close()
	})
	return &dashNode{sn: sn, base: srv.URL, fileURL: origin.URL + "/f.bin", length: int64(len(content))}
}

// call sends a JSON request with a bearer token (none if empty) and
// decodes a 2xx answer into out; it returns the status and the header.
func (n *dashNode) call(t *testing.T, method, path, token string, in, out any) (int, http.Header) {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, n.base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode < 300 {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: decode: %v", method, path, err)
		}
	}
	return resp.StatusCode, resp.Header
}

// register registers peerID for the file with the cluster token and
// returns the task ID, the piece count and the peer's credential.
func (n *dashNode) register(t *testing.T, peerID string) (string, int, string) {
	t.Helper()
	var reg wire.RegisterResponse
	code, h := n.call(t, "POST", "/api/v1/tasks/register", dashCluster, wire.RegisterRequest{PeerID: peerID,
		Host: wire.Host{Hostname: peerID, UploadAddr: "127.0.0.1:1"}, URL: n.fileURL}, &reg)
	if code != http.StatusOK {
		t.Fatalf("register %s: %d", peerID, code)
	}
	return reg.TaskID, reg.Layout().NumPieces(), h.Get(wire.PeerCredentialHeader)
}

func (n *dashNode) sync(t *testing.T, cred string, req wire.SyncRequest) {
	t.Helper()
	if code, _ := n.call(t, "POST", "/api/v1/tasks/sync", cred, req, nil); code != http.StatusOK {
		t.Fatalf("sync %s: %d", req.PeerID, code)
	}
}

func (n *dashNode) waitSeedDone(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var ts wire.TaskStatus
		n.call(t, "GET", "/api/v1/tasks/"+id, dashAdmin, nil, &ts)
		if ts.State == stateDone {
			return
		}
		if ts.State == stateFailed {
			t.Fatalf("seed failed: %s", ts.Error)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("seed never finished")
}

func TestDashboardAuth(t *testing.T) {
	n := startDashNode(t)
	id, _, _ := n.register(t, "peer-a")
	tests := []struct {
		name, path, token string
		want              int
	}{
		{"page is public", "/", "", http.StatusOK},
		{"script is public", "/dashboard/app.js", "", http.StatusOK},
		{"summary without token", dashboard.SummaryPath, "", http.StatusUnauthorized},
		{"summary with the cluster token (admin token set)", dashboard.SummaryPath, dashCluster, http.StatusUnauthorized},
		{"summary with a wrong token", dashboard.SummaryPath, dashAdmin + "x", http.StatusUnauthorized},
		{"summary with the admin token", dashboard.SummaryPath, dashAdmin, http.StatusOK},
		{"pieces without token", "/api/v1/tasks/" + id + "/pieces", "", http.StatusUnauthorized},
		{"pieces with the cluster token", "/api/v1/tasks/" + id + "/pieces", dashCluster, http.StatusUnauthorized},
		{"pieces with the admin token", "/api/v1/tasks/" + id + "/pieces", dashAdmin, http.StatusOK},
		{"pieces of an unknown task", "/api/v1/tasks/nope/pieces", dashAdmin, http.StatusNotFound},
		{"unknown task without token says nothing", "/api/v1/tasks/nope/pieces", "", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, _ := n.call(t, "GET", tt.path, tt.token, nil, nil); code != tt.want {
				t.Fatalf("GET %s: %d, want %d", tt.path, code, tt.want)
			}
		})
	}
}

func TestDashboardData(t *testing.T) {
	n := startDashNode(t)
	id, numPieces, credA := n.register(t, "peer-a")
	_, _, credB := n.register(t, "peer-b")
	n.waitSeedDone(t, id)
	ps := manifest.PieceSizeFor(n.length)
	all := make([]int, numPieces)
	for i := range all {
		all[i] = i
	}
	if numPieces < 3 {
		t.Fatalf("test file has %d pieces, want at least 3", numPieces)
	}
	// peer-a holds pieces 0 and 1 (from the seed); peer-b everything (from
	// peers).
	n.sync(t, credA, wire.SyncRequest{PeerID: "peer-a", TaskID: id, Finished: []int{0, 1}, BytesFromSeed: 2 * ps})
	n.sync(t, credB, wire.SyncRequest{PeerID: "peer-b", TaskID: id, Finished: all, Done: true, BytesFromPeers: n.length})

	var m dashboard.PieceMap
	if code, _ := n.call(t, "GET", "/api/v1/tasks/"+id+"/pieces", dashAdmin, nil, &m); code != http.StatusOK {
		t.Fatalf("pieces: %d", code)
	}
	if m.NumPieces != numPieces || m.Peers != 2 || m.Seed != strings.Repeat("1", numPieces) || m.PieceSize != ps {
		t.Fatalf("piece map %+v: want %d pieces of %d, 2 peers, seed holding all", m, numPieces, ps)
	}
	for i, h := range m.Holders {
		want := 1
		if i < 2 {
			want = 2
		}
		if h != want {
			t.Errorf("piece %d held by %d peers, want %d", i, h, want)
		}
	}

	// peer-b reports peer-a's data corrupt: peer-a is isolated.
	n.sync(t, credB, wire.SyncRequest{PeerID: "peer-b", TaskID: id, Done: true, BytesFromPeers: n.length,
		BadParents: []wire.ParentReport{{PeerID: "peer-a", Reason: wire.ReasonCorrupt}}})

	// peer-b reports its upload counter with two heartbeats: it gets an
	// upload rate; peer-a, which reports none, shows none.
	for _, up := range []int64{1 << 20, 3 << 20} {
		time.Sleep(10 * time.Millisecond)
		if code, _ := n.call(t, "POST", "/api/v1/peers/heartbeat", credB, wire.HeartbeatRequest{PeerID: "peer-b", UploadedBytes: up}, nil); code != http.StatusNoContent {
			t.Fatalf("heartbeat: %d", code)
		}
	}

	var doc dashboard.Cluster
	if code, _ := n.call(t, "GET", dashboard.SummaryPath, dashAdmin, nil, &doc); code != http.StatusOK {
		t.Fatalf("summary: %d", code)
	}
	if len(doc.Nodes) != 1 || len(doc.Nodes[0].Tasks) != 1 {
		t.Fatalf("want one node with one task: %+v", doc)
	}
	task := doc.Nodes[0].Tasks[0]
	wantSwarm := (2.0/float64(numPieces) + 1) / 2
	var wantSpread [5]int // peer-a in its quarter, peer-b complete
	wantSpread[min(8/numPieces, 3)], wantSpread[4] = 1, 1
	checks := []struct {
		what      string
		got, want any
	}{
		{"task ID", task.TaskID, id},
		{"status", task.Status, dashboard.StateDownloading},
		{"name", task.Name, strings.TrimPrefix(n.fileURL, "http://")},
		{"seed progress", task.SeedProgress, 1.0},
		{"swarm progress", math.Round(task.SwarmProgress*1e9) / 1e9, math.Round(wantSwarm*1e9) / 1e9},
		{"peers done", [2]int{task.PeersDone, task.Peers}, [2]int{1, 2}},
		{"spread", task.Spread, wantSpread},
		{"bytes from peers", task.BytesFromPeers, n.length},
		{"bytes from origin", task.BytesFromOrigin, n.length},
		{"active tasks", doc.Totals.ActiveTasks, 1},
		{"peers", doc.Totals.Peers, 2},
		{"isolated peers", doc.Totals.IsolatedPeers, 1},
		{"preheats listed", doc.Nodes[0].Preheats != nil, true},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	wantSaved := dashboard.OriginSavedPercent(task.BytesFromPeers, task.BytesServed, task.BytesFromOrigin)
	if doc.Totals.OriginSaved == nil || *doc.Totals.OriginSaved != *wantSaved {
		t.Errorf("origin saved %v, want %v", doc.Totals.OriginSaved, *wantSaved)
	}
	for _, p := range doc.Nodes[0].Peers {
		if p.Isolated != (p.PeerID == "peer-a") {
			t.Errorf("peer %s isolated = %v", p.PeerID, p.Isolated)
		}
		switch hasRate := p.UploadRate != nil && *p.UploadRate > 0; {
		case p.PeerID == "peer-b" && !hasRate:
			t.Errorf("peer-b reported 2 MiB uploaded between heartbeats, upload rate %v", p.UploadRate)
		case p.PeerID == "peer-a" && p.UploadRate != nil:
			t.Errorf("peer-a reported no uploads, upload rate %v", *p.UploadRate)
		}
	}
}

// TestDashboardRates drives the sampler by hand: rates are bytes per
// second between samples, and bytes of peers that left stay counted.
func TestDashboardRates(t *testing.T) {
	n := startDashNode(t)
	id, _, credA := n.register(t, "peer-a")
	_, _, credB := n.register(t, "peer-b")
	n.waitSeedDone(t, id)
	n.sync(t, credA, wire.SyncRequest{PeerID: "peer-a", TaskID: id, BytesFromSeed: 1 << 20})
	n.sync(t, credB, wire.SyncRequest{PeerID: "peer-b", TaskID: id, BytesFromPeers: 3 << 20})

	d := newDashSampler()
	t0 := time.Unix(1700000000, 0)
	d.sample(n.sn.sched.TaskViews(), t0)
	if node := n.sn.dashboardNode(d.snapshot()); node.Totals.Throughput != 0 || len(node.History) != 0 {
		t.Fatalf("after the baseline sample: throughput %v, history %v; want none", node.Totals.Throughput, node.History)
	}
	n.sync(t, credA, wire.SyncRequest{PeerID: "peer-a", TaskID: id, BytesFromSeed: 3 << 20, BytesFromPeers: 2 << 20})
	d.sample(n.sn.sched.TaskViews(), t0.Add(2*time.Second))

	node := n.sn.dashboardNode(d.snapshot())
	// peer-a got 4 MiB in 2 s; peer-b nothing.
	if got := node.Totals.Throughput; got != 2<<20 {
		t.Errorf("aggregate throughput %v, want %v", got, 2<<20)
	}
	if got := node.Tasks[0].Throughput; got != 2<<20 {
		t.Errorf("task throughput %v, want %v", got, 2<<20)
	}
	if h := node.Tasks[0].History; len(h) != 1 || h[0] != 2<<20 {
		t.Errorf("task history %v, want [%d]", h, 2<<20)
	}
	rates := map[string]float64{}
	for _, p := range node.Peers {
		rates[p.PeerID] = p.DownloadRate
	}
	if rates["peer-a"] != 2<<20 || rates["peer-b"] != 0 {
		t.Errorf("peer rates %v, want peer-a %d, peer-b 0", rates, 2<<20)
	}
	if got := node.Tasks[0].BytesFromPeers; got != 5<<20 {
		t.Errorf("bytes from peers %d, want %d", got, 5<<20)
	}

	// peer-b leaves: its 3 MiB stay in the task's bytes from peers.
	if code, _ := n.call(t, "POST", "/api/v1/peers/leave", credB, wire.LeaveRequest{PeerID: "peer-b"}, nil); code != http.StatusNoContent {
		t.Fatalf("leave: %d", code)
	}
	d.sample(n.sn.sched.TaskViews(), t0.Add(3*time.Second))
	node = n.sn.dashboardNode(d.snapshot())
	if got := node.Tasks[0].BytesFromPeers; got != 5<<20 {
		t.Errorf("after peer-b left: bytes from peers %d, want still %d", got, 5<<20)
	}
	if node.Totals.Peers != 1 || node.Totals.Throughput != 0 {
		t.Errorf("after peer-b left: %d peers, throughput %v; want 1 and 0", node.Totals.Peers, node.Totals.Throughput)
	}
}
