package p2p

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/testenv"
	"github.com/damselfly-p2p/damselfly/wire"
)

// relayFixture is a task of a few pieces whose piece 0 is fetched through
// a chain: upstream (a test server) -> relay peer -> child peer.
type relayFixture struct {
	id      string
	content []byte
	layout  manifest.Layout
	digests []string
}

func newRelayFixture() *relayFixture {
	const length = 3<<20 + 123
	f := &relayFixture{id: strings.Repeat("ab", 32), layout: manifest.Layout{Length: length, PieceSize: manifest.PieceSizeFor(length)}}
	f.content = make([]byte, length)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range f.content {
		f.content[i] = byte(r.Uint32())
	}
	for i := 0; i < f.layout.NumPieces(); i++ {
		off, n := f.layout.PieceRange(i)
		s := sha256.Sum256(f.content[off : off+n])
		f.digests = append(f.digests, "sha256:"+hex.EncodeToString(s[:]))
	}
	return f
}

func (f *relayFixture) piece(i int) []byte {
	off, n := f.layout.PieceRange(i)
	return f.content[off : off+n]
}

// slowUpstream serves piece 0 as a parent would: the first half of body at
// once, the rest after release is closed.
func slowUpstream(t *testing.T, body []byte) (addr string, release func()) {
	t.Helper()
	ch := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/pieces/0") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		w.Write(body[:len(body)/2])
		http.NewResponseController(w).Flush()
		select {
		case <-ch:
		case <-r.Context().Done():
			return
		}
		w.Write(body[len(body)/2:])
	}))
	var once bool
	release = func() {
		if !once {
			once = true
			close(ch)
		}
	}
	t.Cleanup(func() { release(); srv.Close() })
	return srv.Listener.Addr().String(), release
}

func relayPeer(t *testing.T) *Peer {
	t.Helper()
	p, err := New(Config{DataDir: t.TempDir(), UploadListen: "127.0.0.1:0", Log: testenv.QuietLogger()})
	if err != nil {
		t.Fatalf("p2p.New: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// relayDownload opens f's task in p as a download with the given parents.
func relayDownload(t *testing.T, p *Peer, f *relayFixture, parents ...wire.Parent) *download {
	t.Helper()
	reg := &wire.RegisterResponse{TaskID: f.id, Length: f.layout.Length, PieceSize: f.layout.PieceSize, Digests: f.digests, Parents: parents}
	d, err := p.newDownload(context.Background(), f.id, Request{URL: "http://127.0.0.1:1/f"}, reg, &counters{}, testenv.QuietLogger())
	if err != nil {
		t.Fatalf("open download: %v", err)
	}
	t.Cleanup(d.release)
	return d
}

// startFetch fetches piece 0 from parent id as the dispatcher would; the
// channel is closed when the fetch is over.
func startFetch(ctx context.Context, d *download, id string) <-chan struct{} {
	d.mu.Lock()
	par := d.parents[id]
	d.inflight[0] = true
	par.inflight++
	d.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.fetch(ctx, 0, par)
	}()
	return done
}

// waitFor polls cond until it holds or ctx ends (a failure then).
func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// relayState is how far piece 0 of taskID has arrived at p and how many
// streams of it are open (0, 0 when it is not arriving).
func relayState(p *Peer, taskID string) (landed, readers int) {
	return p.relays.State(taskID, 0)
}

// streamHalf starts a child's fetch of piece 0 from the relay while the
// relay has only the first half of it, and waits until that half reached
// the child: the relay is cutting through.
func streamHalf(ctx context.Context, t *testing.T, f *relayFixture, relay *Peer, child *download, relayID string) <-chan struct{} {
	t.Helper()
	half := len(f.piece(0)) / 2
	waitFor(ctx, t, "the relay to receive the first half", func() bool { l, _ := relayState(relay, f.id); return l >= half })
	done := startFetch(ctx, child, relayID)
	waitFor(ctx, t, "the child to receive the first half through the relay", func() bool {
		l, _ := relayState(child.p, f.id)
		return l >= half
	})
	if l, _ := relayState(relay, f.id); l != half {
		t.Fatalf("relay has %d bytes of piece 0, want only the first half (%d) while the child streams", l, half)
	}
	return done
}

func storedPiece(t *testing.T, d *download, f *relayFixture) []byte {
	t.Helper()
	if !d.t.Has(0) {
		return nil
	}
	off, n := f.layout.PieceRange(0)
	b := make([]byte, n)
	if _, err := d.t.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

func reported(d *download, id, reason string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range d.bad {
		if r.PeerID == id && r.Reason == reason {
			return true
		}
	}
	return false
}

// A relayed piece that turns out corrupt is never stored, neither by the
// relay nor by its child; the relay reports its parent as corrupt; the
// child gets the right bytes from the next relay of the piece.
func TestRelayCorruptPieceRefetched(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f := newRelayFixture()
	bad := bytes.Clone(f.piece(0))
	bad[len(bad)-1] ^= 0xff // only the last byte tells
	badUp, releaseBad := slowUpstream(t, bad)
	relay, child := relayPeer(t), relayPeer(t)
	dr := relayDownload(t, relay, f, wire.Parent{PeerID: "bad", Addr: badUp})
	dc := relayDownload(t, child, f, wire.Parent{PeerID: "relay", Addr: relay.UploadAddr()})

	relayDone := startFetch(ctx, dr, "bad")
	childDone := streamHalf(ctx, t, f, relay, dc, "relay")
	releaseBad()
	<-relayDone
	<-childDone
	if dr.t.Has(0) || dc.t.Has(0) {
		t.Fatalf("corrupt piece stored: relay %v, child %v", dr.t.Has(0), dc.t.Has(0))
	}
	if !reported(dr, "bad", wire.ReasonCorrupt) {
		t.Errorf("relay did not report its parent as corrupt; reports %+v", dr.bad)
	}
	if got := dc.c.fromPeers.Load(); got != 0 {
		t.Errorf("child counted %d bytes from peers for a piece it did not store", got)
	}
	dc.mu.Lock()
	if par := dc.parents["relay"]; par.failures != 0 || par.dropped || len(dc.bad) != 0 {
		t.Errorf("child blamed the relay for its parent's corrupt piece: failures %d, dropped %v, reports %+v", par.failures, par.dropped, dc.bad)
	}
	dc.mu.Unlock()

	// The relay gets the piece from a good parent; the child, streaming
	// it through the relay again, ends with the right bytes.
	goodUp, releaseGood := slowUpstream(t, f.piece(0))
	dr.addParents([]wire.Parent{{PeerID: "good", Addr: goodUp}})
	relayDone = startFetch(ctx, dr, "good")
	childDone = streamHalf(ctx, t, f, relay, dc, "relay")
	releaseGood()
	<-relayDone
	<-childDone
	if got := storedPiece(t, dr, f); !bytes.Equal(got, f.piece(0)) {
		t.Fatalf("relay stored %d bytes, not the right piece", len(got))
	}
	if got := storedPiece(t, dc, f); !bytes.Equal(got, f.piece(0)) {
		t.Fatalf("child stored %d bytes, not the right piece", len(got))
	}
	if got, want := dc.c.fromPeers.Load(), int64(len(f.piece(0))); got != want {
		t.Errorf("child counted %d bytes from peers, want %d", got, want)
	}
	waitFor(ctx, t, "the relay to free the piece", func() bool { _, r := relayState(relay, f.id); return r == 0 })
}

// A relaying parent that dies mid-piece costs its child nothing but a
// retry: nothing partial is stored, and the piece comes whole from
// elsewhere.
func TestRelayParentKilledMidPiece(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f := newRelayFixture()
	up, release := slowUpstream(t, f.piece(0))
	relay, child := relayPeer(t), relayPeer(t)
	dr := relayDownload(t, relay, f, wire.Parent{PeerID: "up", Addr: up})
	dc := relayDownload(t, child, f, wire.Parent{PeerID: "relay", Addr: relay.UploadAddr()})

	relayDone := startFetch(ctx, dr, "up")
	childDone := streamHalf(ctx, t, f, relay, dc, "relay")
	// Kill the relay's upload side: every connection to it is cut.
	relay.httpSrv.Close()
	<-childDone
	if dc.t.Has(0) {
		t.Fatal("child stored piece 0 from a cut stream")
	}
	if l, _ := relayState(child, f.id); l != 0 {
		t.Errorf("child still has a piece 0 arriving (%d bytes)", l)
	}
	dc.mu.Lock()
	if par := dc.parents["relay"]; par.failures == 0 && !par.dropped {
		t.Error("child did not count the cut stream against the relay")
	}
	dc.mu.Unlock()
	release()
	<-relayDone

	// The child fetches the piece whole from another parent.
	other, releaseOther := slowUpstream(t, f.piece(0))
	releaseOther()
	dc.addParents([]wire.Parent{{PeerID: "other", Addr: other}})
	<-startFetch(ctx, dc, "other")
	if got := storedPiece(t, dc, f); !bytes.Equal(got, f.piece(0)) {
		t.Fatalf("child stored %d bytes, not the right piece", len(got))
	}
	if v, err := dc.t.Verify(); err != nil || len(v) != 0 {
		t.Errorf("child store verify: bad %v, err %v", v, err)
	}
}
