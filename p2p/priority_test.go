package p2p_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/p2p"
	"github.com/damselfly-p2p/damselfly/supernode"
	"github.com/damselfly-p2p/damselfly/testenv"
)

// gatedOrigin serves content with ranges and logs the first byte of every
// ranged GET; once armed, each such request waits until the gate opens.
type gatedOrigin struct {
	content []byte
	mu      sync.Mutex
	log     []int64 // range starts, in the order received
	blocked int
	armed   bool
	gate    chan struct{}
}

func (o *gatedOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rg := r.Header.Get("Range"); r.Method == http.MethodGet && rg != "" {
		start, _ := strconv.ParseInt(strings.TrimSuffix(strings.SplitN(strings.TrimPrefix(rg, "bytes="), "-", 2)[0], ","), 10, 64)
		o.mu.Lock()
		o.log = append(o.log, start)
		armed := o.armed
		if armed {
			o.blocked++
		}
		o.mu.Unlock()
		if armed {
			select {
			case <-o.gate:
			case <-r.Context().Done():
				return
			}
		}
	}
	http.ServeContent(w, r, "", testenv.OriginModTime, bytes.NewReader(o.content))
}

func (o *gatedOrigin) snapshot() (log []int64, blocked int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]int64(nil), o.log...), o.blocked
}

// waitFor polls cond until it holds; the deadline only bounds a failing
// test, nothing is asserted about time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("gave up waiting for %s", what)
}

// TestReadsBeforeBackgroundAtTheOrigin shows the priority order itself,
// from the requests the origin receives: while the background fetch of a
// lazily read file is in flight (its whole window held at the origin), a
// read of a piece not fetched yet reaches the origin before any background
// piece requested after it.
func TestReadsBeforeBackgroundAtTheOrigin(t *testing.T) {
	content, err := io.ReadAll(testenv.RandomReader(48<<20, 7))
	if err != nil {
		t.Fatal(err)
	}
	o := &gatedOrigin{content: content, gate: make(chan struct{})}
	srv := httptest.NewServer(o)
	t.Cleanup(srv.Close)
	var gateOnce sync.Once
	openGate := func() { gateOnce.Do(func() { close(o.gate) }) }
	t.Cleanup(openGate)
	const fillWindow = 2
	sn := startSupernode(t, func(c *supernode.Config) { c.OriginConcurrency = fillWindow })
	p := newPeer(t, sn)

	ctx := context.Background()
	l, err := p.OpenLazy(ctx, p2p.Request{URL: srv.URL + "/big.bin"}, p2p.LazyOptions{Prefetch: true, PrefetchDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	pieceSize := l.Task().Layout().PieceSize
	n := l.Task().NumPieces()
	if n < fillWindow+4 {
		t.Fatalf("only %d pieces of %d bytes", n, pieceSize)
	}
	// A first read, served on demand; then every origin request waits.
	buf := make([]byte, 100)
	if _, err := l.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, content[:100]) {
		t.Fatalf("first read: %v", err)
	}
	o.mu.Lock()
	o.armed = true
	o.mu.Unlock()
	// The background fetch starts and fills the seed's whole window.
	waitFor(t, "the background fill to hold its window at the origin", func() bool {
		_, blocked := o.snapshot()
		return blocked >= fillWindow
	})
	before, _ := o.snapshot()
	last := int64(n-1) * pieceSize
	readDone := make(chan error, 1)
	go func() {
		b := make([]byte, 10)
		_, err := l.ReadAt(b, last)
		if err == nil && !bytes.Equal(b, content[last:last+10]) {
			err = fmt.Errorf("read wrong bytes at %d", last)
		}
		readDone <- err
	}()
	waitFor(t, "the read's piece at the origin", func() bool {
		log, _ := o.snapshot()
		for _, s := range log[len(before):] {
			if s == last {
				return true
			}
		}
		return false
	})
	log, _ := o.snapshot()
	if after := log[len(before):]; after[0] != last {
		t.Fatalf("after the read was issued the origin got %v first; want the read's piece at %d before any background piece", after, last)
	}
	openGate()
	if err := <-readDone; err != nil {
		t.Fatal(err)
	}
	for i, s := range log {
		if s%pieceSize != 0 {
			t.Errorf("request %d starts at %d, not a piece boundary", i, s)
		}
	}
}
