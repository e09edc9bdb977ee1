package supernode_test

import (
	"encoding/json"
	"net"
	"net/http"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/supernode"
	"github.com/damselfly-p2p/damselfly/supernode/dashboard"
	"github.com/damselfly-p2p/damselfly/testenv"
	"github.com/damselfly-p2p/damselfly/trust"
	"github.com/damselfly-p2p/damselfly/wire"
)

// startCluster starts n supernodes on loopback, each told about the others
// and about the addresses in extra, with cfg as their base configuration.
func startCluster(t *testing.T, n int, cfg supernode.Config, extra ...string) []*node {
	t.Helper()
	var lns []net.Listener
	var addrs []string
	for range n {
		ln := listen(t)
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	var nodes []*node
	for _, ln := range lns {
		c := cfg
		c.Cluster = append(append([]string(nil), addrs...), extra...) // its own address too: ignored
		nodes = append(nodes, startNodeOn(t, ln, c))
	}
	return nodes
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func dashboardOf(t *testing.T, n *node, query string) dashboard.Cluster {
	t.Helper()
	a := n.get(t, dashboard.SummaryPath+query)
	if a.status != http.StatusOK {
		t.Fatalf("dashboard of %s: %d %s", n.addr, a.status, a.body)
	}
	var doc dashboard.Cluster
	if err := json.Unmarshal(a.body, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// TestDashboardClusterView: any supernode's dashboard shows every member,
// a member that does not answer as down, the tasks of the others, and
// their piece maps; ?scope=local shows one node.
func TestDashboardClusterView(t *testing.T) {
	origin := testenv.NewOrigin(t)
	origin.AddRandom("f.bin", 3<<20, 5)
	dead := deadAddr(t)
	nodes := startCluster(t, 2, supernode.Config{}, dead)
	a, b := nodes[0], nodes[1]
	reg := b.register(t, wire.RegisterRequest{PeerID: "p1", Host: peerHost("p1", 1), URL: origin.URL("f.bin")})
	b.waitDone(t, reg.TaskID)

	tests := []struct {
		name  string
		at    *node
		query string
		want  map[string]bool // supernode -> down
		tasks int
	}{
		{"cluster from a", a, "", map[string]bool{a.addr: false, b.addr: false, dead: true}, 1},
		{"cluster from b", b, "", map[string]bool{a.addr: false, b.addr: false, dead: true}, 1},
		{"a alone", a, "?scope=local", map[string]bool{a.addr: false}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := dashboardOf(t, tc.at, tc.query)
			if doc.Nodes[0].Supernode != tc.at.addr {
				t.Errorf("first node %s, want the one asked (%s)", doc.Nodes[0].Supernode, tc.at.addr)
			}
			got := map[string]bool{}
			for _, n := range doc.Nodes {
				got[n.Supernode] = n.Down
				if n.Down && n.Error == "" {
					t.Errorf("node %s down without an error", n.Supernode)
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("nodes %v, want %v", got, tc.want)
			}
			for addr, down := range tc.want {
				if d, ok := got[addr]; !ok || d != down {
					t.Errorf("node %s: present %v, down %v; want down %v", addr, ok, d, down)
				}
			}
			if doc.Totals.Tasks != tc.tasks || (tc.tasks > 0 && doc.Totals.BytesFromOrigin != 3<<20) {
				t.Errorf("totals %+v, want %d tasks and the file from the origin once", doc.Totals, tc.tasks)
			}
		})
	}

	// The piece map of b's task, asked of a.
	pa := a.get(t, "/api/v1/tasks/"+reg.TaskID+"/pieces")
	if pa.status != http.StatusOK {
		t.Fatalf("pieces of b's task via a: %d %s", pa.status, pa.body)
	}
	var m dashboard.PieceMap
	if err := json.Unmarshal(pa.body, &m); err != nil {
		t.Fatal(err)
	}
	if m.TaskID != reg.TaskID || m.NumPieces != 3 || m.Seed != "111" {
		t.Errorf("piece map via a: %+v", m)
	}
	if pa := a.get(t, "/api/v1/tasks/"+reg.TaskID+"/pieces?scope=local"); pa.status != http.StatusNotFound {
		t.Errorf("local piece map of a task a does not have: %d, want 404", pa.status)
	}
}

// TestDashboardClusterAuth: members call each other with the admin token;
// the cluster document is refused without it.
func TestDashboardClusterAuth(t *testing.T) {
	const clusterTok, adminTok = "cluster-token-for-tests-0123456789", "admin-token-for-tests-0123456789"
	secret := func(s string) trust.Secret {
		sec, err := trust.NewSecret(s)
		if err != nil {
			t.Fatal(err)
		}
		return sec
	}
	nodes := startCluster(t, 2, supernode.Config{ClusterToken: secret(clusterTok), AdminToken: secret(adminTok)})
	if a := nodes[0].call(t, http.MethodGet, dashboard.SummaryPath, "", nil, nil); a.status != http.StatusUnauthorized {
		t.Fatalf("dashboard without a token: %d, want 401", a.status)
	}
	a := nodes[0].call(t, http.MethodGet, dashboard.SummaryPath, adminTok, nil, nil)
	if a.status != http.StatusOK {
		t.Fatalf("dashboard with the admin token: %d %s", a.status, a.body)
	}
	var doc dashboard.Cluster
	if err := json.Unmarshal(a.body, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Nodes) != 2 || doc.Nodes[1].Down || doc.Nodes[1].Supernode != nodes[1].addr {
		t.Errorf("cluster with tokens: %+v, want both nodes up", doc.Nodes)
	}
}

// TestPreheatImageGoesToBlobOwners: an image preheat sent to one member
// warms each blob on its owner (HRW over the members, as peers route
// the blob's task) and nowhere else.
func TestPreheatImageGoesToBlobOwners(t *testing.T) {
	reg := newPreheatRegistry(t, 2<<20)
	nodes := startCluster(t, 3, supernode.Config{})
	var addrs []string
	byAddr := map[string]*node{}
	for _, n := range nodes {
		addrs = append(addrs, n.addr)
		byAddr[n.addr] = n
	}
	blobs := []digest.Digest{reg.amdConfig, reg.amdLayer}
	owner := map[string]string{} // task ID -> owner
	for _, d := range blobs {
		id := manifest.DigestTaskID(d)
		owner[id] = wire.HRWOwner(id, addrs)
	}
	// Send it to a member that does not own some blob, so that at least
	// one blob must move.
	var at *node
	for _, n := range nodes {
		for _, o := range owner {
			if o != n.addr && at == nil {
				at = n
			}
		}
	}
	st := startPreheat(t, at, wire.PreheatRequest{URL: reg.URL + "/v2/team/app/manifests/v1",
		Headers: http.Header{"Authorization": {"Basic YWxpY2U6cHc="}}})
	st = waitPreheat(t, at, st.ID)
	if st.State != wire.PreheatSuccess {
		t.Fatalf("preheat %s: %s", st.State, st.Error)
	}
	for id, o := range owner {
		for _, n := range nodes {
			a := n.get(t, "/api/v1/tasks/"+id)
			switch {
			case n.addr == o && a.status != http.StatusOK:
				t.Errorf("owner %s of %s does not have it: %d %s", o, id[:12], a.status, a.body)
			case n.addr == o:
				if ts := n.taskStatus(t, id); ts.State != "done" || ts.SeedPieces != ts.NumPieces {
					t.Errorf("owner %s of %s: %+v, want the whole blob", o, id[:12], ts)
				}
			case a.status != http.StatusNotFound:
				t.Errorf("%s, not the owner of %s, has it: %d", n.addr, id[:12], a.status)
			}
		}
	}
	length := map[string]int64{}
	for _, b := range st.Blobs {
		length[b.TaskID] = b.Length
		if b.State != wire.PreheatSuccess || b.Present != b.Length {
			t.Errorf("blob %s in the preheat's status: %+v, want success and all present", b.Digest, b)
		}
	}
	for id, o := range owner {
		if ts := byAddr[o].taskStatus(t, id); ts.BytesFromOrigin != length[id] || length[id] == 0 {
			t.Errorf("owner %s of %s fetched %d bytes, want the blob's %d", o, id[:12], ts.BytesFromOrigin, length[id])
		}
	}
}
