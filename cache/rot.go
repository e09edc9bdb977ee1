package cache

import (
	"crypto/sha256"
	"fmt"
	"io"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/manifest"
)

// Rot detection. The store hashes every piece it writes; afterwards the
// bytes can only change behind its back (a disk fault, a stray write to the
// data file). Such a change moves the data file's modification time past the
// store's last own write: then every piece is re-hashed once before it is
// served or exported (PieceReader, CheckPieces), and a piece that no longer
// matches its record is dropped, so that it is fetched again instead of
// handed out. A change made while the store itself is writing the file (or
// one that restores the modification time) goes unnoticed until the next
// open of the task, which trusts nothing it has not re-hashed.

// writeData writes a piece's bytes at off as the store's own change of the
// data file. ioMu must be held (shared).
func (t *Task) writeData(data []byte, off int64) error {
	if err := t.noticeOutsideChange(); err != nil {
		return err
	}
	t.mu.Lock()
	t.inflight++
	t.mu.Unlock()
	_, err := t.data.WriteAt(data, off)
	t.mu.Lock()
	t.inflight--
	t.lastOwn = time.Now()
	t.mu.Unlock()
	return err
}

// noticeOutsideChange forgets which pieces were checked if the data file
// changed since the store's last own write. ioMu must be held (shared).
func (t *Task) noticeOutsideChange() error {
	fi, err := t.data.Stat()
	if err != nil {
		return fmt.Errorf("stat data file: %w", err)
	}
	mt := fi.ModTime()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.inflight > 0 || !mt.After(t.lastOwn) || mt.Equal(t.seen) {
		return nil
	}
	t.seen = mt
	if t.checked.Count() > 0 {
		t.store.opts.log.WithField("task", t.id).Debug("cache: data file changed on disk; pieces will be re-hashed before use")
	}
	t.checked = manifest.NewBitmap(len(t.sums))
	return nil
}

// checkLocked re-hashes the pieces of idx that are present but not checked
// since the data file last changed, drops those that no longer match their
// record (logging the rot) and returns their indexes. ioMu must be held
// (shared).
func (t *Task) checkLocked(idx []int) (bad []int, err error) {
	if err := t.noticeOutsideChange(); err != nil {
		return nil, fmt.Errorf("check task %s: %w", t.id, err)
	}
	t.mu.Lock()
	var todo []int
	for _, i := range idx {
		if t.bitmap.Has(i) && !t.checked.Has(i) {
			todo = append(todo, i)
		}
	}
	l := t.layout
	t.mu.Unlock()
	if len(todo) == 0 {
		return nil, nil
	}
	buf := make([]byte, min(l.PieceSize, 1<<20))
	for _, i := range todo {
		off, n := l.PieceRange(i)
		h := sha256.New()
		if _, err := io.CopyBuffer(h, io.NewSectionReader(t.data, off, n), buf); err != nil {
			return bad, fmt.Errorf("check task %s: read piece %d: %w", t.id, i, err)
		}
		var sum Sum
		h.Sum(sum[:0])
		t.mu.Lock()
		switch {
		case !t.bitmap.Has(i):
			// Dropped meanwhile.
		case sum == t.sums[i]:
			t.checked.Set(i)
		default:
			if _, err := t.pieces.WriteAt(make([]byte, sumSize), int64(i)*int64(sumSize)); err != nil {
				t.mu.Unlock()
				return bad, fmt.Errorf("check task %s: drop corrupt piece %d: %w", t.id, i, err)
			}
			t.store.opts.log.WithFields(logrus.Fields{"task": t.id, "piece": i, "url": t.meta.URL,
				"recorded": t.sums[i].String(), "found": sum.String()}).
				Error("cache: stored piece is corrupt (its bytes changed on disk); dropped it to fetch it again")
			t.sums[i] = Sum{}
			t.bitmap.Clear(i)
			t.bytesPresent -= n
			bad = append(bad, i)
		}
		t.mu.Unlock()
	}
	return bad, nil
}

// CheckPieces re-hashes every present piece not checked since the data file
// last changed behind the store's back (all of them after the task was
// opened from disk), drops those that no longer match their records (the
// rot is logged) and returns their indexes. A task whose file did not change
// since its pieces were written costs one stat. Call it before handing the
// content out whole.
func (t *Task) CheckPieces() (bad []int, err error) {
	t.ioMu.RLock()
	defer t.ioMu.RUnlock()
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, t.errClosed("check pieces")
	}
	idx := make([]int, len(t.sums))
	for i := range idx {
		idx[i] = i
	}
	t.mu.Unlock()
	return t.checkLocked(idx)
}
