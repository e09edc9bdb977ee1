package cache

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/manifest"
)

// sumSize is the size of a piece record in the pieces file.
const sumSize = len(Sum{})

// touchInterval throttles Touch.
const touchInterval = time.Second

// Task is an open task of a Store. It is shared by every caller that opened
// it in this process, each of which must Close it once. It is safe for
// concurrent use by many goroutines.
type Task struct {
	store *Store
	id    string
	dir   string
	lock  *os.File // holds the flock of the task directory
	refs  int      // guarded by store.mu

	// ioMu is held shared by every operation using the files, and
	// exclusively by Reset and the final close, which replace or close them.
	ioMu sync.RWMutex
	// metaMu serializes rewrites of meta.json.
	metaMu sync.Mutex

	mu           sync.Mutex // guards the fields below
	closed       bool       // also only set with ioMu held exclusively
	meta         Meta
	layout       manifest.Layout
	bitmap       manifest.Bitmap
	sums         []Sum
	bytesPresent int64
	writing      map[int]chan struct{} // pieces whose data is being written
	changed      chan struct{}         // closed at the next arrival
	lastTouch    time.Time
	data         *os.File
	pieces       *os.File

	// Rot detection (rot.go): checked marks the pieces re-hashed (or
	// written) since the data file last changed behind the store's back;
	// lastOwn is when the store last finished writing the data file,
	// inflight how many of its writes are under way, seen the modification
	// time of the last outside change noticed.
	checked  manifest.Bitmap
	lastOwn  time.Time
	inflight int
	seen     time.Time
}

// openFiles opens the data and pieces files for meta m, sizes them and loads
// the piece records.
func (t *Task) openFiles(m Meta) (err error) {
	l := m.Layout()
	n := l.NumPieces()
	data, err := openSized(filepath.Join(t.dir, dataFile), l.Length)
	if err != nil {
		return err
	}
	pieces, err := openSized(filepath.Join(t.dir, piecesFile), int64(n)*int64(sumSize))
	if err != nil {
		data.Close()
		return err
	}
	records := make([]byte, n*sumSize)
	if _, err := pieces.ReadAt(records, 0); err != nil && !(err == io.EOF && len(records) == 0) {
		data.Close()
		pieces.Close()
		return fmt.Errorf("read %s: %w", piecesFile, err)
	}
	t.meta, t.layout, t.data, t.pieces = m, l, data, pieces
	t.sums = make([]Sum, n)
	t.bitmap = manifest.NewBitmap(n)
	// Nothing stored before this open is trusted until re-hashed.
	t.checked = manifest.NewBitmap(n)
	t.lastOwn = time.Now()
	t.writing = make(map[int]chan struct{})
	for i := range t.sums {
		t.sums[i] = Sum(records[i*sumSize:])
		if !t.sums[i].IsZero() {
			t.bitmap.Set(i)
			_, size := l.PieceRange(i)
			t.bytesPresent += size
		}
	}
	return nil
}

// openSized opens (creating it) a read-write file and truncates it to size.
func openSized(path string, size int64) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, fileMode)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && fi.Size() != size {
		err = f.Truncate(size)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// closeFiles closes the data and pieces files.
func (t *Task) closeFiles() error {
	return errors.Join(t.data.Close(), t.pieces.Close())
}

// shutdown closes the task for good: it wakes waiters, flushes the files,
// removes the dirty marker if everything reached the disk, closes the files
// and releases the lock.
func (t *Task) shutdown() error {
	t.ioMu.Lock()
	defer t.ioMu.Unlock()
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	close(t.changed)
	t.mu.Unlock()

	os.Chtimes(filepath.Join(t.dir, metaFile), time.Time{}, time.Now())
	flushErr := errors.Join(fdatasync(t.data), fdatasync(t.pieces))
	errs := []error{flushErr, t.closeFiles()}
	if flushErr == nil {
		// Clean: the records match the data on disk.
		if err := os.Remove(filepath.Join(t.dir, dirtyFile)); err != nil && !os.IsNotExist(err) {
			errs = append(errs, err)
		} else {
			errs = append(errs, syncDir(t.dir))
		}
	}
	errs = append(errs, unlockClose(t.lock))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close task %s: %w", t.id, err)
	}
	return nil
}

// Close releases the caller's reference; the last one removes the dirty
// marker, closes the files and releases the task lock. Closing a task the
// store already closed returns nil.
func (t *Task) Close() error { return t.store.release(t) }

// ID returns the task ID.
func (t *Task) ID() string { return t.id }

// Meta returns the task's metadata.
func (t *Task) Meta() Meta {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.meta
}

// Layout returns the piece layout.
func (t *Task) Layout() manifest.Layout {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.layout
}

// NumPieces returns the number of pieces of the task.
func (t *Task) NumPieces() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.sums)
}

// Has reports whether piece i is present.
func (t *Task) Has(i int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.bitmap.Has(i)
}

// Bitmap returns a copy of the bitmap of pieces present.
func (t *Task) Bitmap() manifest.Bitmap {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.bitmap.Clone()
}

// Count returns the number of pieces present.
func (t *Task) Count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.bitmap.Count()
}

// BytesPresent returns the total length of the pieces present.
func (t *Task) BytesPresent() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.bytesPresent
}

// Complete reports whether all pieces are present (always true for an empty
// task).
func (t *Task) Complete() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.bitmap.Full(len(t.sums))
}

// PieceDigest returns the recorded digest of piece i and whether the piece is
// present.
func (t *Task) PieceDigest(i int) (Sum, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.bitmap.Has(i) {
		return Sum{}, false
	}
	return t.sums[i], true
}

// DataPath returns the path of the sparse data file.
func (t *Task) DataPath() string { return filepath.Join(t.dir, dataFile) }

// errClosed reports an operation on a closed task.
func (t *Task) errClosed(op string) error {
	return fmt.Errorf("%s of task %s: %w", op, t.id, os.ErrClosed)
}

// WritePiece stores piece i. It fails with ErrBadPiece if i is out of range or
// len(data) is not the piece's length, and with ErrDigestMismatch if
// SumOf(data) != want; nothing is written then. A piece already present is
// left alone (nil). The data is written before its record, so that a crash
// never leaves a record without its data; with WithSync the data is also
// flushed first. Once recorded, Wait and Changed waiters are woken. A failed
// write (ENOSPC...) leaves the piece unrecorded.
func (t *Task) WritePiece(i int, data []byte, want Sum) error {
	return t.writePiece(i, data, want, SumOf(data))
}

// PutPiece computes the digest of data itself (for the seed, which reads the
// origin), then stores it as WritePiece does.
func (t *Task) PutPiece(i int, data []byte) (Sum, error) {
	sum := SumOf(data)
	return sum, t.writePiece(i, data, sum, sum)
}

// writePiece implements WritePiece; got is SumOf(data).
func (t *Task) writePiece(i int, data []byte, want, got Sum) error {
	t.ioMu.RLock()
	defer t.ioMu.RUnlock()
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return t.errClosed(fmt.Sprintf("write piece %d", i))
	}
	l, n := t.layout, len(t.sums)
	t.mu.Unlock()
	if i < 0 || i >= n {
		return fmt.Errorf("write piece %d of task %s: index out of range [0,%d): %w", i, t.id, n, ErrBadPiece)
	}
	off, size := l.PieceRange(i)
	if int64(len(data)) != size {
		return fmt.Errorf("write piece %d of task %s: got %d bytes, want %d: %w", i, t.id, len(data), size, ErrBadPiece)
	}
	if got != want {
		return fmt.Errorf("write piece %d of task %s: got %s, want %s: %w", i, t.id, got, want, ErrDigestMismatch)
	}

	// Claim the piece: one writer at a time, so that the data on disk is
	// the data whose digest gets recorded.
	t.mu.Lock()
	for {
		if t.bitmap.Has(i) {
			t.mu.Unlock()
			return nil
		}
		ch := t.writing[i]
		if ch == nil {
			break
		}
		t.mu.Unlock()
		<-ch
		t.mu.Lock()
	}
	done := make(chan struct{})
	t.writing[i] = done
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.writing, i)
		t.mu.Unlock()
		close(done)
	}()

	if err := t.writeData(data, off); err != nil {
		return fmt.Errorf("write piece %d of task %s: %w", i, t.id, err)
	}
	if t.store.opts.sync {
		if err := fdatasync(t.data); err != nil {
			return fmt.Errorf("write piece %d of task %s: sync data: %w", i, t.id, err)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, err := t.pieces.WriteAt(got[:], int64(i)*int64(sumSize)); err != nil {
		// A short write may have left part of the record: clear it.
		t.pieces.WriteAt(make([]byte, sumSize), int64(i)*int64(sumSize))
		return fmt.Errorf("write piece %d of task %s: record digest: %w", i, t.id, err)
	}
	t.sums[i] = got
	t.bitmap.Set(i)
	t.checked.Set(i)
	t.bytesPresent += size
	t.notifyLocked()
	return nil
}

// notifyLocked wakes the Changed and Wait waiters. t.mu must be held and the
// task must not be closed.
func (t *Task) notifyLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// ReadAt reads from the data file with io.ReaderAt semantics. It does not
// check that the pieces covering [off, off+len(p)) are present: absent ones
// read as zeros or stale bytes.
func (t *Task) ReadAt(p []byte, off int64) (int, error) {
	t.ioMu.RLock()
	defer t.ioMu.RUnlock()
	if t.closed {
		return 0, t.errClosed("read")
	}
	return t.data.ReadAt(p, off)
}

// PieceReader returns a reader of piece i, or an error wrapping ErrNotFound if
// the piece is absent. A piece not re-hashed since the data file changed
// behind the store's back is re-hashed first; if it no longer matches its
// record it is dropped (to be fetched again) and the error wraps both
// ErrCorrupt and ErrNotFound.
func (t *Task) PieceReader(i int) (*io.SectionReader, error) {
	t.ioMu.RLock()
	defer t.ioMu.RUnlock()
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, t.errClosed(fmt.Sprintf("read piece %d", i))
	}
	if !t.bitmap.Has(i) {
		t.mu.Unlock()
		return nil, fmt.Errorf("piece %d of task %s: %w", i, t.id, ErrNotFound)
	}
	off, n := t.layout.PieceRange(i)
	t.mu.Unlock()
	bad, err := t.checkLocked([]int{i})
	if err != nil {
		return nil, fmt.Errorf("read piece %d: %w", i, err)
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("piece %d of task %s: %w, dropped: %w", i, t.id, ErrCorrupt, ErrNotFound)
	}
	return io.NewSectionReader(t, off, n), nil
}

// Wait returns nil once piece i is present, or ctx.Err() if ctx is done
// first. It fails at once if i is out of range (ErrBadPiece) or the task is
// closed (os.ErrClosed).
func (t *Task) Wait(ctx context.Context, i int) error {
	for {
		t.mu.Lock()
		switch {
		case t.bitmap.Has(i):
			t.mu.Unlock()
			return nil
		case t.closed:
			t.mu.Unlock()
			return t.errClosed(fmt.Sprintf("wait for piece %d", i))
		case i < 0 || i >= len(t.sums):
			n := len(t.sums)
			t.mu.Unlock()
			return fmt.Errorf("wait for piece %d of task %s: index out of range [0,%d): %w", i, t.id, n, ErrBadPiece)
		}
		ch := t.changed
		t.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Changed returns a channel closed at the next piece arrival or Reset; call it
// again for the one after. Once the task is closed it returns a closed
// channel.
func (t *Task) Changed() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.changed
}

// Reset drops all pieces and adopts meta (the origin content changed). An
// empty meta.TaskID means the task's ID; CreatedAt, PieceSize and URL are
// normalized as by Store.Create. Changed waiters are woken.
func (t *Task) Reset(meta Meta) error {
	if meta.TaskID == "" {
		meta.TaskID = t.id
	}
	if meta.TaskID != t.id {
		return fmt.Errorf("reset task %s: meta names task %s", t.id, meta.TaskID)
	}
	if err := meta.normalize(); err != nil {
		return fmt.Errorf("reset task %s: %w", t.id, err)
	}
	t.ioMu.Lock()
	defer t.ioMu.Unlock()
	if t.closed {
		return t.errClosed("reset")
	}
	t.metaMu.Lock()
	defer t.metaMu.Unlock()
	wrap := func(err error) error { return fmt.Errorf("reset task %s: %w", t.id, err) }

	// Drop the records first: whatever happens next, no piece is recorded.
	if err := t.pieces.Truncate(0); err != nil {
		return wrap(err)
	}
	t.mu.Lock()
	for i := range t.sums {
		t.sums[i] = Sum{}
	}
	t.bitmap = manifest.NewBitmap(len(t.sums))
	t.bytesPresent = 0
	t.notifyLocked()
	t.mu.Unlock()

	l := meta.Layout()
	n := l.NumPieces()
	// Truncating to 0 first releases the old blocks of the sparse file.
	if err := t.data.Truncate(0); err != nil {
		return wrap(err)
	}
	if err := t.data.Truncate(l.Length); err != nil {
		return wrap(err)
	}
	if err := t.pieces.Truncate(int64(n) * int64(sumSize)); err != nil {
		return wrap(err)
	}
	if err := writeMeta(t.dir, meta); err != nil {
		return wrap(fmt.Errorf("write meta: %w", err))
	}
	t.mu.Lock()
	t.meta, t.layout = meta, l
	t.sums = make([]Sum, n)
	t.bitmap = manifest.NewBitmap(n)
	t.checked = manifest.NewBitmap(n)
	t.lastOwn = time.Now()
	t.notifyLocked()
	t.mu.Unlock()
	return nil
}

// adopt is Store.Create on a task already open in this process: reset it if
// meta describes other content, else complete its meta.
func (t *Task) adopt(meta Meta) error {
	cur := t.Meta()
	if why := meta.conflicts(cur); why != "" {
		t.store.opts.log.WithFields(logrus.Fields{"task": t.id, "url": meta.URL}).
			Infof("cache: content changed (%s), dropping stored pieces", why)
		return t.Reset(meta)
	}
	return t.updateMeta("update meta", func(m *Meta) { *m, _ = meta.merge(*m) })
}

// updateMeta applies f to the meta and rewrites meta.json if that changed it.
func (t *Task) updateMeta(op string, f func(*Meta)) error {
	t.ioMu.RLock()
	defer t.ioMu.RUnlock()
	t.metaMu.Lock()
	defer t.metaMu.Unlock()
	t.mu.Lock()
	closed, m := t.closed, t.meta
	t.mu.Unlock()
	if closed {
		return t.errClosed(op)
	}
	old := m
	f(&m)
	if m == old {
		return nil
	}
	if err := writeMeta(t.dir, m); err != nil {
		return fmt.Errorf("%s of task %s: %w", op, t.id, err)
	}
	t.mu.Lock()
	t.meta = m
	t.mu.Unlock()
	return nil
}

// SetDigest records the whole-file digest (e.g. "sha256:...") in the meta.
func (t *Task) SetDigest(d string) error {
	return t.updateMeta("set digest", func(m *Meta) { m.Digest = d })
}

// Touch records an access to the task (the modification time of meta.json),
// at most once per second.
func (t *Task) Touch() {
	now := time.Now()
	t.mu.Lock()
	if now.Sub(t.lastTouch) < touchInterval {
		t.mu.Unlock()
		return
	}
	t.lastTouch = now
	t.mu.Unlock()
	os.Chtimes(filepath.Join(t.dir, metaFile), time.Time{}, now)
}

// Verify re-hashes every recorded piece and clears the records of those whose
// data does not match, returning their indexes.
func (t *Task) Verify() (bad []int, err error) {
	t.ioMu.RLock()
	defer t.ioMu.RUnlock()
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, t.errClosed("verify")
	}
	l := t.layout
	var present []int
	for i := range t.sums {
		if t.bitmap.Has(i) {
			present = append(present, i)
		}
	}
	t.mu.Unlock()

	buf := make([]byte, min(l.PieceSize, 1<<20))
	for _, i := range present {
		off, n := l.PieceRange(i)
		h := sha256.New()
		if _, err := io.CopyBuffer(h, io.NewSectionReader(t.data, off, n), buf); err != nil {
			return bad, fmt.Errorf("verify task %s: read piece %d: %w", t.id, i, err)
		}
		var sum Sum
		h.Sum(sum[:0])
		t.mu.Lock()
		if sum != t.sums[i] {
			if _, err := t.pieces.WriteAt(make([]byte, sumSize), int64(i)*int64(sumSize)); err != nil {
				t.mu.Unlock()
				return bad, fmt.Errorf("verify task %s: clear piece %d: %w", t.id, i, err)
			}
			t.sums[i] = Sum{}
			t.bitmap.Clear(i)
			t.bytesPresent -= n
			bad = append(bad, i)
		} else {
			t.checked.Set(i)
		}
		t.mu.Unlock()
	}
	return bad, nil
}
