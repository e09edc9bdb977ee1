package manifest

import "math/bits"

// Bitmap records which pieces of a task are present: bit i of byte i/8 (least
// significant bit first) is piece i. It is what peers exchange and the
// scheduler keeps per peer, so it stays a plain byte slice (JSON encodes it
// as base64).
type Bitmap []byte

// NewBitmap returns an empty bitmap for n pieces.
func NewBitmap(n int) Bitmap { return make(Bitmap, (n+7)/8) }

// Has reports whether piece i is set; indexes out of range are not set.
func (b Bitmap) Has(i int) bool {
	if i < 0 || i/8 >= len(b) {
		return false
	}
	return b[i/8]&(1<<(uint(i)%8)) != 0
}

// Set marks piece i; it panics if i is out of range.
func (b Bitmap) Set(i int) { b[i/8] |= 1 << (uint(i) % 8) }

// Clear unmarks piece i; it panics if i is out of range.
func (b Bitmap) Clear(i int) { b[i/8] &^= 1 << (uint(i) % 8) }

// Count returns the number of pieces set.
func (b Bitmap) Count() int {
	n := 0
	for _, x := range b {
		n += bits.OnesCount8(x)
	}
	return n
}

// Full reports whether all n pieces are set.
func (b Bitmap) Full(n int) bool { return b.Count() >= n && len(b) >= (n+7)/8 }

// Clone returns a copy.
func (b Bitmap) Clone() Bitmap { return append(Bitmap(nil), b...) }

// Or sets in b every piece set in o (up to b's length).
func (b Bitmap) Or(o Bitmap) {
	for i := 0; i < len(b) && i < len(o); i++ {
		b[i] |= o[i]
	}
}
