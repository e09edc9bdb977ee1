package manifest

import "testing"

func TestBitmap(t *testing.T) {
	b := NewBitmap(10)
	if len(b) != 2 {
		t.Fatalf("len = %d, want 2", len(b))
	}
	for _, i := range []int{0, 7, 8, 9} {
		b.Set(i)
	}
	tests := []struct {
		i    int
		want bool
	}{{0, true}, {1, false}, {7, true}, {8, true}, {9, true}, {-1, false}, {100, false}}
	for _, tt := range tests {
		if got := b.Has(tt.i); got != tt.want {
			t.Errorf("Has(%d) = %v, want %v", tt.i, got, tt.want)
		}
	}
	if b.Count() != 4 || b.Full(10) {
		t.Fatalf("Count = %d, Full = %v", b.Count(), b.Full(10))
	}
	c := b.Clone()
	c.Clear(0)
	if !b.Has(0) || c.Has(0) {
		t.Fatal("Clone shares storage")
	}
	o := NewBitmap(10)
	for i := 0; i < 10; i++ {
		o.Set(i)
	}
	c.Or(o)
	if !c.Full(10) {
		t.Fatal("Or did not fill")
	}
}
