package supernode_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/cache"
	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/supernode"
	"github.com/damselfly-p2p/damselfly/testenv"
	"github.com/damselfly-p2p/damselfly/wire"
)

// fileSize is 4 pieces of 1 MiB, the last one short.
const fileSize = 3<<20 + 12345

func TestNewConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  supernode.Config
	}{
		{"no data dir", supernode.Config{AdvertiseAddr: "127.0.0.1:8002"}},
		{"no advertise address", supernode.Config{DataDir: t.TempDir()}},
		{"advertise address without port", supernode.Config{DataDir: t.TempDir(), AdvertiseAddr: "127.0.0.1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sn, err := supernode.New(tc.cfg)
			if err == nil {
				sn.Close()
				t.Fatal("New succeeded, want an error")
			}
		})
	}
}

func TestRegisterBadRequest(t *testing.T) {
	origin := testenv.NewOrigin(t)
	origin.AddRandom("f", fileSize, 1)
	n := startNode(t, supernode.Config{})
	good := origin.URL("f")
	tests := []struct {
		name string
		body any
	}{
		{"empty body", ""},
		{"truncated JSON", `{"peerID": "p1", "url": `},
		{"not JSON", "url=" + good},
		{"wrong field type", `{"peerID": 5, "url": "` + good + `"}`},
		{"missing peerID", wire.RegisterRequest{URL: good}},
		{"missing URL", wire.RegisterRequest{PeerID: "p1"}},
		{"relative URL", wire.RegisterRequest{PeerID: "p1", URL: "/files/f"}},
		{"ftp URL", wire.RegisterRequest{PeerID: "p1", URL: "ftp://" + origin.Addr() + "/files/f"}},
		{"no host", wire.RegisterRequest{PeerID: "p1", URL: "http:///files/f"}},
		{"unparsable URL", wire.RegisterRequest{PeerID: "p1", URL: "http://[::1/files/f"}},
		{"md5 digest", wire.RegisterRequest{PeerID: "p1", URL: good, Digest: "md5:d41d8cd98f00b204e9800998ecf8427e"}},
		{"malformed digest", wire.RegisterRequest{PeerID: "p1", URL: good, Digest: "sha256:xyz"}},
		{"task ID not matching the URL", wire.RegisterRequest{PeerID: "p1", URL: good, TaskID: strings.Repeat("ab", 32)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := n.post(t, "/api/v1/tasks/register", tc.body)
			if a.status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400 (%s)", a.status, a.body)
			}
			e := a.errorResponse(t)
			if e.Code != wire.CodeBadRequest || e.Message == "" || e.OriginStatus != 0 {
				t.Errorf("error %+v, want code %q with a message", e, wire.CodeBadRequest)
			}
			if ct := a.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
	if r := origin.Requests("f"); r != 0 {
		t.Errorf("bad registrations caused %d origin requests, want 0", r)
	}
	if st, _ := n.status(t); len(st.Tasks) != 0 || len(st.Peers) != 0 {
		t.Errorf("bad registrations left %d tasks and %d peers", len(st.Tasks), len(st.Peers))
	}
}

func TestRegisterOriginError(t *testing.T) {
	tests := []struct {
		name  string
		setup func(o *testenv.Origin)
		code  int
	}{
		{"not found", func(o *testenv.Origin) {}, 404},
		{"gone", func(o *testenv.Origin) { o.AddRandom("f", fileSize, 1); o.SetStatus("f", 410) }, 410},
		{"forbidden (HEAD and GET)", func(o *testenv.Origin) { o.AddRandom("f", fileSize, 1); o.SetStatus("f", 403) }, 403},
		{"server error after retries", func(o *testenv.Origin) { o.AddRandom("f", fileSize, 1); o.SetStatus("f", 500) }, 500},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			origin := testenv.NewOrigin(t)
			tc.setup(origin)
			n := startNode(t, supernode.Config{})
			req := wire.RegisterRequest{PeerID: "p1", Host: peerHost("h1", 10001), URL: origin.URL("f")}
			a := n.post(t, "/api/v1/tasks/register", req)
			if a.status != http.StatusBadGateway {
				t.Fatalf("status %d, want 502 (%s)", a.status, a.body)
			}
			e := a.errorResponse(t)
			if e.Code != wire.CodeOrigin || e.OriginStatus != tc.code {
				t.Errorf("error %+v, want code %q, originStatus %d", e, wire.CodeOrigin, tc.code)
			}
			if !strings.Contains(e.Message, fmt.Sprint(tc.code)) {
				t.Errorf("message %q does not give the origin's status", e.Message)
			}
			id, _ := manifest.TaskID(req.URL, "", nil)
			if ts := n.taskStatus(t, id); ts.State != "failed" || ts.Error == "" {
				t.Errorf("task status: state %q, error %q; want failed with the error", ts.State, ts.Error)
			}
			if origin.BytesServed("f") != 0 {
				t.Errorf("origin served %d bytes for a failed seed", origin.BytesServed("f"))
			}

			// The origin recovers: the next registration starts a fresh seed.
			origin.SetStatus("f", 0)
			sha := origin.AddRandom("f", fileSize, 1)
			reg := n.register(t, req)
			if reg.Length != fileSize {
				t.Fatalf("after recovery: length %d, want %d", reg.Length, fileSize)
			}
			n.waitDone(t, reg.TaskID)
			if got := n.seedContent(t, reg); got != sha {
				t.Errorf("seed content sha256 %s, origin %s", got, sha)
			}
		})
	}
	t.Run("transient failure is retried", func(t *testing.T) {
		origin := testenv.NewOrigin(t)
		sha := origin.AddRandom("f", fileSize, 1)
		origin.FailNext("f", 1, 503)
		n := startNode(t, supernode.Config{})
		reg := n.register(t, wire.RegisterRequest{PeerID: "p1", URL: origin.URL("f")})
		n.waitDone(t, reg.TaskID)
		if got := n.seedContent(t, reg); got != sha {
			t.Errorf("seed content sha256 %s, origin %s", got, sha)
		}
	})
}

func checkDigests(t *testing.T, got, want []string, all bool) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d digests, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] == "" && !all {
			continue
		}
		if got[i] != want[i] {
			t.Errorf("digest of piece %d = %q, want %q", i, got[i], want[i])
		}
	}
}

func findParent(ps []wire.Parent, id string) (wire.Parent, bool) {
	for _, p := range ps {
		if p.PeerID == id {
			return p, true
		}
	}
	return wire.Parent{}, false
}

func TestRegister(t *testing.T) {
	origin := testenv.NewOrigin(t)
	sha := origin.AddRandom("f", fileSize, 1)
	want := pieceDigests(t, fileSize, 1)
	n := startNode(t, supernode.Config{})
	url := origin.URL("f")
	wantID, _ := manifest.TaskID(url, "", nil)

	regA := n.register(t, wire.RegisterRequest{PeerID: "peerA", Host: peerHost("hA", 10001), URL: url, TaskID: wantID})
	if regA.TaskID != wantID || regA.Length != fileSize || regA.PieceSize != 1<<20 {
		t.Fatalf("register: task %s length %d piece size %d; want %s, %d, %d", regA.TaskID, regA.Length, regA.PieceSize, wantID, fileSize, 1<<20)
	}
	if regA.ETag == "" || regA.LastModified == "" {
		t.Errorf("register: validators %q / %q, want the origin's", regA.ETag, regA.LastModified)
	}
	checkDigests(t, regA.Digests, want, false)
	seed := wire.Parent{PeerID: supernode.SeedPeerID, Addr: n.addr, Seed: true}
	if len(regA.Parents) != 1 || regA.Parents[0] != seed {
		t.Errorf("first peer's parents %+v, want only the seed %+v", regA.Parents, seed)
	}

	ts := n.waitDone(t, regA.TaskID)
	if ts.BytesFromOrigin != fileSize || origin.BytesServed("f") != fileSize {
		t.Errorf("bytes from origin: status %d, origin counted %d; want %d", ts.BytesFromOrigin, origin.BytesServed("f"), fileSize)
	}
	if ts.Length != fileSize || ts.NumPieces != 4 || ts.URL != url {
		t.Errorf("task status %+v", ts)
	}

	// A reports two pieces: it becomes a parent for B.
	if a := n.post(t, "/api/v1/tasks/sync", wire.SyncRequest{PeerID: "peerA", TaskID: regA.TaskID, Finished: []int{0, 1}}); a.status != 200 {
		t.Fatalf("sync: %d %s", a.status, a.body)
	}
	regB := n.register(t, wire.RegisterRequest{PeerID: "peerB", Host: peerHost("hB", 10002), URL: url})
	if !regB.SeedDone {
		t.Error("SeedDone false after the seed finished")
	}
	checkDigests(t, regB.Digests, want, true)
	if p, ok := findParent(regB.Parents, "peerA"); !ok || p.Addr != "127.0.0.1:10001" || p.Seed {
		t.Errorf("second peer's parents %+v lack peerA at 127.0.0.1:10001", regB.Parents)
	}
	if p, ok := findParent(regB.Parents, supernode.SeedPeerID); !ok || p != seed {
		t.Errorf("second peer's parents %+v lack the seed", regB.Parents)
	}
	if _, ok := findParent(regB.Parents, "peerB"); ok {
		t.Errorf("peer is its own parent: %+v", regB.Parents)
	}
	if got := n.seedContent(t, regB); got != sha {
		t.Errorf("seed serves content with sha256 %s, origin has %s", got, sha)
	}
	// The seed counts an upload once its handler returns, which can be just
	// after the client read the last byte.
	waitFor(t, "status bytesServed = file size", func() bool { return n.taskStatus(t, regA.TaskID).BytesServed == fileSize })
	if ts := n.taskStatus(t, regA.TaskID); ts.Peers != 2 || ts.BytesServed != fileSize {
		t.Errorf("status: %d peers, %d bytes served; want 2 and %d", ts.Peers, ts.BytesServed, fileSize)
	}
	// One seed for the URL however often it is registered.
	if origin.BytesServed("f") != fileSize {
		t.Errorf("origin served %d bytes, want %d", origin.BytesServed("f"), fileSize)
	}
	if a := n.get(t, "/api/v1/tasks/"+strings.Repeat("0", 64)); a.status != 404 || a.errorResponse(t).Code != wire.CodeUnknownTask {
		t.Errorf("unknown task: %d %s, want 404 %s", a.status, a.body, wire.CodeUnknownTask)
	}
	if a := n.get(t, "/healthz"); a.status != 200 {
		t.Errorf("healthz: %d", a.status)
	}
}

func TestRegisterDigest(t *testing.T) {
	origin := testenv.NewOrigin(t)
	sha := origin.AddRandom("f", fileSize, 1)
	n := startNode(t, supernode.Config{})
	t.Run("matching", func(t *testing.T) {
		reg := n.register(t, wire.RegisterRequest{PeerID: "p1", URL: origin.URL("f"), Digest: "sha256:" + sha})
		urlID, _ := manifest.TaskID(origin.URL("f"), "", nil)
		if reg.TaskID == urlID {
			t.Errorf("task ID of a digest registration is the URL's")
		}
		ts := n.waitDone(t, reg.TaskID)
		if ts.Error != "" {
			t.Errorf("error %q", ts.Error)
		}
		if got := n.seedContent(t, reg); got != sha {
			t.Errorf("seed content %s, want %s", got, sha)
		}
	})
	t.Run("not matching", func(t *testing.T) {
		wrong := "sha256:" + strings.Repeat("0", 64)
		a := n.post(t, "/api/v1/tasks/register", wire.RegisterRequest{PeerID: "p2", URL: origin.URL("f"), Digest: wrong})
		var id string
		switch a.status {
		case http.StatusOK: // the layout was known before the content was checked
			var reg wire.RegisterResponse
			json.Unmarshal(a.body, &reg)
			id = reg.TaskID
		case http.StatusBadGateway: // verified before answering: fine too
			if e := a.errorResponse(t); !strings.Contains(e.Message, "does not match") {
				t.Errorf("error %+v does not say the digest did not match", e)
			}
			return
		default:
			t.Fatalf("status %d: %s", a.status, a.body)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			ts := n.taskStatus(t, id)
			if ts.State == "failed" {
				if !strings.Contains(ts.Error, "does not match") {
					t.Errorf("error %q does not say the digest did not match", ts.Error)
				}
				break
			}
			if ts.State == "done" || time.Now().After(deadline) {
				t.Fatalf("seed with a wrong digest: state %q, want failed", ts.State)
			}
			time.Sleep(10 * time.Millisecond)
		}
		// Peers learn it at their next sync.
		a = n.post(t, "/api/v1/tasks/sync", wire.SyncRequest{PeerID: "p2", TaskID: id})
		var sr wire.SyncResponse
		if a.status != 200 || json.Unmarshal(a.body, &sr) != nil || sr.SeedError == "" {
			t.Errorf("sync after the seed failed: %d %s; want seedError", a.status, a.body)
		}
	})
}

func TestSync(t *testing.T) {
	origin := testenv.NewOrigin(t)
	origin.AddRandom("f", fileSize, 1)
	want := pieceDigests(t, fileSize, 1)
	n := startNode(t, supernode.Config{})
	reg := n.register(t, wire.RegisterRequest{PeerID: "peerA", Host: peerHost("hA", 10001), URL: origin.URL("f")})
	n.waitDone(t, reg.TaskID)
	n.register(t, wire.RegisterRequest{PeerID: "peerB", Host: peerHost("hB", 10002), URL: origin.URL("f")})

	errTests := []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"bad JSON", "{", 400, wire.CodeBadRequest},
		{"unknown task", wire.SyncRequest{PeerID: "peerA", TaskID: strings.Repeat("1", 64)}, 404, wire.CodeUnknownTask},
		{"unknown peer", wire.SyncRequest{PeerID: "stranger", TaskID: reg.TaskID, Finished: []int{0}}, 404, wire.CodeUnknownPeer},
		{"no peer", wire.SyncRequest{TaskID: reg.TaskID}, 404, wire.CodeUnknownPeer},
	}
	for _, tc := range errTests {
		t.Run(tc.name, func(t *testing.T) {
			a := n.post(t, "/api/v1/tasks/sync", tc.body)
			if a.status != tc.status {
				t.Fatalf("status %d, want %d (%s)", a.status, tc.status, a.body)
			}
			if e := a.errorResponse(t); e.Code != tc.code {
				t.Errorf("code %q, want %q", e.Code, tc.code)
			}
		})
	}
	sync := func(t *testing.T, req wire.SyncRequest) wire.SyncResponse {
		t.Helper()
		a := n.post(t, "/api/v1/tasks/sync", req)
		if a.status != 200 {
			t.Fatalf("sync: %d %s", a.status, a.body)
		}
		var sr wire.SyncResponse
		if err := json.Unmarshal(a.body, &sr); err != nil {
			t.Fatal(err)
		}
		return sr
	}
	t.Run("digests when the peer knows fewer", func(t *testing.T) {
		sr := sync(t, wire.SyncRequest{PeerID: "peerA", TaskID: reg.TaskID, KnownDigests: 1})
		checkDigests(t, sr.Digests, want, true)
		if !sr.SeedDone {
			t.Error("SeedDone false")
		}
	})
	t.Run("no digests when the peer knows them all", func(t *testing.T) {
		if sr := sync(t, wire.SyncRequest{PeerID: "peerA", TaskID: reg.TaskID, KnownDigests: 4}); len(sr.Digests) != 0 {
			t.Errorf("%d digests sent to a peer that knows all", len(sr.Digests))
		}
	})
	t.Run("more parents", func(t *testing.T) {
		sr := sync(t, wire.SyncRequest{PeerID: "peerA", TaskID: reg.TaskID, WantParents: true})
		if p, ok := findParent(sr.Parents, "peerB"); !ok || p.Addr != "127.0.0.1:10002" {
			t.Errorf("parents %+v lack peerB, which joined later", sr.Parents)
		}
	})
	t.Run("done", func(t *testing.T) {
		sync(t, wire.SyncRequest{PeerID: "peerA", TaskID: reg.TaskID, Finished: []int{0, 1, 2, 3}, Done: true})
		ts := n.taskStatus(t, reg.TaskID)
		if ts.Peers != 2 || ts.PeersDone != 1 {
			t.Errorf("status: %d peers, %d done; want 2, 1", ts.Peers, ts.PeersDone)
		}
		if sr := sync(t, wire.SyncRequest{PeerID: "peerA", TaskID: reg.TaskID, WantParents: true, Done: true}); len(sr.Parents) != 0 {
			t.Errorf("a finished peer got parents %+v", sr.Parents)
		}
	})
}

func TestIsolation(t *testing.T) {
	origin := testenv.NewOrigin(t)
	origin.AddRandom("f", fileSize, 1)
	n := startNode(t, supernode.Config{})
	url := origin.URL("f")
	reg := n.register(t, wire.RegisterRequest{PeerID: "bad", Host: peerHost("hbad", 10001), URL: url})
	n.register(t, wire.RegisterRequest{PeerID: "good", Host: peerHost("hgood", 10002), URL: url})
	n.register(t, wire.RegisterRequest{PeerID: "victim", Host: peerHost("hvictim", 10003), URL: url})
	a := n.post(t, "/api/v1/tasks/sync", wire.SyncRequest{PeerID: "victim", TaskID: reg.TaskID, BadParents: []wire.ParentReport{
		{PeerID: "bad", Reason: wire.ReasonCorrupt},
		{PeerID: supernode.SeedPeerID, Reason: wire.ReasonCorrupt},
	}})
	if a.status != 200 {
		t.Fatalf("sync: %d %s", a.status, a.body)
	}
	st, _ := n.status(t)
	for _, p := range st.Peers {
		switch p.PeerID {
		case "bad":
			if !p.Isolated || p.Reason != wire.ReasonCorrupt {
				t.Errorf("reported peer: %+v, want isolated for %q", p, wire.ReasonCorrupt)
			}
		default:
			if p.Isolated {
				t.Errorf("peer %s isolated", p.PeerID)
			}
		}
	}
	late := n.register(t, wire.RegisterRequest{PeerID: "late", Host: peerHost("hlate", 10004), URL: url})
	if _, ok := findParent(late.Parents, "bad"); ok {
		t.Errorf("isolated peer given as a parent: %+v", late.Parents)
	}
	if _, ok := findParent(late.Parents, "good"); !ok {
		t.Errorf("parents %+v lack a healthy peer", late.Parents)
	}
	if _, ok := findParent(late.Parents, supernode.SeedPeerID); !ok {
		t.Errorf("parents %+v lack the seed after a report against it", late.Parents)
	}
}

func TestPeerLiveness(t *testing.T) {
	origin := testenv.NewOrigin(t)
	origin.AddRandom("f", fileSize, 1)
	n := startNode(t, supernode.Config{})
	reg := n.register(t, wire.RegisterRequest{PeerID: "child", Host: peerHost("hc", 10001), URL: origin.URL("f")})
	n.waitDone(t, reg.TaskID)
	full := manifest.NewBitmap(4)
	for i := 0; i < 4; i++ {
		full.Set(i)
	}
	steps := []struct {
		name   string
		path   string
		body   any
		status int
		code   string
	}{
		{"heartbeat of an unknown peer", "/api/v1/peers/heartbeat", wire.HeartbeatRequest{PeerID: "holder"}, 404, wire.CodeUnknownPeer},
		{"announce without ID", "/api/v1/peers/announce", wire.AnnounceRequest{Host: peerHost("hh", 10002)}, 400, wire.CodeBadRequest},
		{"announce", "/api/v1/peers/announce", wire.AnnounceRequest{PeerID: "holder", Host: peerHost("hh", 10002),
			Tasks: []wire.AnnouncedTask{{TaskID: reg.TaskID, Bitmap: full}, {TaskID: strings.Repeat("9", 64), Bitmap: full}}}, 204, ""},
		{"heartbeat", "/api/v1/peers/heartbeat", wire.HeartbeatRequest{PeerID: "holder"}, 204, ""},
		{"heartbeat bad JSON", "/api/v1/peers/heartbeat", "[", 400, wire.CodeBadRequest},
	}
	for _, s := range steps {
		a := n.post(t, s.path, s.body)
		if a.status != s.status {
			t.Fatalf("%s: status %d, want %d (%s)", s.name, a.status, s.status, a.body)
		}
		if s.code != "" {
			if e := a.errorResponse(t); e.Code != s.code {
				t.Errorf("%s: code %q, want %q", s.name, e.Code, s.code)
			}
		}
	}
	// The announced holder is a parent for newcomers.
	late := n.register(t, wire.RegisterRequest{PeerID: "late", Host: peerHost("hl", 10003), URL: origin.URL("f")})
	if p, ok := findParent(late.Parents, "holder"); !ok || p.Addr != "127.0.0.1:10002" {
		t.Errorf("parents %+v lack the announced holder", late.Parents)
	}
	if st, _ := n.status(t); !hasPeer(st, "holder") {
		t.Errorf("status lacks the announced peer: %+v", st.Peers)
	}
	// It leaves: forgotten.
	if a := n.post(t, "/api/v1/peers/leave", wire.LeaveRequest{PeerID: "holder"}); a.status != 204 {
		t.Fatalf("leave: %d %s", a.status, a.body)
	}
	if a := n.post(t, "/api/v1/peers/heartbeat", wire.HeartbeatRequest{PeerID: "holder"}); a.status != 404 {
		t.Errorf("heartbeat after leave: %d, want 404", a.status)
	}
	if st, _ := n.status(t); hasPeer(st, "holder") {
		t.Error("status still lists a peer that left")
	}
	late2 := n.register(t, wire.RegisterRequest{PeerID: "late2", Host: peerHost("hl2", 10004), URL: origin.URL("f")})
	if _, ok := findParent(late2.Parents, "holder"); ok {
		t.Errorf("a peer that left is given as a parent: %+v", late2.Parents)
	}
}

func hasPeer(st wire.Status, id string) bool {
	for _, p := range st.Peers {
		if p.PeerID == id {
			return true
		}
	}
	return false
}

// TestSecretsNotExposed: query values and request headers are
// credentials: the status API, metrics, logs and the seed's store must not
// show them.
func TestSecretsNotExposed(t *testing.T) {
	const (
		querySecret  = "s3cr3t-query-value"
		headerSecret = "hunter2-header-value"
		userSecret   = "pa55word-userinfo"
	)
	origin := testenv.NewOrigin(t)
	sha := origin.AddRandom("f", fileSize, 1)
	dir := t.TempDir()
	n := startNode(t, supernode.Config{DataDir: dir})
	url := origin.URL("f") + "?token=" + querySecret + "&Expires=1700000000"
	header := http.Header{"Authorization": {"Bearer " + headerSecret}}
	reg := n.register(t, wire.RegisterRequest{PeerID: "p1", Host: peerHost("h1", 10001), URL: url, Header: header})
	ts := n.waitDone(t, reg.TaskID)
	if got := n.seedContent(t, reg); got != sha {
		t.Fatalf("seed content %s, want %s", got, sha)
	}

	// A failing one, with credentials in the user info too.
	badURL := strings.Replace(origin.URL("missing"), "http://", "http://user:"+userSecret+"@", 1) + "?token=" + querySecret
	a := n.post(t, "/api/v1/tasks/register", wire.RegisterRequest{PeerID: "p1", URL: badURL, Header: header})
	if a.status != http.StatusBadGateway {
		t.Fatalf("register missing file: %d %s", a.status, a.body)
	}
	answers := map[string][]byte{"register error answer": a.body}

	if ts.BytesFromOrigin != origin.BytesServed("f") || ts.BytesFromOrigin != fileSize {
		t.Errorf("bytesFromOrigin %d, origin served %d, size %d", ts.BytesFromOrigin, origin.BytesServed("f"), fileSize)
	}
	st, raw := n.status(t)
	answers["/api/v1/status"] = raw
	var found bool
	for _, task := range st.Tasks {
		if task.TaskID != reg.TaskID {
			continue
		}
		found = true
		if !strings.HasPrefix(task.URL, origin.URL("f")+"?") || !strings.Contains(task.URL, "token=") {
			t.Errorf("status URL %q, want the origin URL with redacted query", task.URL)
		}
		if task.BytesFromOrigin != origin.BytesServed("f") {
			t.Errorf("status bytesFromOrigin %d, origin served %d", task.BytesFromOrigin, origin.BytesServed("f"))
		}
		if task.State != "done" {
			t.Errorf("state %q", task.State)
		}
	}
	if !found || len(st.Tasks) != 2 {
		t.Errorf("status lists %d tasks (%s found: %v), want 2", len(st.Tasks), reg.TaskID, found)
	}
	answers["/api/v1/tasks/{id}"] = n.get(t, "/api/v1/tasks/"+reg.TaskID).body
	badID, _ := manifest.TaskID(badURL, "", nil)
	answers["/api/v1/tasks/{failed}"] = n.get(t, "/api/v1/tasks/"+badID).body
	answers["/metrics"] = n.get(t, "/metrics").body
	answers["logs"] = []byte(n.logs.String())
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && filepath.Base(path) != "data" {
			b, _ := os.ReadFile(path)
			answers["seed store file "+path] = b
		}
		return nil
	})
	if !bytes.Contains(answers["logs"], []byte("token=REDACTED")) {
		t.Error("logs do not mention the redacted URL: the log check would be vacuous")
	}
	for where, body := range answers {
		for _, secret := range []string{querySecret, headerSecret, userSecret} {
			if bytes.Contains(body, []byte(secret)) {
				t.Errorf("%s shows the secret %q", where, secret)
			}
		}
	}
}

// TestHeaderReachesOrigin: the registration's header is what the seed
// sends to the origin (an origin requiring authorization).
func TestHeaderReachesOrigin(t *testing.T) {
	content := bytes.Repeat([]byte("damselfly "), 300000) // 3 MB
	const auth = "Bearer let-me-in"
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != auth {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		http.ServeContent(w, r, "", testenv.OriginModTime, bytes.NewReader(content))
	}))
	t.Cleanup(origin.Close)
	n := startNode(t, supernode.Config{})

	a := n.post(t, "/api/v1/tasks/register", wire.RegisterRequest{PeerID: "p1", URL: origin.URL + "/f", Tag: "anonymous"})
	if a.status != http.StatusBadGateway || a.errorResponse(t).OriginStatus != 401 {
		t.Fatalf("without the header: %d %s, want 502 with originStatus 401", a.status, a.body)
	}
	reg := n.register(t, wire.RegisterRequest{PeerID: "p1", URL: origin.URL + "/f", Header: http.Header{"Authorization": {auth}}})
	n.waitDone(t, reg.TaskID)
	h := n.seedContent(t, reg)
	if want := fmt.Sprintf("%x", sha256Sum(content)); h != want {
		t.Errorf("seed content %s, want %s", h, want)
	}
}

func TestMetrics(t *testing.T) {
	origin := testenv.NewOrigin(t)
	origin.AddRandom("f", fileSize, 1)
	n := startNode(t, supernode.Config{})
	reg := n.register(t, wire.RegisterRequest{PeerID: "pA", Host: peerHost("hA", 10001), URL: origin.URL("f")})
	n.register(t, wire.RegisterRequest{PeerID: "pB", Host: peerHost("hB", 10002), URL: origin.URL("f")})
	n.post(t, "/api/v1/tasks/register", "{") // not a registration
	n.waitDone(t, reg.TaskID)
	n.seedContent(t, reg)
	n.post(t, "/api/v1/tasks/sync", wire.SyncRequest{PeerID: "pA", TaskID: reg.TaskID, Finished: []int{0, 1, 2}})

	waitFor(t, "seed_served_bytes_total = file size", func() bool {
		return metric(t, string(n.get(t, "/metrics").body), "damselfly_supernode_seed_served_bytes_total") == fileSize
	})
	a := n.get(t, "/metrics")
	if a.status != 200 || !strings.HasPrefix(a.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d, Content-Type %q", a.status, a.header.Get("Content-Type"))
	}
	text := string(a.body)
	for _, m := range []struct {
		name string
		want float64
	}{
		{"damselfly_supernode_registrations_total", 2},
		{"damselfly_supernode_syncs_total", 1},
		{"damselfly_supernode_piece_reports_total", 3},
		{"damselfly_supernode_origin_bytes_total", float64(origin.BytesServed("f"))},
		{"damselfly_supernode_seed_served_bytes_total", fileSize},
		{"damselfly_supernode_peers", 2},
	} {
		if got := metric(t, text, m.name); got != m.want {
			t.Errorf("%s = %v, want %v", m.name, got, m.want)
		}
	}
	if !strings.Contains(text, "# TYPE damselfly_supernode_registrations_total counter") {
		t.Error("registrations_total is not typed as a counter")
	}
}

func TestRevalidate(t *testing.T) {
	tests := []struct {
		name       string
		revalidate time.Duration
		validates  bool
	}{
		{"every 1ms: 304 keeps the copy", time.Millisecond, true},
		{"never", -1, false},
		{"hourly", time.Hour, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			origin := testenv.NewOrigin(t)
			sha := origin.AddRandom("f", fileSize, 1)
			want := pieceDigests(t, fileSize, 1)
			n := startNode(t, supernode.Config{Revalidate: tc.revalidate})
			reg := n.register(t, wire.RegisterRequest{PeerID: "p0", URL: origin.URL("f")})
			n.waitDone(t, reg.TaskID)
			bytes0, reqs0 := origin.BytesServed("f"), origin.Requests("f")
			if bytes0 != fileSize {
				t.Fatalf("first fill: origin served %d, want %d", bytes0, fileSize)
			}
			for i := 1; i <= 3; i++ {
				time.Sleep(5 * time.Millisecond)
				r := n.register(t, wire.RegisterRequest{PeerID: fmt.Sprintf("p%d", i), URL: origin.URL("f")})
				if !r.SeedDone {
					t.Errorf("registration %d: SeedDone false", i)
				}
				checkDigests(t, r.Digests, want, true)
			}
			if got := origin.BytesServed("f"); got != bytes0 {
				t.Errorf("origin served %d bytes after the fill, want 0 (304 keeps the copy)", got-bytes0)
			}
			extra := origin.Requests("f") - reqs0
			if tc.validates && extra < 1 {
				t.Errorf("no conditional request to the origin with Revalidate %v", tc.revalidate)
			}
			if !tc.validates && extra != 0 {
				t.Errorf("%d origin requests with Revalidate %v, want none", extra, tc.revalidate)
			}
			ts := n.taskStatus(t, reg.TaskID)
			if ts.State != "done" || ts.BytesFromOrigin != fileSize {
				t.Errorf("status: state %q, bytesFromOrigin %d", ts.State, ts.BytesFromOrigin)
			}
			if got := n.seedContent(t, reg); got != sha {
				t.Errorf("seed content %s, want %s", got, sha)
			}
		})
	}
}

// TestRevalidateChanged: a 200 to the conditional request (content
// changed) makes the seed fetch the new content.
func TestRevalidateChanged(t *testing.T) {
	origin := testenv.NewOrigin(t)
	origin.AddRandom("f", fileSize, 1)
	n := startNode(t, supernode.Config{Revalidate: time.Millisecond})
	reg := n.register(t, wire.RegisterRequest{PeerID: "p0", URL: origin.URL("f")})
	n.waitDone(t, reg.TaskID)

	sha2 := origin.AddRandom("f", fileSize, 2)
	time.Sleep(5 * time.Millisecond)
	reg2 := n.register(t, wire.RegisterRequest{PeerID: "p1", URL: origin.URL("f")})
	if reg2.TaskID != reg.TaskID {
		t.Fatalf("task ID changed")
	}
	old := pieceDigests(t, fileSize, 1)
	for i, d := range reg2.Digests {
		if d != "" && d == old[i] {
			t.Errorf("after the content changed, piece %d still has the old digest", i)
		}
	}
	n.waitDone(t, reg.TaskID)
	if got := n.seedContent(t, reg2); got != sha2 {
		t.Errorf("seed content %s, want the new content %s", got, sha2)
	}
	r := n.register(t, wire.RegisterRequest{PeerID: "p2", URL: origin.URL("f")})
	checkDigests(t, r.Digests, pieceDigests(t, fileSize, 2), true)
	if got := origin.BytesServed("f"); got != 2*fileSize {
		t.Errorf("origin served %d bytes, want two fills (%d)", got, 2*fileSize)
	}
	if ts := n.taskStatus(t, reg.TaskID); ts.BytesFromOrigin != origin.BytesServed("f") {
		t.Errorf("status bytesFromOrigin %d, origin served %d", ts.BytesFromOrigin, origin.BytesServed("f"))
	}
}

// TestRestart: a supernode restarted on the same data dir serves its cached
// copy after a conditional request, or refetches if the content changed.
func TestRestart(t *testing.T) {
	for _, changed := range []bool{false, true} {
		t.Run(fmt.Sprintf("changed=%v", changed), func(t *testing.T) {
			origin := testenv.NewOrigin(t)
			sha := origin.AddRandom("f", fileSize, 1)
			dir := t.TempDir()
			n1 := startNode(t, supernode.Config{DataDir: dir})
			reg := n1.register(t, wire.RegisterRequest{PeerID: "p0", URL: origin.URL("f")})
			n1.waitDone(t, reg.TaskID)
			n1.stop()

			wantBytes := int64(fileSize)
			if changed {
				sha = origin.AddRandom("f", fileSize, 2)
				wantBytes = 2 * fileSize
			}
			reqs := origin.Requests("f")
			n2 := startNode(t, supernode.Config{DataDir: dir})
			r := n2.register(t, wire.RegisterRequest{PeerID: "p1", URL: origin.URL("f")})
			if origin.Requests("f") == reqs {
				t.Error("restarted seed used its copy without asking the origin")
			}
			if !changed {
				if !r.SeedDone {
					t.Error("restarted seed with a current cached copy: SeedDone false")
				}
				checkDigests(t, r.Digests, pieceDigests(t, fileSize, 1), true)
			}
			ts := n2.waitDone(t, r.TaskID)
			if got := n2.seedContent(t, r); got != sha {
				t.Errorf("restarted seed serves %s, origin has %s", got, sha)
			}
			if got := origin.BytesServed("f"); got != wantBytes {
				t.Errorf("origin served %d bytes in all, want %d", got, wantBytes)
			}
			if ts.BytesFromOrigin != wantBytes-fileSize {
				t.Errorf("restarted seed: bytesFromOrigin %d, want %d", ts.BytesFromOrigin, wantBytes-fileSize)
			}
		})
	}
}

// TestStatusPeerToPeerBytes: peers report their cumulative bytes from
// other peers in every sync ("for the status API"); the task status sums
// the latest report of each peer as bytesPeerToPeer.
func TestStatusPeerToPeerBytes(t *testing.T) {
	origin := testenv.NewOrigin(t)
	origin.AddRandom("f", fileSize, 1)
	n := startNode(t, supernode.Config{})
	reg := n.register(t, wire.RegisterRequest{PeerID: "pA", Host: peerHost("hA", 10001), URL: origin.URL("f")})
	n.register(t, wire.RegisterRequest{PeerID: "pB", Host: peerHost("hB", 10002), URL: origin.URL("f")})
	for _, s := range []wire.SyncRequest{
		{PeerID: "pA", TaskID: reg.TaskID, Finished: []int{0}, BytesFromPeers: 1 << 20, BytesFromSeed: 1 << 20},
		{PeerID: "pA", TaskID: reg.TaskID, Finished: []int{1}, BytesFromPeers: 2 << 20, BytesFromSeed: 1 << 20}, // cumulative
		{PeerID: "pB", TaskID: reg.TaskID, Finished: []int{0}, BytesFromPeers: 1 << 20},
	} {
		if a := n.post(t, "/api/v1/tasks/sync", s); a.status != 200 {
			t.Fatalf("sync: %d %s", a.status, a.body)
		}
	}
	if ts := n.taskStatus(t, reg.TaskID); ts.BytesPeerToPeer != 3<<20 {
		t.Errorf("bytesPeerToPeer = %d, want %d (pA's latest 2 MiB + pB's 1 MiB)", ts.BytesPeerToPeer, 3<<20)
	}
}

func TestRegistrationRateLimit(t *testing.T) {
	n := startNode(t, supernode.Config{RegisterRate: 0.01, RegisterBurst: 3})
	for i := 0; i < 3; i++ {
		if a := n.post(t, "/api/v1/tasks/register", wire.RegisterRequest{}); a.status != http.StatusBadRequest {
			t.Fatalf("registration %d: %d %s, want 400 (admitted, then refused as invalid)", i, a.status, a.body)
		}
	}
	a := n.post(t, "/api/v1/tasks/register", wire.RegisterRequest{})
	if a.status != http.StatusTooManyRequests {
		t.Fatalf("past the burst: %d %s, want 429", a.status, a.body)
	}
	if ra, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After %q, want seconds >= 1", a.header.Get("Retry-After"))
	}
	// Other routes are not limited.
	if a := n.get(t, "/api/v1/status"); a.status != http.StatusOK {
		t.Errorf("status: %d", a.status)
	}
}

func TestStatusPages(t *testing.T) {
	origin := testenv.NewOrigin(t)
	n := startNode(t, supernode.Config{StatusLimit: 2})
	var ids []string
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("f%d", i)
		origin.AddRandom(name, 1000, int64(i))
		ids = append(ids, n.register(t, wire.RegisterRequest{PeerID: fmt.Sprintf("p%d", i), Host: peerHost("h", 10001+i), URL: origin.URL(name)}).TaskID)
	}
	type doc = wire.Status
	tests := []struct {
		query     string
		wantTasks []string
		wantPeers int
	}{
		{"", ids[:2], 2},
		{"?offset=2", ids[2:], 1},
		{"?limit=3", ids, 3},
		{"?limit=0", nil, 0},
		{"?offset=7", nil, 0},
	}
	for _, tc := range tests {
		a := n.get(t, "/api/v1/status"+tc.query)
		var d doc
		if a.status != http.StatusOK || json.Unmarshal(a.body, &d) != nil {
			t.Fatalf("%q: %d %s", tc.query, a.status, a.body)
		}
		if d.TotalTasks != 3 || d.TotalPeers != 3 {
			t.Errorf("%q: totals %d tasks %d peers, want 3 and 3", tc.query, d.TotalTasks, d.TotalPeers)
		}
		var got []string
		for _, ts := range d.Tasks {
			got = append(got, ts.TaskID)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.wantTasks) || len(d.Peers) != tc.wantPeers {
			t.Errorf("%q: tasks %v peers %d, want %v and %d", tc.query, got, len(d.Peers), tc.wantTasks, tc.wantPeers)
		}
	}
	if a := n.get(t, "/api/v1/status?limit=x"); a.status != http.StatusBadRequest {
		t.Errorf("bad limit: %d", a.status)
	}
}

// TestSeedRelaysPiecesItFetches: the seed's piece map lists the pieces it
// is fetching from the origin (Relaying), and a child asking for one of
// them gets its bytes as they arrive, before the piece is stored, with the
// digest after them (cut-through relay from the seed).
func TestSeedRelaysPiecesItFetches(t *testing.T) {
	const size = 4 << 20
	origin := testenv.NewOrigin(t, testenv.WithUploadCap(1<<20)) // about 3 s a piece
	origin.AddRandom("f", size, 21)
	want := pieceDigests(t, size, 21)
	n := startNode(t, supernode.Config{})
	reg := n.register(t, wire.RegisterRequest{PeerID: "p1", Host: peerHost("p1", 1), URL: origin.URL("f")})
	type pieceMap struct {
		Bitmap   manifest.Bitmap `json:"bitmap"`
		Relaying manifest.Bitmap `json:"relaying"`
	}
	bitmap := func() pieceMap {
		a := n.get(t, "/peer/tasks/"+reg.TaskID+"/bitmap")
		var bm pieceMap
		if a.status == http.StatusOK {
			if err := json.Unmarshal(a.body, &bm); err != nil {
				t.Fatal(err)
			}
		}
		return bm
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A piece the map lists may be claimed a moment before its bytes start
	// to land; it is then sent once stored (checked too): ask for another.
	var resp *http.Response
	i := -1
	for attempt := 0; resp == nil; attempt++ {
		if attempt == 3 {
			t.Fatal("no piece the seed listed as arriving came as a relayed stream")
		}
		i = -1
		waitFor(t, "a piece the seed is fetching in its piece map", func() bool {
			bm := bitmap()
			for k := range len(want) {
				if bm.Relaying.Has(k) && !bm.Bitmap.Has(k) {
					i = k
					return true
				}
			}
			return false
		})
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/peer/tasks/%s/pieces/%d", n.base, reg.TaskID, i), nil)
		if err != nil {
			t.Fatal(err)
		}
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if r.StatusCode != http.StatusOK {
			t.Fatalf("piece %d, which the seed was fetching: status %d", i, r.StatusCode)
		}
		if r.Header.Get("X-Damselfly-Relay") != "" {
			resp = r
			break
		}
		b, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil || cache.SumOf(b).String() != want[i] || r.Header.Get("X-Damselfly-Piece-Digest") != want[i] {
			t.Fatalf("piece %d sent once stored: %d bytes (%v), digest header %q, want %s", i, len(b), err, r.Header.Get("X-Damselfly-Piece-Digest"), want[i])
		}
	}
	defer resp.Body.Close()
	first := make([]byte, 64<<10)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	if bitmap().Bitmap.Has(i) {
		t.Errorf("piece %d was stored before its first bytes reached the child: no cut-through", i)
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if got := cache.SumOf(append(first, rest...)).String(); got != want[i] {
		t.Errorf("piece %d: bytes hash to %s, want %s", i, got, want[i])
	}
	if got := resp.Trailer.Get("X-Damselfly-Piece-Digest"); got != want[i] {
		t.Errorf("piece %d: digest trailer %q, want %s", i, got, want[i])
	}
	if got := resp.Trailer.Get("X-Damselfly-Relay-Status"); got != "ok" {
		t.Errorf("piece %d: relay status %q, want ok", i, got)
	}
}
