package upload_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/p2p/upload"
)

// relayTasks adds upload.Relayer to a taskMap: piece n "arrives" through a
// pipe the test writes to.
type relayTasks struct {
	*taskMap
	mu      sync.Mutex
	pipes   map[int]*io.PipeReader
	size    int64
	gen     uint64
	changed chan struct{}
}

func newRelayTasks(tm *taskMap, size int64) *relayTasks {
	return &relayTasks{taskMap: tm, pipes: map[int]*io.PipeReader{}, size: size, changed: make(chan struct{})}
}

// arrive starts piece n arriving; the test writes its bytes to w.
func (r *relayTasks) arrive(n int) *io.PipeWriter {
	pr, pw := io.Pipe()
	r.mu.Lock()
	r.pipes[n] = pr
	r.gen++
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
	return pw
}

func (r *relayTasks) Relay(ctx context.Context, taskID string, n int) (io.ReadCloser, int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pr, ok := r.pipes[n]
	return pr, r.size, ok
}

func (r *relayTasks) Relaying(taskID string, numPieces int) (manifest.Bitmap, uint64, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b manifest.Bitmap
	for n := range r.pipes {
		if b == nil {
			b = manifest.NewBitmap(numPieces)
		}
		b.Set(n)
	}
	return b, r.gen, r.changed
}

func TestServeRelayedPiece(t *testing.T) {
	tests := []struct {
		name    string
		fail    bool
		trailer string
	}{
		{"whole piece", false, "ok"},
		{"fetch fails midway", true, "failed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 0)
			want := f.piece(1)
			rt := newRelayTasks(f.tasks, int64(len(want)))
			s, hs := serve(t, rt)
			pw := rt.arrive(1)
			go func() {
				pw.Write(want[:len(want)/2])
				if tc.fail {
					pw.CloseWithError(errors.New("digest mismatch"))
					return
				}
				pw.Write(want[len(want)/2:])
				pw.Close()
			}()
			resp, err := http.Get(fmt.Sprintf("%s/peer/tasks/%s/pieces/1", hs.URL, f.id))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("read body: %v", err)
			}
			if resp.StatusCode != 200 || resp.Header.Get(upload.RelayHeader) != strconv.Itoa(len(want)) {
				t.Fatalf("status %d, relay header %q; want 200 and %d", resp.StatusCode, resp.Header.Get(upload.RelayHeader), len(want))
			}
			if got := resp.Trailer.Get(upload.RelayStatusTrailer); got != tc.trailer {
				t.Errorf("trailer %q, want %q", got, tc.trailer)
			}
			wantBody := want
			if tc.fail {
				wantBody = want[:len(want)/2]
			}
			if string(body) != string(wantBody) {
				t.Errorf("body %d bytes, want %d", len(body), len(wantBody))
			}
			if s.BytesServed() != int64(len(wantBody)) {
				t.Errorf("BytesServed %d, want %d", s.BytesServed(), len(wantBody))
			}
		})
	}
	t.Run("not arriving, or asked by range", func(t *testing.T) {
		f := newFixture(t, 0)
		rt := newRelayTasks(f.tasks, int64(len(f.piece(1))))
		_, hs := serve(t, rt)
		if r := get(t, fmt.Sprintf("%s/peer/tasks/%s/pieces/2", hs.URL, f.id)); r.status != 404 {
			t.Errorf("absent piece: status %d, want 404", r.status)
		}
		defer rt.arrive(1).Close()
		if r := do(t, http.MethodGet, fmt.Sprintf("%s/peer/tasks/%s/pieces/1", hs.URL, f.id), http.Header{"Range": {"bytes=0-9"}}); r.status != 404 {
			t.Errorf("range of an arriving piece: status %d, want 404", r.status)
		}
	})
}

func TestBitmapFollowsRelays(t *testing.T) {
	f := newFixture(t, 0)
	rt := newRelayTasks(f.tasks, int64(len(f.piece(3))))
	_, hs := serve(t, rt)
	b, _ := getBitmap(t, hs.URL, f.id, "")
	if b.Relaying != nil || b.RelayGen != 0 {
		t.Fatalf("relaying %v gen %d before anything arrives", b.Relaying, b.RelayGen)
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		rt.arrive(3)
	}()
	// Nothing new is stored: only the relay generation can end the wait.
	b, el := getBitmap(t, hs.URL, f.id, "?have=1&wait=10s&gen=0")
	if el > 8*time.Second {
		t.Errorf("answered after %v: not woken by the relayed piece", el)
	}
	if !b.Relaying.Has(3) || b.RelayGen != 1 {
		t.Errorf("relaying %v gen %d, want piece 3 and generation 1", b.Relaying, b.RelayGen)
	}
	checkBitmap(t, b, 5, 0)
}
