package p2p_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/damselfly-p2p/damselfly/p2p"
	"github.com/damselfly-p2p/damselfly/testenv"
)

// TestDirectReadPatterns reads a file in direct mode (no supernode) as a
// sequential reader and as a random one, with prefetch off so that only
// what reads cause reaches the origin. A sequential reader's reads, not
// aligned to pieces (as the kernel sends them: 128 KiB), are recognized
// and its pieces fetched ahead in long ranged requests; random reads fetch
// only the pieces they touch.
func TestDirectReadPatterns(t *testing.T) {
	const size = 48<<20 + 12345
	tests := []struct {
		name    string
		offsets func() []int64
		// maxRequests bounds the origin's GETs (the probe included);
		// wantBytes, when not 0, is the exact bytes it may serve.
		maxRequests int
		wantBytes   int64
	}{
		{name: "sequential, 128 KiB reads", offsets: func() []int64 {
			var offs []int64
			for off := int64(0); off < size; off += 128 << 10 {
				offs = append(offs, off)
			}
			return offs
		}, maxRequests: 49 / 4},
		{name: "random, far apart", offsets: func() []int64 {
			r := rand.New(rand.NewPCG(1, 2))
			var offs []int64
			for _, piece := range r.Perm(48)[:6] {
				offs = append(offs, int64(piece)<<20+4096)
			}
			return offs
		}, maxRequests: 6 + 1, wantBytes: 6 << 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			origin := testenv.NewOrigin(t)
			origin.AddRandom("f", size, 7)
			var data bytes.Buffer
			if _, err := io.Copy(&data, testenv.RandomReader(size, 7)); err != nil {
				t.Fatal(err)
			}
			p := newPeer(t)
			l, err := p.OpenLazy(context.Background(), p2p.Request{URL: origin.URL("f")}, p2p.LazyOptions{Prefetch: false})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			origin.ResetCounters()
			got, want := sha256.New(), sha256.New()
			buf := make([]byte, 128<<10)
			for _, off := range tc.offsets() {
				n, err := l.ReadAt(buf, off)
				if err != nil && err != io.EOF {
					t.Fatalf("read at %d: %v", off, err)
				}
				got.Write(buf[:n])
				want.Write(data.Bytes()[off : off+int64(n)])
			}
			if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
				t.Fatal("the bytes read differ from the origin's")
			}
			reqs, served := origin.Requests("f"), origin.BytesServed("f")
			t.Logf("%d requests, %d bytes from the origin", reqs, served)
			if reqs > tc.maxRequests {
				t.Errorf("the origin got %d requests, want at most %d", reqs, tc.maxRequests)
			}
			if tc.wantBytes != 0 && served != tc.wantBytes {
				t.Errorf("the origin served %d bytes, want %d (only the pieces read)", served, tc.wantBytes)
			}
		})
	}
}
