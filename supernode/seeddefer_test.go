package supernode_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/supernode"
	"github.com/damselfly-p2p/damselfly/testenv"
	"github.com/damselfly-p2p/damselfly/wire"
)

// TestSeedPutsOffPiecesPeersHold: as after a failover, a peer that holds
// most of a file registers with a supernode that does not have it (lazily,
// so the seed starts on demand) and reports its pieces; a second, full
// registration starts the fill, which fetches only the pieces no peer
// holds. The seed publishes digests only for pieces it fetched and claims
// SeedDone only once it holds everything, which it fetches when the
// holder leaves.
func TestSeedPutsOffPiecesPeersHold(t *testing.T) {
	const size = 8<<20 + 123
	origin := testenv.NewOrigin(t)
	origin.AddRandom("f.bin", size, 21)
	n := startNode(t, supernode.Config{DeferHeldPieces: true})
	url := origin.URL("f.bin")
	l := manifest.NewLayout(size)
	np := l.NumPieces()
	if np < 4 {
		t.Fatalf("layout has %d pieces; the test needs at least 4", np)
	}
	const unheld = 2 // the last pieces: nobody holds them

	holder := n.register(t, wire.RegisterRequest{PeerID: "holder", Host: peerHost("holder", 1), URL: url, Lazy: true})
	var held []int
	for i := 0; i < np-unheld; i++ {
		held = append(held, i)
	}
	if a := n.post(t, "/api/v1/tasks/sync", wire.SyncRequest{PeerID: "holder", TaskID: holder.TaskID, Finished: held, KnownDigests: np}); a.status != http.StatusOK {
		t.Fatalf("sync: %d %s", a.status, a.body)
	}
	full := n.register(t, wire.RegisterRequest{PeerID: "newcomer", Host: peerHost("newcomer", 2), URL: url})

	_, lastLen := l.PieceRange(np - 1)
	wantOrigin := l.PieceSize*(unheld-1) + lastLen
	waitFor(t, "the seed fetches the pieces nobody holds", func() bool {
		return n.taskStatus(t, full.TaskID).SeedPieces == unheld
	})
	ts := n.taskStatus(t, full.TaskID)
	if ts.BytesFromOrigin != wantOrigin || origin.BytesServed("f.bin") > wantOrigin+1 {
		t.Errorf("seed fetched %d bytes (origin served %d), want %d: only the pieces no peer holds",
			ts.BytesFromOrigin, origin.BytesServed("f.bin"), wantOrigin)
	}
	a := n.post(t, "/api/v1/tasks/sync", wire.SyncRequest{PeerID: "newcomer", TaskID: full.TaskID, KnownDigests: 0})
	if a.status != http.StatusOK {
		t.Fatalf("sync: %d %s", a.status, a.body)
	}
	resp := decodeSync(t, a)
	if resp.SeedDone {
		t.Error("SeedDone while the seed lacks pieces")
	}
	for i, d := range resp.Digests {
		if (i >= np-unheld) != (d != "") {
			t.Errorf("piece %d: digest %q published; want digests exactly for the pieces the seed fetched", i, d)
		}
	}

	// The holder leaves: the seed fetches the rest and vouches for all.
	if a := n.post(t, "/api/v1/peers/leave", wire.LeaveRequest{PeerID: "holder"}); a.status/100 != 2 {
		t.Fatalf("leave: %d %s", a.status, a.body)
	}
	done := n.waitDone(t, full.TaskID)
	if done.BytesFromOrigin != size {
		t.Errorf("seed fetched %d bytes in all, want %d (each piece once)", done.BytesFromOrigin, size)
	}
	want := pieceDigests(t, size, 21)
	resp = decodeSync(t, n.post(t, "/api/v1/tasks/sync", wire.SyncRequest{PeerID: "newcomer", TaskID: full.TaskID}))
	if !resp.SeedDone {
		t.Error("SeedDone false once the seed holds everything")
	}
	for i := range want {
		if i >= len(resp.Digests) || resp.Digests[i] != want[i] {
			t.Fatalf("digest of piece %d: got %v, want %s", i, resp.Digests, want[i])
		}
	}
}

func decodeSync(t *testing.T, a answer) wire.SyncResponse {
	t.Helper()
	if a.status != http.StatusOK {
		t.Fatalf("sync: status %d: %s", a.status, a.body)
	}
	var resp wire.SyncResponse
	if err := json.Unmarshal(a.body, &resp); err != nil {
		t.Fatalf("decode SyncResponse: %v", err)
	}
	return resp
}
