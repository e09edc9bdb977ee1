package cache

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// ErrIncomplete is returned by Export for a task that lacks pieces.
var ErrIncomplete = errors.New("task is not complete")

// Export hands a complete task's content to the caller: its data file is
// renamed to dst and the task leaves the store. The caller's reference must
// be the only one (ErrInUse otherwise) and is consumed on success. This is
// how a one-shot download avoids writing every byte twice (and holding two
// copies on disk). A rename across file systems fails with an error
// wrapping syscall.EXDEV and leaves the task as it was, for the caller to
// copy instead.
func (s *Store) Export(t *Task, dst string) error {
	s.mu.Lock()
	if t.refs != 1 {
		s.mu.Unlock()
		return fmt.Errorf("export task %s: %w", t.id, ErrInUse)
	}
	if !t.Complete() {
		s.mu.Unlock()
		return fmt.Errorf("export task %s: %w", t.id, ErrIncomplete)
	}
	if err := os.Rename(t.DataPath(), dst); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("export task %s: %w", t.id, err)
	}
	t.refs = 0
	delete(s.tasks, t.id)
	_, _, done := s.claimLocked(t.id, false)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		done()
		s.mu.Unlock()
	}()

	// The data left with its content; nothing to flush. Close the task and
	// remove what remains of it, under its lock.
	t.ioMu.Lock()
	t.mu.Lock()
	if !t.closed {
		t.closed = true
		close(t.changed)
	}
	t.mu.Unlock()
	errs := []error{t.closeFiles()}
	t.ioMu.Unlock()
	trash := filepath.Join(s.dir, tasksDir, fmt.Sprintf("%s%s-%d", trashPrefix, t.id, time.Now().UnixNano()))
	if err := os.Rename(t.dir, trash); err == nil {
		errs = append(errs, os.RemoveAll(trash))
	} else {
		errs = append(errs, err)
	}
	errs = append(errs, unlockClose(t.lock))
	if err := errors.Join(errs...); err != nil {
		s.opts.log.WithError(err).WithField("task", t.id).Warn("exported task left debris; GC will remove it")
	}
	return nil
}
