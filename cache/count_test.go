package cache

import "testing"

func TestCountPresent(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	data := content(5<<20, 9)
	a := create(t, s, testMeta("a", int64(len(data)), 1<<20))
	for _, i := range []int{0, 3} {
		if _, err := a.PutPiece(i, piece(a, data, i)); err != nil {
			t.Fatal(err)
		}
	}
	b := create(t, s, testMeta("b", int64(len(data)), 1<<20))
	if _, err := b.PutPiece(4, piece(b, data, 4)); err != nil {
		t.Fatal(err)
	}
	if got := CountPresent(dir); got != 3 {
		t.Fatalf("CountPresent = %d, want 3", got)
	}
	if got := CountPresent(t.TempDir()); got != 0 {
		t.Fatalf("empty dir: %d", got)
	}
}
