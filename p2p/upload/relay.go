package upload

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/damselfly-p2p/damselfly/manifest"
)

// Relayed pieces: while a node reads a piece into a buffer (a peer from its
// parent, the seed from the origin), children that ask for the piece get a
// stream of the bytes already in (Relayer), so a piece moves on without
// waiting for all of it at every hop. The bytes live only in memory until
// the piece is verified and stored, so the store's rule holds: a piece
// record is written only after the whole piece is verified. A stream holds
// back the piece's last byte until the fetching node has verified (and
// stored) the whole piece: a piece that fails verification is never handed
// on whole, its streams are cut, and the children fetch it again.

// ErrRelayFailed ends the streams of a piece whose fetch failed.
var ErrRelayFailed = errors.New("relayed piece failed (fetch cut or digest mismatch)")

// RelayPiece is one piece being fetched, readable while it arrives.
type RelayPiece struct {
	mu      sync.Mutex
	buf     []byte
	landed  int  // bytes of buf filled
	done    bool // verified and stored: all of buf is readable
	failed  bool
	free    func([]byte)  // takes buf back after the last reference
	refs    int           // the fetch plus each open reader
	changed chan struct{} // closed at the next change
	// waitFor is the least landed count a waiting reader needs (0: no
	// reader waits); land wakes readers only once it is reached.
	waitFor int
}

// RelayChunk is how many bytes a relayed stream hands on at a time (less
// at the end of the piece): a reader waits until that much has landed, so
// that a piece arriving in small network reads goes on in few large
// writes, each one wakeup and a write or two, instead of one per read.
const RelayChunk = 64 << 10

// notifyLocked wakes readers. Caller holds rp.mu.
func (rp *RelayPiece) notifyLocked() {
	close(rp.changed)
	rp.changed = make(chan struct{})
	rp.waitFor = 0
}

// Land records that buf[:n] is filled.
func (rp *RelayPiece) Land(n int) {
	rp.mu.Lock()
	if n > rp.landed {
		rp.landed = n
		if rp.waitFor > 0 && n >= rp.waitFor {
			rp.notifyLocked()
		}
	}
	rp.mu.Unlock()
}

// finish ends the fetch: ok when the piece was verified and stored.
func (rp *RelayPiece) finish(ok bool) {
	rp.mu.Lock()
	rp.done, rp.failed = ok, !ok
	rp.notifyLocked()
	rp.mu.Unlock()
}

// release drops one reference; the last one gives the buffer back.
func (rp *RelayPiece) release() {
	rp.mu.Lock()
	rp.refs--
	last := rp.refs == 0
	rp.mu.Unlock()
	if last && rp.free != nil {
		rp.free(rp.buf)
	}
}

// relayReader streams a RelayPiece from the start, following the writer.
type relayReader struct {
	ctx    context.Context
	rp     *RelayPiece
	off    int
	closed bool
}

func (r *relayReader) Read(p []byte) (int, error) {
	rp := r.rp
	for {
		rp.mu.Lock()
		readable := rp.landed
		if !rp.done && readable == len(rp.buf) {
			readable-- // held back until verified
		}
		switch {
		case rp.failed:
			rp.mu.Unlock()
			return 0, ErrRelayFailed
		case r.off >= len(rp.buf):
			rp.mu.Unlock()
			return 0, io.EOF
		case r.off < readable && (readable-r.off >= min(len(p), RelayChunk) || rp.landed == len(rp.buf)):
			// A chunk, or all there is until the piece is verified.
			n := copy(p, rp.buf[r.off:readable])
			r.off += n
			rp.mu.Unlock()
			return n, nil
		}
		// Wake at the next chunk (or, near the end, once all of the
		// piece is in; finish wakes everyone anyway).
		need := min(r.off+max(1, min(len(p), RelayChunk)), len(rp.buf))
		if rp.waitFor == 0 || need < rp.waitFor {
			rp.waitFor = need
		}
		ch := rp.changed
		rp.mu.Unlock()
		select {
		case <-ch:
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
	}
}

func (r *relayReader) Close() error {
	if !r.closed {
		r.closed = true
		r.rp.release()
	}
	return nil
}

// relays are the pieces this peer is fetching, by task, with a generation
// per task that changes whenever the set does (the piece map long-poll
// waits on it). A task's entry lives until the peer stops serving the task
// (forget).
type Relays struct {
	mu    sync.Mutex
	tasks map[string]*taskRelays
	seq   uint64 // last generation handed out, over all tasks
}

type taskRelays struct {
	pieces  map[int]*RelayPiece
	gen     uint64
	changed chan struct{}
}

// taskLocked returns taskID's entry, creating it. Caller holds r.mu.
func (r *Relays) taskLocked(taskID string) *taskRelays {
	if r.tasks == nil {
		r.tasks = map[string]*taskRelays{}
	}
	tr := r.tasks[taskID]
	if tr == nil {
		tr = &taskRelays{pieces: map[int]*RelayPiece{}, changed: make(chan struct{})}
		r.tasks[taskID] = tr
	}
	return tr
}

// bumpLocked moves tr to a new generation (never reused, even by a task
// entry made again after forget) and wakes its waiters. Caller holds r.mu.
func (r *Relays) bumpLocked(tr *taskRelays) {
	r.seq++
	tr.gen = r.seq
	close(tr.changed)
	tr.changed = make(chan struct{})
}

// Start registers piece n of taskID as arriving into buf (which the relay
// now owns: free, if not nil, gets it back after the last reader). end must be
// called once with the fetch's outcome, after the piece is stored if ok.
func (r *Relays) Start(taskID string, n int, buf []byte, free func([]byte)) (rp *RelayPiece, end func(ok bool)) {
	rp = &RelayPiece{buf: buf, free: free, refs: 1, changed: make(chan struct{})}
	r.mu.Lock()
	tr := r.taskLocked(taskID)
	tr.pieces[n] = rp
	r.bumpLocked(tr)
	r.mu.Unlock()
	return rp, func(ok bool) {
		rp.finish(ok)
		r.mu.Lock()
		if tr.pieces[n] == rp {
			delete(tr.pieces, n)
			// A piece that was stored moves from the relayed set to the
			// piece map, which has changed already (waking the long
			// polls): what a child may ask for is the same, so the
			// generation stays (one answer to every watching child per
			// piece fewer). A failed one is gone: children must learn it.
			if !ok {
				r.bumpLocked(tr)
			}
		}
		r.mu.Unlock()
		rp.release()
	}
}

// Forget drops taskID's entry once no download of it runs (its pieces are
// all ended), waking whoever waits on it.
func (r *Relays) Forget(taskID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if tr := r.tasks[taskID]; tr != nil && len(tr.pieces) == 0 {
		r.bumpLocked(tr)
		delete(r.tasks, taskID)
	}
}

// Reader opens a stream of piece n of taskID if it is arriving now.
func (r *Relays) Reader(ctx context.Context, taskID string, n int) (io.ReadCloser, int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	tr := r.tasks[taskID]
	if tr == nil {
		return nil, 0, false
	}
	rp := tr.pieces[n]
	if rp == nil {
		return nil, 0, false
	}
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if rp.failed || rp.done {
		return nil, 0, false
	}
	rp.refs++
	return &relayReader{ctx: ctx, rp: rp}, int64(len(rp.buf)), true
}

// Set returns the pieces of taskID arriving now (nil: none), the
// generation, and a channel closed at the next change.
func (r *Relays) Set(taskID string, numPieces int) (manifest.Bitmap, uint64, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	tr := r.taskLocked(taskID)
	var b manifest.Bitmap
	for n := range tr.pieces {
		if n < numPieces {
			if b == nil {
				b = manifest.NewBitmap(numPieces)
			}
			b.Set(n)
		}
	}
	return b, tr.gen, tr.changed
}

// State is how far piece n of taskID has arrived and how many streams of
// it are open (0, 0 when it is not arriving).
func (r *Relays) State(taskID string, n int) (landed, readers int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	tr := r.tasks[taskID]
	if tr == nil || tr.pieces[n] == nil {
		return 0, 0
	}
	rp := tr.pieces[n]
	rp.mu.Lock()
	defer rp.mu.Unlock()
	return rp.landed, rp.refs - 1
}
