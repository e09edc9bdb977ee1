package p2p

import "github.com/damselfly-p2p/damselfly/wire"

// keepSealedLocked keeps the last digest list the supernode sealed for
// this download (ds with seal; reg, when not nil, is the registration
// answer they came with, which gives the content version the seal
// covers). After a failover the download presents it when it registers
// with the task's next owner, which then adopts the digests instead of
// fetching the pieces peers hold to vouch for them (supernode/vouch.go).
// The peer cannot make a seal say anything else: only supernodes hold its
// key. Caller holds d.mu (or owns d exclusively).
func (d *download) keepSealedLocked(ds []string, seal string, reg *wire.RegisterResponse) {
	var next wire.SealedDigests
	if d.sealed != nil {
		next = *d.sealed
	}
	if reg != nil && (reg.Length != next.Length || reg.PieceSize != next.PieceSize ||
		reg.ETag != next.ETag || reg.LastModified != next.LastModified) {
		next = wire.SealedDigests{Length: reg.Length, PieceSize: reg.PieceSize, ETag: reg.ETag, LastModified: reg.LastModified}
		d.pieceSeals = nil // of another content version
	}
	if seal != "" && len(ds) == d.layout.NumPieces() {
		next.Digests, next.Seal = ds, seal
		for i := range d.pieceSeals {
			if ds[i] != "" {
				delete(d.pieceSeals, i) // the list covers it now
			}
		}
	}
	d.sealed = &next
}

// sealedToPresent is the sealed list to present when registering again
// (nil: none kept).
func (d *download) sealedToPresent() *wire.SealedDigests {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sealed == nil || d.sealed.Seal == "" && len(d.pieceSeals) == 0 {
		return nil
	}
	c := *d.sealed
	c.Pieces = nil
	for _, p := range d.pieceSeals {
		c.Pieces = append(c.Pieces, p)
	}
	return &c
}

// noteHeaderSeal remembers the seal the seed sent with piece i's digest,
// until the piece is stored (keepPieceSealLocked) or fetched again.
func (d *download) noteHeaderSeal(i int, digest, seal string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.headerSeals == nil {
		d.headerSeals = map[int]wire.SealedPiece{}
	}
	d.headerSeals[i] = wire.SealedPiece{Piece: i, Digest: digest, Seal: seal}
}

// keepPieceSealLocked keeps the seal of piece i, stored under the digest
// the seed sent with it, for sealedToPresent. Caller holds d.mu.
func (d *download) keepPieceSealLocked(i int) {
	p, ok := d.headerSeals[i]
	delete(d.headerSeals, i)
	if !ok || d.digests[i].String() != p.Digest {
		return
	}
	if d.pieceSeals == nil {
		d.pieceSeals = map[int]wire.SealedPiece{}
	}
	d.pieceSeals[i] = p
}
