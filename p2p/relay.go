package p2p

import (
	"context"
	"io"

	"github.com/damselfly-p2p/damselfly/manifest"
)

// Cut-through relay: while a download reads a piece from a parent, the
// peer's upload server streams the bytes already in to children that ask
// for it (upload.Relays holds the arriving pieces and says how streams
// follow them). A child verifies every piece itself when its last byte is
// in, so a lying relay is caught as a corrupt parent as before; the
// relaying peer reports its own parent as corrupt when the piece does not
// verify.

// Relay implements upload.Relayer: a stream of piece n of taskID while this
// peer is fetching it.
func (p *Peer) Relay(ctx context.Context, taskID string, n int) (io.ReadCloser, int64, bool) {
	return p.relays.Reader(ctx, taskID, n)
}

// Relaying implements upload.Relayer.
func (p *Peer) Relaying(taskID string, numPieces int) (manifest.Bitmap, uint64, <-chan struct{}) {
	return p.relays.Set(taskID, numPieces)
}
