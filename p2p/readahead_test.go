package p2p_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"testing"
	"time"

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
			origin, data, l := openDirect(t, size, 7)
			got, want := sha256.New(), sha256.New()
			buf := make([]byte, 128<<10)
			for _, off := range tc.offsets() {
				n, err := l.ReadAt(buf, off)
				if err != nil && err != io.EOF {
					t.Fatalf("read at %d: %v", off, err)
				}
				got.Write(buf[:n])
				want.Write(data[off : off+int64(n)])
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

// TestDirectRunStreams: in direct mode a run of adjacent pieces goes to the
// origin as one ranged GET whose pieces are stored as they arrive, so the
// first piece of a long run can be read while the origin is still sending
// the rest (it used to wait for the whole run).
func TestDirectRunStreams(t *testing.T) {
	const size, run = 32 << 20, 16 << 20
	origin, data, l := openDirect(t, size, 9)
	origin.SetUploadCap(8 << 20) // the run takes about 2 s to arrive
	t.Cleanup(func() { origin.SetUploadCap(0) })
	// One read of 16 pieces: one ranged GET of the whole run.
	long := make(chan error, 1)
	go func() {
		buf := make([]byte, run)
		_, err := l.ReadAt(buf, 0)
		if err == nil && !bytes.Equal(buf, data[:run]) {
			err = io.ErrUnexpectedEOF
		}
		long <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); origin.Requests("f") == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the long read sent no request to the origin")
		}
	}
	buf := make([]byte, 4096)
	if _, err := l.ReadAt(buf, 1000); err != nil {
		t.Fatal(err)
	}
	served := origin.BytesServed("f")
	if !bytes.Equal(buf, data[1000:1000+4096]) {
		t.Fatal("the bytes read differ from the origin's")
	}
	if err := <-long; err != nil {
		t.Fatalf("the long read: %v", err)
	}
	t.Logf("the first piece was readable after %d of the run's %d bytes; %d GETs", served, run, origin.Requests("f"))
	if served >= run/2 {
		t.Errorf("the first piece of the run was readable only after %d of its %d bytes arrived", served, run)
	}
	if n := origin.Requests("f"); n != 1 {
		t.Errorf("the origin got %d requests for the run, want 1", n)
	}
}

// openDirect opens a size-byte random file of an origin of its own for
// lazy reads in direct mode (no supernode) with prefetch off, and returns
// the origin, with its counters reset, and the file's bytes.
func openDirect(t *testing.T, size int64, seed int64) (*testenv.Origin, []byte, *p2p.Lazy) {
	t.Helper()
	origin := testenv.NewOrigin(t)
	origin.AddRandom("f", size, seed)
	data, err := io.ReadAll(testenv.RandomReader(size, seed))
	if err != nil {
		t.Fatal(err)
	}
	p := newPeer(t)
	l, err := p.OpenLazy(context.Background(), p2p.Request{URL: origin.URL("f")}, p2p.LazyOptions{Prefetch: false})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	origin.ResetCounters()
	return origin, data, l
}
