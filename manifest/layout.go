package manifest

import "fmt"

// Piece sizing.
//
// A task is cut into pieces of PieceSize bytes (the last one shorter). The size is
// the smallest power of two, between MinPieceSize and MaxPieceSize, that keeps the
// piece count at or below TargetPieces:
//
//	PieceSize(L) = clamp(nextPow2(ceil(L / TargetPieces)), MinPieceSize, MaxPieceSize)
//
// Why these bounds: every piece costs one request, one digest and one bit of
// metadata at each peer and at the scheduler, so huge files must not have
// unbounded piece counts (a 32 GiB file has 2048 pieces of 16 MiB); and a lazy
// FUSE reader waits for at most one whole piece, so pieces must stay small for
// small files (anything up to 2 GiB uses 1 MiB pieces). Above 32 GiB the count
// grows past TargetPieces rather than making pieces larger than MaxPieceSize.
const (
	MinPieceSize = 1 << 20
	MaxPieceSize = 16 << 20
	TargetPieces = 2048
)

// PieceSizeFor returns the piece size for content of the given length.
func PieceSizeFor(length int64) int64 {
	size := int64(MinPieceSize)
	for size < MaxPieceSize && (length+size-1)/size > TargetPieces {
		size <<= 1
	}
	return size
}

// Layout is the piece layout of a task of known length.
type Layout struct {
	Length    int64 `json:"length"`
	PieceSize int64 `json:"pieceSize"`
}

// NewLayout returns the layout for content of the given length with the
// default piece size.
func NewLayout(length int64) Layout {
	return Layout{Length: length, PieceSize: PieceSizeFor(length)}
}

// Validate reports whether the layout is usable.
func (l Layout) Validate() error {
	if l.Length < 0 {
		return fmt.Errorf("invalid layout: negative length %d", l.Length)
	}
	if l.PieceSize <= 0 {
		return fmt.Errorf("invalid layout: piece size %d", l.PieceSize)
	}
	return nil
}

// NumPieces is the number of pieces; an empty task has zero pieces.
func (l Layout) NumPieces() int {
	if l.PieceSize <= 0 {
		return 0
	}
	return int((l.Length + l.PieceSize - 1) / l.PieceSize)
}

// PieceRange returns the byte offset and length of piece i.
func (l Layout) PieceRange(i int) (off, n int64) {
	off = int64(i) * l.PieceSize
	n = l.PieceSize
	if off+n > l.Length {
		n = l.Length - off
	}
	return off, n
}

// RunRange returns the byte offset and length of pieces [first, first+n),
// n >= 1: the range one request for that run of pieces covers.
func (l Layout) RunRange(first, n int) (off, size int64) {
	off, _ = l.PieceRange(first)
	lastOff, lastSize := l.PieceRange(first + n - 1)
	return off, lastOff + lastSize - off
}

// PiecesIn returns the first and last (inclusive) piece indexes covering
// [off, off+n). It returns first > last when n == 0.
func (l Layout) PiecesIn(off, n int64) (first, last int) {
	if n <= 0 || l.PieceSize <= 0 {
		return 0, -1
	}
	return int(off / l.PieceSize), int((off + n - 1) / l.PieceSize)
}
