package p2p_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/p2p"
	"github.com/damselfly-p2p/damselfly/testenv"
)

// memRange is a RangeSource in memory that counts its reads; down makes
// every read fail.
type memRange struct {
	data  []byte
	reads atomic.Int64
	down  atomic.Bool
}

func (m *memRange) Identity() string { return "mem test content" }
func (m *memRange) Size() int64      { return int64(len(m.data)) }
func (m *memRange) GetRange(ctx context.Context, off, n int64) (io.ReadCloser, error) {
	if m.down.Load() {
		return nil, errors.New("source down")
	}
	m.reads.Add(1)
	return io.NopCloser(bytes.NewReader(m.data[off : off+n])), nil
}

// TestLazyRange reads a RangeSource lazily: only the touched pieces are
// fetched from it, and a reopen with the source down serves them.
func TestLazyRange(t *testing.T) {
	data, err := io.ReadAll(testenv.RandomReader(5<<20+333, 18))
	if err != nil {
		t.Fatal(err)
	}
	src := &memRange{data: data}
	p := newPeer(t)
	ctx := context.Background()
	req := p2p.Request{URL: "s3://bkt/dir/"}
	l, err := p.OpenLazy(ctx, req, p2p.LazyOptions{Range: src})
	if err != nil {
		t.Fatal(err)
	}
	if l.TaskID() != p2p.RangeTaskID(src, "") || l.Size() != src.Size() || l.Mode() != "direct" {
		t.Fatalf("task %s of %d bytes, mode %s", l.TaskID(), l.Size(), l.Mode())
	}
	read := func(l *p2p.Lazy, off, n int64) error {
		buf := make([]byte, n)
		if _, err := l.ReadAt(buf, off); err != nil {
			return err
		}
		if !bytes.Equal(buf, data[off:off+n]) {
			t.Fatalf("read of %d bytes at %d differs", n, off)
		}
		return nil
	}
	for _, off := range []int64{10, 3<<20 + 5} {
		if err := read(l, off, 1000); err != nil {
			t.Fatal(err)
		}
	}
	if n := src.reads.Load(); n != 2 {
		t.Errorf("2 reads in 2 pieces cost %d source reads", n)
	}
	l.Close()

	src.down.Store(true)
	l, err = p.OpenLazy(ctx, req, p2p.LazyOptions{Range: src, ReadTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := read(l, 100, 5000); err != nil {
		t.Fatalf("reopened with the source down, a stored piece: %v", err)
	}
	if err := read(l, 2<<20, 10); err == nil {
		t.Fatal("a missing piece was read with the source down")
	}
}
