package upload_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/p2p/upload"
	"github.com/damselfly-p2p/damselfly/trust"
)

func testIssuer(t *testing.T, token string) trust.Issuer {
	t.Helper()
	sec, err := trust.NewSecret(token)
	if err != nil {
		t.Fatal(err)
	}
	k, err := trust.DeriveKey(sec)
	if err != nil {
		t.Fatal(err)
	}
	return trust.Issuer{Key: k}
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// TestTaskAuth: with task authentication, pieces and bitmaps go only to
// holders of a task credential for that very task, issued with the
// cluster's key.
func TestTaskAuth(t *testing.T) {
	iss := testIssuer(t, "cluster-token-0123456789")
	other := testIssuer(t, "another-cluster-0123456789")
	f := newFixture(t, 0)
	_, hs := serve(t, f.tasks, upload.WithTaskAuth(iss))
	good, err := iss.IssueTask("peer-a", f.id)
	if err != nil {
		t.Fatal(err)
	}
	wrongTask, _ := iss.IssueTask("peer-a", "some-other-task")
	foreign, _ := other.IssueTask("peer-a", f.id)
	peerCred, _ := iss.IssuePeer("peer-a")
	urls := map[string]string{"piece": pieceURL(hs.URL, f.id, 0), "bitmap": hs.URL + "/peer/tasks/" + f.id + "/bitmap"}
	cases := []struct {
		name   string
		header http.Header
		want   int
	}{
		{"no credential", nil, http.StatusUnauthorized},
		{"garbage", bearer("nope"), http.StatusUnauthorized},
		{"credential for another task", bearer(wrongTask), http.StatusUnauthorized},
		{"credential of another cluster", bearer(foreign), http.StatusUnauthorized},
		{"peer credential", bearer(peerCred), http.StatusUnauthorized},
		{"task credential", bearer(good), http.StatusOK},
	}
	for what, u := range urls {
		for _, tc := range cases {
			t.Run(what+"/"+tc.name, func(t *testing.T) {
				r := do(t, http.MethodGet, u, tc.header)
				if r.status != tc.want {
					t.Fatalf("status %d, want %d (%s)", r.status, tc.want, trim(r.body))
				}
				if tc.want == http.StatusUnauthorized && len(r.body) > 0 && string(r.body) == string(f.piece(0)) {
					t.Fatal("refused request got the piece")
				}
			})
		}
	}
}

// TestTaskAuthHoldersFromCredential: the children named as holders are the
// credentials' peers at the addresses the server knows for them; a forged
// PeerHeader is ignored.
func TestTaskAuthHoldersFromCredential(t *testing.T) {
	iss := testIssuer(t, "cluster-token-0123456789")
	f := newFixture(t, 0)
	addrs := map[string]string{"peer-a": "10.0.0.1:65001", "peer-b": "10.0.0.2:65001"}
	_, hs := serve(t, f.tasks, upload.WithFanout(2, time.Minute), upload.WithTaskAuth(iss),
		upload.WithPeerAddr(func(id string) (string, bool) { a, ok := addrs[id]; return a, ok }))
	u0 := pieceURL(hs.URL, f.id, 0)
	for _, who := range []string{"peer-a", "peer-b"} {
		tok, _ := iss.IssueTask(who, f.id)
		h := bearer(tok)
		h.Set(upload.PeerHeader, "evil 192.0.2.66:1")
		if r := do(t, http.MethodGet, u0, h); r.status != 200 {
			t.Fatalf("%s: status %d", who, r.status)
		}
	}
	tok, _ := iss.IssueTask("peer-c", f.id)
	r := do(t, http.MethodGet, u0, bearer(tok))
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("third child: status %d, want 503", r.status)
	}
	if got := r.header.Get(upload.HoldersHeader); got != "peer-a 10.0.0.1:65001,peer-b 10.0.0.2:65001" {
		t.Fatalf("holders = %q", got)
	}
}
