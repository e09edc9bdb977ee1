package p2p

import (
	"testing"

	"github.com/damselfly-p2p/damselfly/cache"
	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/wire"
)

// TestKeepSealed: a download keeps the newest sealed list and the piece
// seals no list covers yet, presents them when it registers again, and
// forgets them when the content version changes.
func TestKeepSealed(t *testing.T) {
	l := manifest.Layout{Length: 3 << 20, PieceSize: 1 << 20}
	d := &download{layout: l, digests: make([]cache.Sum, l.NumPieces())}
	reg := &wire.RegisterResponse{Length: l.Length, PieceSize: l.PieceSize, ETag: `"v1"`, Digests: []string{"", "", ""}}
	d.keepSealedLocked(reg.Digests, "", reg)
	if p := d.sealedToPresent(); p != nil {
		t.Fatalf("presents %+v with nothing sealed", p)
	}
	// Sync answers with growing sealed lists; an answer without one
	// (a supernode without the key) keeps the last.
	d.keepSealedLocked([]string{"sha256:aa", "", ""}, "seal-1", nil)
	d.keepSealedLocked([]string{"sha256:aa", "sha256:bb", ""}, "seal-2", nil)
	d.keepSealedLocked([]string{"sha256:aa", "sha256:bb", "sha256:cc"}, "", nil)
	// Piece 2's digest came with the piece from the seed, sealed alone.
	sum := cache.SumOf([]byte("piece 2"))
	d.digests[2] = sum
	d.noteHeaderSeal(2, sum.String(), "piece-seal-2")
	d.keepPieceSealLocked(2)
	p := d.sealedToPresent()
	if p == nil || p.Seal != "seal-2" || p.Digests[1] != "sha256:bb" || p.Digests[2] != "" || p.ETag != `"v1"` || p.Length != l.Length {
		t.Fatalf("presents %+v, want the list sealed as seal-2 in version v1", p)
	}
	if len(p.Pieces) != 1 || p.Pieces[0] != (wire.SealedPiece{Piece: 2, Digest: sum.String(), Seal: "piece-seal-2"}) {
		t.Fatalf("piece seals %+v, want piece 2's", p.Pieces)
	}
	// A list that covers piece 2 makes its own seal redundant.
	d.keepSealedLocked([]string{"sha256:aa", "sha256:bb", sum.String()}, "seal-3", nil)
	if p := d.sealedToPresent(); p.Seal != "seal-3" || len(p.Pieces) != 0 {
		t.Fatalf("presents %+v, want seal-3 alone", p)
	}
	// A registration in another content version forgets the old seals.
	reg2 := *reg
	reg2.ETag = `"v2"`
	d.keepSealedLocked(reg2.Digests, "", &reg2)
	if p := d.sealedToPresent(); p != nil {
		t.Fatalf("presents %+v after the content changed", p)
	}
}
