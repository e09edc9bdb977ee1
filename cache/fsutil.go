package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// lockPollInterval is how often a blocked open retries the task lock.
const lockPollInterval = 50 * time.Millisecond

// maxTaskIDLen bounds the length of a task ID.
const maxTaskIDLen = 128

// validateTaskID checks that id is usable as a directory name: 1 to 128
// characters among [a-zA-Z0-9_-]. This rules out path traversal ("..", "/").
func validateTaskID(id string) error {
	if id == "" || len(id) > maxTaskIDLen {
		return fmt.Errorf("invalid task ID %q: length must be 1..%d", id, maxTaskIDLen)
	}
	for _, c := range id {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("invalid task ID %q: only [a-zA-Z0-9_-] allowed", id)
		}
	}
	return nil
}

// writeFileAtomic replaces dir/name with data: it writes a temporary file in
// dir, syncs it, renames it over dir/name and syncs dir, so that a crash
// leaves either the old or the new content.
func writeFileAtomic(dir, name string, data []byte) (err error) {
	f, err := os.CreateTemp(dir, name+tmpInfix+"*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}

// tmpInfix marks the temporary files of writeFileAtomic; leftovers of a crash
// are removed when the task is next opened.
const tmpInfix = ".tmp-"

// removeTemps removes leftover temporary files in dir.
func removeTemps(dir string) {
	names, _ := filepath.Glob(filepath.Join(dir, "*"+tmpInfix+"*"))
	for _, n := range names {
		os.Remove(n)
	}
}

// syncDir fsyncs a directory so that entries created, renamed or removed in
// it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, unix.EINVAL) {
		return err
	}
	return nil
}

// fdatasync flushes the data of f to stable storage.
func fdatasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}

// errLocked reports that a try-lock failed because another open file
// description (another process, or another Store in this one) holds the lock.
var errLocked = errors.New("locked by another owner")

// tryLock takes an exclusive flock on f without blocking; it returns
// errLocked if someone else holds it.
func tryLock(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case err == unix.EINTR:
			continue
		case err == unix.EWOULDBLOCK:
			return errLocked
		default:
			return err
		}
	}
}

// unlockClose releases the flock held on f and closes it.
func unlockClose(f *os.File) error {
	uerr := unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return errors.Join(uerr, f.Close())
}

// lockTaskDir takes the exclusive lock of the task directory dir and returns
// the lock file. With wait, it polls every lockPollInterval until ctx is done;
// otherwise it returns errLocked at once. With create, a missing directory is
// created; otherwise it is reported as an error satisfying os.IsNotExist.
//
// After locking, it checks that the lock file is still the one at dir/lock:
// a remover deletes the directory while holding the lock, so a waiter that
// opened the old file must start again.
func lockTaskDir(ctx context.Context, dir string, create, wait bool) (*os.File, error) {
	path := filepath.Join(dir, lockFile)
	for {
		if create {
			if err := os.MkdirAll(dir, dirMode); err != nil {
				return nil, err
			}
		} else if _, err := os.Stat(dir); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, fileMode)
		if err != nil {
			if os.IsNotExist(err) && create {
				continue // removed under us: create again
			}
			return nil, err
		}
		if err := lockFD(ctx, f, wait); err != nil {
			f.Close()
			return nil, err
		}
		fi, ferr := f.Stat()
		pi, perr := os.Stat(path)
		if ferr == nil && perr == nil && os.SameFile(fi, pi) {
			return f, nil
		}
		unlockClose(f)
		if ferr != nil {
			return nil, ferr
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}

// lockFD takes the flock of f, polling until ctx is done if wait is set.
func lockFD(ctx context.Context, f *os.File, wait bool) error {
	var tick *time.Ticker
	for {
		err := tryLock(f)
		if err != errLocked || !wait {
			return err
		}
		if tick == nil {
			tick = time.NewTicker(lockPollInterval)
			defer tick.Stop()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the task lock held by another process: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// isTrash reports whether a name in the tasks directory is a task directory
// being removed (see Store.Remove).
func isTrash(name string) bool { return strings.HasPrefix(name, trashPrefix) }

// trashPrefix prefixes the name a task directory is renamed to before it is
// deleted, so that it disappears atomically.
const trashPrefix = ".trash-"
