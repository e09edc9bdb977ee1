package upload

import (
	"context"
	"testing"
	"time"
)

// A stream of a relayed piece follows the writer, holds the last byte back
// until the piece is verified, and is cut when the fetch fails.
func TestRelayReader(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{{"verified", true}, {"failed", false}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r Relays
			buf := make([]byte, 1<<20)
			rp, end := r.Start("t", 0, buf, nil)
			b, gen, _ := r.Set("t", 4)
			if !b.Has(0) || gen == 0 {
				t.Fatalf("relaying %v gen %d, want piece 0 and a new generation", b, gen)
			}
			rd, size, ok := r.Reader(context.Background(), "t", 0)
			if !ok || size != int64(len(buf)) {
				t.Fatalf("reader ok %v size %d", ok, size)
			}
			rp.Land(len(buf))
			got := make([]byte, len(buf))
			n := 0
			for n < len(buf)-1 {
				k, err := rd.Read(got[n:])
				if err != nil {
					t.Fatal(err)
				}
				n += k
			}
			if n != len(buf)-1 {
				t.Fatalf("read %d bytes before the verdict, want all but the last (%d)", n, len(buf)-1)
			}
			end(tc.ok)
			k, err := rd.Read(got[n:])
			if tc.ok && (err != nil || k != 1) {
				t.Errorf("after verification: read %d, %v; want the last byte", k, err)
			}
			if !tc.ok && err != ErrRelayFailed {
				t.Errorf("after failure: read %d, %v; want ErrRelayFailed", k, err)
			}
			// A stored piece leaves the set quietly (the piece map
			// changed instead); a failed one moves the generation, so
			// that watching children learn it is gone.
			if b, gen2, _ := r.Set("t", 4); b.Has(0) || (gen2 == gen) != tc.ok {
				t.Errorf("after the end: relaying %v gen %d (was %d)", b, gen2, gen)
			}
			if _, _, ok := r.Reader(context.Background(), "t", 0); ok {
				t.Error("a stream opened after the end")
			}
			rd.Close()
			if rp.refs != 0 {
				t.Errorf("refs %d after every holder let go", rp.refs)
			}
		})
	}
}

// A relayed stream hands bytes on a chunk at a time while the piece
// arrives in small reads, and whatever is left once all of it is in.
func TestRelayReaderChunks(t *testing.T) {
	var r Relays
	buf := make([]byte, 1<<20)
	rp, end := r.Start("t", 0, buf, nil)
	defer end(false)
	rd, _, ok := r.Reader(context.Background(), "t", 0)
	if !ok {
		t.Fatal("no reader")
	}
	defer rd.Close()
	type result struct {
		n   int
		err error
	}
	got := make(chan result, 1)
	p := make([]byte, 256<<10)
	read := func() { k, err := rd.Read(p); got <- result{k, err} }
	go read()
	// Small landings below a chunk wake nobody.
	landed := 0
	for landed+4<<10 < RelayChunk {
		landed += 4 << 10
		rp.Land(landed)
	}
	select {
	case res := <-got:
		t.Fatalf("read %d bytes (%v) before a chunk was in", res.n, res.err)
	case <-time.After(50 * time.Millisecond):
	}
	landed += 4 << 10
	rp.Land(landed)
	if res := <-got; res.err != nil || res.n != landed {
		t.Fatalf("read %d, %v; want the %d bytes landed", res.n, res.err, landed)
	}
	// Once all of it is in, the rest of the piece but its last byte.
	rp.Land(len(buf))
	go read()
	want := min(len(p), len(buf)-1-landed)
	if res := <-got; res.err != nil || res.n != want {
		t.Fatalf("read %d, %v; want %d", res.n, res.err, want)
	}
}
