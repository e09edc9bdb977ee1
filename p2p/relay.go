package p2p

import (
	"context"
	"io"

	"github.com/damselfly-p2p/damselfly/manifest"
)

// Cut-through relay: while a download reads a piece from a parent into its
// buffer, the peer's upload server streams the bytes already in to children
// that ask for the piece (upload.Relayer, over upload.Relays), so a piece moves down a chain of
// peers without waiting a whole piece at every hop. The bytes live only in
// memory until the piece is verified and stored, so the store's rule holds:
// a piece record is written only after the whole piece is verified.
//
// A relayed stream holds back the piece's last byte until the relaying peer
// has verified (and stored) the whole piece: a piece that fails
// verification is never handed on whole, its streams are cut, and the
// children fetch it again (the relaying peer reports its own parent as
// corrupt). A child verifies every piece itself when its last byte is in,
// so a lying relay is caught as a corrupt parent as before.

// Relay implements upload.Relayer: a stream of piece n of taskID while this
// peer is fetching it.
func (p *Peer) Relay(ctx context.Context, taskID string, n int) (io.ReadCloser, int64, bool) {
	return p.relays.Reader(ctx, taskID, n)
}

// Relaying implements upload.Relayer.
func (p *Peer) Relaying(taskID string, numPieces int) (manifest.Bitmap, uint64, <-chan struct{}) {
	return p.relays.Set(taskID, numPieces)
}
