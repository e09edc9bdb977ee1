package wire

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"
)

// HRWWeight is the rendezvous (highest random weight) score of node for key:
//
//	w(node, key) = first 8 bytes, big-endian, of SHA-256(node || 0x00 || key)
//
// The owner of a task is the live supernode with the highest w(address,
// taskID); ties (never seen in practice) go to the smaller address. Every
// peer computes the same owner from the same list of addresses, without
// coordination, and removing or adding one supernode moves only the keys
// it owns (or comes to own): the order of the others is unchanged.
func HRWWeight(node, key string) uint64 {
	h := sha256.New()
	h.Write([]byte(node))
	h.Write([]byte{0})
	h.Write([]byte(key))
	var sum [sha256.Size]byte
	return binary.BigEndian.Uint64(h.Sum(sum[:0]))
}

// HRWOrder returns nodes sorted by decreasing HRWWeight for key: the owner
// first, then the supernode that takes over when the owner is gone, and so
// on. nodes is not modified.
func HRWOrder(key string, nodes []string) []string {
	type scored struct {
		node string
		w    uint64
	}
	s := make([]scored, len(nodes))
	for i, n := range nodes {
		s[i] = scored{n, HRWWeight(n, key)}
	}
	slices.SortFunc(s, func(a, b scored) int {
		switch {
		case a.w > b.w:
			return -1
		case a.w < b.w:
			return 1
		case a.node < b.node:
			return -1
		case a.node > b.node:
			return 1
		}
		return 0
	})
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = x.node
	}
	return out
}

// HRWOwner returns the node of nodes that owns key ("" when nodes is empty).
func HRWOwner(key string, nodes []string) string {
	best, bestW := "", uint64(0)
	for _, n := range nodes {
		w := HRWWeight(n, key)
		if best == "" || w > bestW || (w == bestW && n < best) {
			best, bestW = n, w
		}
	}
	return best
}
