package manifest

import "testing"

func TestPieceSizeFor(t *testing.T) {
	const MiB, GiB = 1 << 20, 1 << 30
	tests := []struct {
		length int64
		want   int64
	}{
		{0, MiB},
		{1, MiB},
		{64 * MiB, MiB},
		{2 * GiB, MiB},
		{2*GiB + 1, 2 * MiB},
		{5 * GiB, 4 * MiB},
		{32 * GiB, 16 * MiB},
		{1 << 40, 16 * MiB},
	}
	for _, tt := range tests {
		if got := PieceSizeFor(tt.length); got != tt.want {
			t.Errorf("PieceSizeFor(%d) = %d, want %d", tt.length, got, tt.want)
		}
	}
}

func TestLayout(t *testing.T) {
	tests := []struct {
		name    string
		l       Layout
		pieces  int
		lastOff int64
		lastLen int64
	}{
		{"exact", Layout{Length: 4096, PieceSize: 1024}, 4, 3072, 1024},
		{"short last", Layout{Length: 4097, PieceSize: 1024}, 5, 4096, 1},
		{"one short", Layout{Length: 10, PieceSize: 1024}, 1, 0, 10},
		{"empty", Layout{Length: 0, PieceSize: 1024}, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.l.NumPieces(); got != tt.pieces {
				t.Fatalf("NumPieces = %d, want %d", got, tt.pieces)
			}
			if tt.pieces == 0 {
				return
			}
			off, n := tt.l.PieceRange(tt.pieces - 1)
			if off != tt.lastOff || n != tt.lastLen {
				t.Fatalf("last piece = (%d,%d), want (%d,%d)", off, n, tt.lastOff, tt.lastLen)
			}
		})
	}
}

func TestPiecesIn(t *testing.T) {
	l := Layout{Length: 10000, PieceSize: 1000}
	tests := []struct {
		off, n      int64
		first, last int
	}{
		{0, 1, 0, 0},
		{999, 2, 0, 1},
		{5000, 1000, 5, 5},
		{0, 10000, 0, 9},
		{10, 0, 0, -1},
	}
	for _, tt := range tests {
		f, la := l.PiecesIn(tt.off, tt.n)
		if f != tt.first || la != tt.last {
			t.Errorf("PiecesIn(%d,%d) = %d,%d want %d,%d", tt.off, tt.n, f, la, tt.first, tt.last)
		}
	}
}

func TestRunRange(t *testing.T) {
	l := Layout{Length: 10500, PieceSize: 1000}
	tests := []struct {
		first, n  int
		off, size int64
	}{
		{0, 1, 0, 1000},
		{3, 4, 3000, 4000},
		{9, 2, 9000, 1500}, // ends with the short last piece
		{10, 1, 10000, 500},
	}
	for _, tt := range tests {
		if off, size := l.RunRange(tt.first, tt.n); off != tt.off || size != tt.size {
			t.Errorf("RunRange(%d,%d) = %d,%d want %d,%d", tt.first, tt.n, off, size, tt.off, tt.size)
		}
	}
}
