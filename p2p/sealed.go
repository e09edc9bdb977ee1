package p2p

import "github.com/damselfly-p2p/damselfly/wire"

// keepSealedLocked keeps the last digest list the supernode sealed for
// this download (ds with seal; reg, when not nil, the registration it came
// with, for the content version the seal covers). After a failover the
// download presents it when it registers with the task's next owner,
// which then adopts the digests instead of fetching the pieces peers hold
// to vouch for them (supernode/vouch.go). The peer cannot make the seal
// say anything else: only supernodes hold its key. Caller holds d.mu (or
// owns d exclusively).
func (d *download) keepSealedLocked(ds []string, seal string, reg *wire.RegisterResponse) {
	if reg != nil {
		if reg.Seal == "" || len(ds) != d.layout.NumPieces() {
			// A supernode without a seal key: what was kept is still
			// the best list to present.
			return
		}
		d.sealed = &wire.SealedDigests{Length: reg.Length, PieceSize: reg.PieceSize, ETag: reg.ETag,
			LastModified: reg.LastModified, Digests: ds, Seal: seal}
		return
	}
	if seal == "" || d.sealed == nil || len(ds) != d.layout.NumPieces() {
		return
	}
	next := *d.sealed
	next.Digests, next.Seal = ds, seal
	d.sealed = &next
}
