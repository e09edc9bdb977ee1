package supernode_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/supernode"
	"github.com/damselfly-p2p/damselfly/testenv"
	"github.com/damselfly-p2p/damselfly/wire"
)

const sealSecret = "seal-secret-only-supernodes-hold"

// sealedList registers a peer with a supernode holding the whole content
// of url and returns the sealed digest list it hands out, as a peer keeps
// it to present after a failover.
func sealedList(t *testing.T, n *node, url string) *wire.SealedDigests {
	t.Helper()
	reg := n.register(t, wire.RegisterRequest{PeerID: "keeper", Host: peerHost("keeper", 9), URL: url})
	n.waitDone(t, reg.TaskID)
	reg = n.register(t, wire.RegisterRequest{PeerID: "keeper", Host: peerHost("keeper", 9), URL: url})
	if reg.Seal == "" {
		t.Fatal("a supernode with a seal secret handed out digests without a seal")
	}
	return &wire.SealedDigests{Length: reg.Length, PieceSize: reg.PieceSize, ETag: reg.ETag,
		LastModified: reg.LastModified, Digests: reg.Digests, Seal: reg.Seal}
}

// pieceGet asks the seed of n for piece i as child, not urgently.
func pieceGet(t *testing.T, n *node, taskID string, i int, child string, urgent bool) answer {
	t.Helper()
	url := fmt.Sprintf("%s/peer/tasks/%s/pieces/%d", n.base, taskID, i)
	if urgent {
		url += "?urgent=1"
	}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Damselfly-Peer", child)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

// TestFailoverAdoptsSealedDigests: the owner of a task dies; a peer that
// holds most of the file registers with the next owner presenting the
// digest list the first owner sealed. The new owner publishes every
// digest at once, its seed fetches nothing the peers hold, sends children
// asking for a held piece to the holder, and fetches from the origin only
// a piece nobody holds, when asked for it.
func TestFailoverAdoptsSealedDigests(t *testing.T) {
	const size = 8<<20 + 123
	origin := testenv.NewOrigin(t)
	origin.AddRandom("f.bin", size, 21)
	url := origin.URL("f.bin")
	first := startNode(t, supernode.Config{SealSecret: secret(t, sealSecret)})
	sealed := sealedList(t, first, url)
	first.stop()
	origin.ResetCounters()

	next := startNode(t, supernode.Config{SealSecret: secret(t, sealSecret)})
	l := manifest.NewLayout(size)
	np := l.NumPieces()
	if np < 4 {
		t.Fatalf("layout has %d pieces; the test needs at least 4", np)
	}
	want := pieceDigests(t, size, 21)
	// The holder registers again (as after a failover) and re-reports
	// every piece but the last.
	adopted := time.Now()
	reg := next.register(t, wire.RegisterRequest{PeerID: "holder", Host: peerHost("holder", 1), URL: url, Sealed: sealed})
	if !slices.Equal(reg.Digests, want) {
		t.Fatalf("new owner published %q, want every digest %q", reg.Digests, want)
	}
	if reg.Seal == "" {
		t.Error("new owner's digests carry no seal")
	}
	held := make([]int, np-1)
	for i := range held {
		held[i] = i
	}
	if a := next.post(t, "/api/v1/tasks/sync", wire.SyncRequest{PeerID: "holder", TaskID: reg.TaskID, Finished: held, KnownDigests: np}); a.status != http.StatusOK {
		t.Fatalf("sync: %d %s", a.status, a.body)
	}
	// A newcomer learns every digest too.
	child := next.register(t, wire.RegisterRequest{PeerID: "child", Host: peerHost("child", 2), URL: url})
	if !slices.Equal(child.Digests, want) {
		t.Fatalf("newcomer got %q, want every digest", child.Digests)
	}
	// The fill (after its settle) finds nothing to fetch.
	waitFor(t, "the seed's fill to end", func() bool { return next.taskStatus(t, reg.TaskID).State != "fetching" })
	if ts := next.taskStatus(t, reg.TaskID); ts.BytesFromOrigin != 0 || ts.State != "on-demand" {
		t.Errorf("seed state %q fetched %d bytes from the origin; want on-demand and none: every piece was vouched for",
			ts.State, ts.BytesFromOrigin)
	}

	// A held piece: the child is sent to the holder.
	a := pieceGet(t, next, reg.TaskID, 0, "child 127.0.0.1:2", false)
	if a.status != http.StatusServiceUnavailable || a.header.Get("X-Damselfly-Busy") != "piece" ||
		a.header.Get("X-Damselfly-Holders") != "holder 127.0.0.1:1" {
		t.Fatalf("held piece: status %d busy %q holders %q; want 503 naming the holder", a.status,
			a.header.Get("X-Damselfly-Busy"), a.header.Get("X-Damselfly-Holders"))
	}
	// The piece nobody holds: right after the adoption (peers are still
	// re-reporting) the child is told to ask again; then it is fetched on
	// demand, under its vouched digest.
	last := np - 1
	if time.Since(adopted) < 800*time.Millisecond {
		a = pieceGet(t, next, reg.TaskID, last, "child 127.0.0.1:2", false)
		if a.status != http.StatusServiceUnavailable || a.header.Get("X-Damselfly-Busy") != "piece" || a.header.Get("X-Damselfly-Holders") != "" {
			t.Fatalf("unheld piece within the grace: status %d busy %q holders %q; want 503 naming nobody", a.status,
				a.header.Get("X-Damselfly-Busy"), a.header.Get("X-Damselfly-Holders"))
		}
	}
	time.Sleep(time.Until(adopted.Add(1100 * time.Millisecond)))
	a = pieceGet(t, next, reg.TaskID, last, "child 127.0.0.1:2", false)
	_, lastLen := l.PieceRange(last)
	if a.status != http.StatusOK || int64(len(a.body)) != lastLen || a.header.Get("X-Damselfly-Piece-Digest") != want[last] {
		t.Fatalf("unheld piece: status %d, %d bytes, digest %q", a.status, len(a.body), a.header.Get("X-Damselfly-Piece-Digest"))
	}
	// Urgent (the holders named are gone for this child): fetched here.
	a = pieceGet(t, next, reg.TaskID, 1, "child 127.0.0.1:2", true)
	if a.status != http.StatusOK || a.header.Get("X-Damselfly-Piece-Digest") != want[1] {
		t.Fatalf("urgent piece: status %d", a.status)
	}
	// The holder leaves: its pieces are fetched when asked for.
	if a := next.post(t, "/api/v1/peers/leave", wire.LeaveRequest{PeerID: "holder"}); a.status/100 != 2 {
		t.Fatalf("leave: %d %s", a.status, a.body)
	}
	a = pieceGet(t, next, reg.TaskID, 0, "child 127.0.0.1:2", false)
	if a.status != http.StatusOK || a.header.Get("X-Damselfly-Piece-Digest") != want[0] {
		t.Fatalf("piece of a holder that left: status %d %s", a.status, a.body)
	}
	wantOrigin := lastLen + 2*l.PieceSize
	if ts := next.taskStatus(t, reg.TaskID); ts.BytesFromOrigin != wantOrigin || origin.BytesServed("f.bin") > wantOrigin+1 {
		t.Errorf("seed fetched %d bytes (origin served %d), want %d: the three pieces asked for, once each",
			ts.BytesFromOrigin, origin.BytesServed("f.bin"), wantOrigin)
	}
	// A preheat wants the whole file on the seed: it fetches the rest,
	// each piece once.
	if st := waitPreheat(t, next, startPreheat(t, next, map[string]any{"url": url}).ID); st.State != wire.PreheatSuccess {
		t.Fatalf("preheat of a partial seed: %+v", st)
	}
	if ts := next.taskStatus(t, reg.TaskID); ts.State != "done" || ts.BytesFromOrigin != size {
		t.Errorf("after the preheat: seed %q with %d bytes from the origin, want done with the file once (%d)", ts.State, ts.BytesFromOrigin, size)
	}
}

// TestFailoverRefusesBadSeals: a peer presenting a sealed list that a
// supernode did not seal for this task and content (forged, altered, of
// another task, or sealed under another cluster's secret), or to a
// supernode without a seal secret, gets nothing adopted: the new owner
// publishes only digests of pieces it fetched and fetches the whole file.
func TestFailoverRefusesBadSeals(t *testing.T) {
	const size = 4<<20 + 77
	origin := testenv.NewOrigin(t)
	origin.AddRandom("f.bin", size, 31)
	origin.AddRandom("g.bin", size, 32)
	url := origin.URL("f.bin")
	first := startNode(t, supernode.Config{SealSecret: secret(t, sealSecret)})
	genuine := sealedList(t, first, url)
	other := sealedList(t, first, origin.URL("g.bin"))
	want := pieceDigests(t, size, 31)

	forged := *genuine
	forged.Seal = "dfs1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	altered := *genuine
	altered.Digests = slices.Clone(genuine.Digests)
	altered.Digests[0] = other.Digests[0] // a digest of other bytes: poison
	shifted := *genuine
	shifted.ETag = `"another-version"`
	tests := []struct {
		name   string
		secret string
		sealed *wire.SealedDigests
	}{
		{"forged seal", sealSecret, &forged},
		{"altered digest list", sealSecret, &altered},
		{"another task's list", sealSecret, other},
		{"another content version", sealSecret, &shifted},
		{"another cluster's secret", "another-clusters-seal-secret-0123", genuine},
		{"no seal secret here", "", genuine},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := supernode.Config{}
			if tc.secret != "" {
				cfg.SealSecret = secret(t, tc.secret)
			}
			n := startNode(t, cfg)
			reg := n.register(t, wire.RegisterRequest{PeerID: "liar", Host: peerHost("liar", 1), URL: url, Sealed: tc.sealed})
			for i, d := range reg.Digests {
				if d != "" && d != want[i] {
					t.Fatalf("piece %d: published %q, not the content's digest", i, d)
				}
			}
			// Nothing vouched: the seed fetches (and vouches for) it all.
			done := n.waitDone(t, reg.TaskID)
			if done.BytesFromOrigin != size {
				t.Errorf("seed fetched %d bytes, want the whole file (%d): nothing adopted", done.BytesFromOrigin, size)
			}
			a := n.post(t, "/api/v1/tasks/sync", wire.SyncRequest{PeerID: "liar", TaskID: reg.TaskID})
			var resp wire.SyncResponse
			if a.status != http.StatusOK || json.Unmarshal(a.body, &resp) != nil {
				t.Fatalf("sync: %d %s", a.status, a.body)
			}
			if !slices.Equal(resp.Digests, want) {
				t.Errorf("digests %q, want the content's", resp.Digests)
			}
		})
	}
}

// TestFailoverPieceSeals: a digest a child got with a piece from the
// seed (before the next sealed list) comes with the piece's own seal; the
// next owner adopts it alone, and refuses a piece seal presented for
// another piece, another digest or forged.
func TestFailoverPieceSeals(t *testing.T) {
	const size = 4<<20 + 77
	origin := testenv.NewOrigin(t)
	origin.AddRandom("f.bin", size, 41)
	url := origin.URL("f.bin")
	first := startNode(t, supernode.Config{SealSecret: secret(t, sealSecret)})
	list := sealedList(t, first, url)
	want := pieceDigests(t, size, 41)
	reg := first.register(t, wire.RegisterRequest{PeerID: "child", Host: peerHost("child", 3), URL: url})
	a := pieceGet(t, first, reg.TaskID, 0, "child 127.0.0.1:3", true)
	seal := a.header.Get("X-Damselfly-Piece-Seal")
	if a.status != http.StatusOK || seal == "" {
		t.Fatalf("piece from the seed: status %d, seal %q; want a sealed digest with it", a.status, seal)
	}
	first.stop()

	next := startNode(t, supernode.Config{SealSecret: secret(t, sealSecret)})
	presented := &wire.SealedDigests{Length: list.Length, PieceSize: list.PieceSize, ETag: list.ETag,
		LastModified: list.LastModified, Pieces: []wire.SealedPiece{
			{Piece: 0, Digest: want[0], Seal: seal},
			{Piece: 1, Digest: want[1], Seal: seal},                                               // another piece's seal
			{Piece: 2, Digest: want[0], Seal: seal},                                               // another piece's seal and digest
			{Piece: 3, Digest: want[3], Seal: "dfs1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, // forged
		}}
	got := next.register(t, wire.RegisterRequest{PeerID: "child", Host: peerHost("child", 3), URL: url, Sealed: presented})
	for i, d := range got.Digests {
		if i == 0 && d != want[0] {
			t.Errorf("piece 0: published %q, want the sealed digest %s", d, want[0])
		}
		if i > 0 && d != "" {
			t.Errorf("piece %d: published %q before the seed fetched it: a bad piece seal was adopted", i, d)
		}
	}
}
