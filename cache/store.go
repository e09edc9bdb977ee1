package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/manifest"
)

// Errors reported by the store. They are wrapped with context; test them
// with errors.Is.
var (
	ErrNotFound       = errors.New("task not found in cache")
	ErrDigestMismatch = errors.New("piece digest mismatch")
	ErrBadPiece       = errors.New("piece has wrong length or index")
	ErrInUse          = errors.New("task is in use")
	// ErrCorrupt says a stored piece no longer matches its record (the
	// data file was changed on disk); the piece was dropped.
	ErrCorrupt = errors.New("stored piece is corrupt")
)

// Names of the files in a task directory.
const (
	tasksDir   = "tasks"
	metaFile   = "meta.json"
	dataFile   = "data"
	piecesFile = "pieces"
	dirtyFile  = "dirty"
	lockFile   = "lock"
)

// Meta describes a task; it is stored as meta.json in the task directory.
type Meta struct {
	TaskID string `json:"taskID"`
	// URL is the origin URL, redacted (manifest.RedactURL) for humans: it
	// never holds credentials. The store redacts it again before writing.
	URL          string `json:"url"`
	Length       int64  `json:"length"`
	PieceSize    int64  `json:"pieceSize"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"lastModified,omitempty"`
	// Digest is the expected whole-file digest, e.g. "sha256:...".
	Digest    string    `json:"digest,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
}

// Layout returns the piece layout of the task.
func (m Meta) Layout() manifest.Layout {
	return manifest.Layout{Length: m.Length, PieceSize: m.PieceSize}
}

// normalize fills defaults and checks m: a zero PieceSize becomes
// manifest.PieceSizeFor(Length), a zero CreatedAt becomes now, and the URL is
// redacted.
func (m *Meta) normalize() error {
	if err := validateTaskID(m.TaskID); err != nil {
		return err
	}
	if m.PieceSize == 0 && m.Length >= 0 {
		m.PieceSize = manifest.PieceSizeFor(m.Length)
	}
	if err := m.Layout().Validate(); err != nil {
		return fmt.Errorf("task %s: %w", m.TaskID, err)
	}
	if m.CreatedAt.IsZero() {
		m.CreatedAt = time.Now().UTC()
	}
	if m.URL != "" {
		m.URL = manifest.RedactURL(m.URL)
	}
	return nil
}

// conflicts reports why content described by m differs from what is stored
// under old, or "" if the stored pieces can be kept (resume).
func (m Meta) conflicts(old Meta) string {
	switch {
	case m.Length != old.Length:
		return fmt.Sprintf("length changed from %d to %d", old.Length, m.Length)
	case m.PieceSize != old.PieceSize:
		return fmt.Sprintf("piece size changed from %d to %d", old.PieceSize, m.PieceSize)
	case m.ETag != "" && old.ETag != "" && m.ETag != old.ETag:
		return fmt.Sprintf("ETag changed from %q to %q", old.ETag, m.ETag)
	case m.LastModified != "" && old.LastModified != "" && m.LastModified != old.LastModified:
		return fmt.Sprintf("Last-Modified changed from %q to %q", old.LastModified, m.LastModified)
	}
	return ""
}

// merge returns old completed with the fields of m that old lacks (validators
// or the digest learnt later), and whether anything changed.
func (m Meta) merge(old Meta) (Meta, bool) {
	out := old
	fill := func(dst *string, src string) {
		if *dst == "" && src != "" {
			*dst = src
		}
	}
	fill(&out.URL, m.URL)
	fill(&out.ETag, m.ETag)
	fill(&out.LastModified, m.LastModified)
	fill(&out.Digest, m.Digest)
	return out, out != old
}

// readMeta reads and checks dir/meta.json.
func readMeta(dir string) (Meta, error) {
	var m Meta
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("decode %s: %w", metaFile, err)
	}
	if err := validateTaskID(m.TaskID); err != nil {
		return m, err
	}
	if filepath.Base(dir) != m.TaskID {
		return m, fmt.Errorf("%s names task %s", metaFile, m.TaskID)
	}
	if err := m.Layout().Validate(); err != nil {
		return m, err
	}
	return m, nil
}

// writeMeta atomically replaces dir/meta.json with m.
func writeMeta(dir string, m Meta) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(dir, metaFile, append(b, '\n'))
}

// Option configures a Store.
type Option func(*options)

type options struct {
	quota int64
	ttl   time.Duration
	sync  bool
	log   logrus.FieldLogger
}

// WithQuota bounds the total bytes of pieces kept by GC; 0 (the default)
// means unlimited.
func WithQuota(bytes int64) Option { return func(o *options) { o.quota = bytes } }

// WithTTL makes GC remove tasks not accessed for d; 0 (the default) means
// tasks never expire.
func WithTTL(d time.Duration) Option { return func(o *options) { o.ttl = d } }

// WithSync makes the store fdatasync a piece's data before recording it.
// Without it a crash of the machine may lose recent pieces, which the next
// open detects (see the dirty marker) and drops.
func WithSync(sync bool) Option { return func(o *options) { o.sync = sync } }

// WithLogger sets the logger; the default is logrus's standard logger.
func WithLogger(l logrus.FieldLogger) Option { return func(o *options) { o.log = l } }

// Store is the piece store rooted at a directory. It is safe for concurrent
// use. Several processes may use the same directory: a task is open in at
// most one process at a time (flock), and shared within a process.
type Store struct {
	dir  string
	opts options

	mu     sync.Mutex
	closed bool
	tasks  map[string]*Task // open tasks, refs > 0
	// busy holds the IDs being opened, closed or removed; the channel is
	// closed when that is done.
	busy map[string]chan struct{}
}

// Open opens (creating it if needed) the store rooted at dir.
func Open(dir string, opts ...Option) (*Store, error) {
	o := options{log: logrus.StandardLogger()}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = logrus.StandardLogger()
	}
	if dir == "" {
		return nil, errors.New("open cache: empty directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open cache %s: %w", dir, err)
	}
	td := filepath.Join(abs, tasksDir)
	if err := os.MkdirAll(td, dirMode); err != nil {
		return nil, fmt.Errorf("open cache %s: %w", abs, err)
	}
	if err := tightenModes(abs); err != nil {
		return nil, fmt.Errorf("open cache %s: restrict permissions: %w", abs, err)
	}
	probe, err := os.CreateTemp(td, ".probe-*")
	if err != nil {
		return nil, fmt.Errorf("open cache %s: directory is not writable: %w", abs, err)
	}
	probe.Close()
	os.Remove(probe.Name())
	return &Store{
		dir:   abs,
		opts:  o,
		tasks: make(map[string]*Task),
		busy:  make(map[string]chan struct{}),
	}, nil
}

// Dir returns the (absolute) root directory of the store.
func (s *Store) Dir() string { return s.dir }

// taskDir returns the directory of a task.
func (s *Store) taskDir(id string) string { return filepath.Join(s.dir, tasksDir, id) }

// errStoreClosed is returned by operations on a closed store.
var errStoreClosed = fmt.Errorf("cache store: %w", os.ErrClosed)

// Create opens the task meta.TaskID, creating it with meta if absent
// (CreatedAt is set if zero, PieceSize defaults to
// manifest.PieceSizeFor(Length) if zero, URL is redacted).
//
// If the task exists with a different Length or PieceSize, or with an ETag or
// LastModified that differs from a non-empty one in meta, its pieces are
// dropped and it is re-created with meta. Otherwise the existing pieces are
// kept (resume), and validators or digest that the stored meta lacks are
// taken from meta.
//
// While another process holds the task it blocks, polling every 50ms, until
// ctx is done. The returned Task is shared by all callers in this process:
// each caller must Close it.
func (s *Store) Create(ctx context.Context, meta Meta) (*Task, error) {
	if err := meta.normalize(); err != nil {
		return nil, fmt.Errorf("create task: %w", err)
	}
	t, err := s.acquire(ctx, meta.TaskID, &meta)
	if err != nil {
		return nil, fmt.Errorf("create task %s: %w", meta.TaskID, err)
	}
	return t, nil
}

// Open opens an existing task, with the same sharing and locking as Create.
// It returns an error wrapping ErrNotFound if the task does not exist or its
// meta is unreadable.
func (s *Store) Open(ctx context.Context, taskID string) (*Task, error) {
	if err := validateTaskID(taskID); err != nil {
		return nil, fmt.Errorf("open task: %w", err)
	}
	t, err := s.acquire(ctx, taskID, nil)
	if err != nil {
		return nil, fmt.Errorf("open task %s: %w", taskID, err)
	}
	return t, nil
}

// claimLocked marks id busy if it is neither open nor busy. Otherwise it returns
// the open task (with its reference count incremented, if ref) or the channel
// to wait on. The caller must hold s.mu.
func (s *Store) claimLocked(id string, ref bool) (t *Task, wait chan struct{}, done func()) {
	if t := s.tasks[id]; t != nil {
		if ref {
			t.refs++
		}
		return t, nil, nil
	}
	if ch := s.busy[id]; ch != nil {
		return nil, ch, nil
	}
	ch := make(chan struct{})
	s.busy[id] = ch
	return nil, nil, func() {
		delete(s.busy, id)
		close(ch)
	}
}

// acquire returns the open task id, opening it if needed; meta is nil for
// Open and the wanted meta for Create.
func (s *Store) acquire(ctx context.Context, id string, meta *Meta) (*Task, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, errStoreClosed
		}
		t, wait, done := s.claimLocked(id, true)
		s.mu.Unlock()
		switch {
		case t != nil:
			if meta != nil {
				if err := t.adopt(*meta); err != nil {
					t.Close()
					return nil, err
				}
			}
			return t, nil
		case wait != nil:
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		t, err := s.openTask(ctx, id, meta)
		s.mu.Lock()
		done()
		if err == nil && s.closed {
			s.mu.Unlock()
			t.shutdown()
			return nil, errStoreClosed
		}
		if err == nil {
			s.tasks[id] = t
		}
		s.mu.Unlock()
		return t, err
	}
}

// release drops one reference to t, shutting it down on the last one.
func (s *Store) release(t *Task) error {
	s.mu.Lock()
	if t.refs <= 0 {
		s.mu.Unlock()
		return nil // already closed (by the store, or a double Close)
	}
	t.refs--
	if t.refs > 0 {
		s.mu.Unlock()
		return nil
	}
	delete(s.tasks, t.id)
	// Keep other openers waiting until the lock is released, rather than
	// polling it.
	_, _, done := s.claimLocked(t.id, false)
	s.mu.Unlock()
	err := t.shutdown()
	s.mu.Lock()
	done()
	s.mu.Unlock()
	return err
}

// openTask opens the task directory, taking its lock; see Create and Open.
func (s *Store) openTask(ctx context.Context, id string, meta *Meta) (t *Task, err error) {
	dir := s.taskDir(id)
	lock, err := lockTaskDir(ctx, dir, meta != nil, true)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	defer func() {
		if err != nil {
			unlockClose(lock)
		}
	}()
	removeTemps(dir)
	log := s.opts.log.WithField("task", id)

	_, statErr := os.Stat(filepath.Join(dir, dirtyFile))
	wasDirty := statErr == nil
	old, oldErr := readMeta(dir)
	var m Meta
	fresh := false
	switch {
	case meta == nil && oldErr != nil:
		return nil, fmt.Errorf("%w: %v", ErrNotFound, oldErr)
	case meta == nil:
		m = old
	case oldErr != nil:
		if !os.IsNotExist(oldErr) {
			log.WithError(oldErr).Warn("cache: unreadable task meta, re-creating the task")
		}
		m, fresh = *meta, true
	default:
		if why := meta.conflicts(old); why != "" {
			log.WithField("url", meta.URL).Infof("cache: content changed (%s), dropping stored pieces", why)
			m, fresh = *meta, true
		} else {
			var changed bool
			if m, changed = meta.merge(old); changed {
				if err := writeMeta(dir, m); err != nil {
					return nil, fmt.Errorf("write meta: %w", err)
				}
			}
		}
	}

	if !wasDirty {
		if err := createDirty(dir); err != nil {
			return nil, err
		}
	}
	if fresh {
		// Drop the records first: a crash before the new meta is written
		// leaves the old meta with no pieces, which is consistent.
		for _, name := range []string{piecesFile, dataFile} {
			if err := os.Remove(filepath.Join(dir, name)); err != nil && !os.IsNotExist(err) {
				return nil, err
			}
		}
		if err := writeMeta(dir, m); err != nil {
			return nil, fmt.Errorf("write meta: %w", err)
		}
	}

	t = &Task{
		store:     s,
		id:        id,
		dir:       dir,
		lock:      lock,
		refs:      1,
		changed:   make(chan struct{}),
		lastTouch: time.Now(),
	}
	if err := t.openFiles(m); err != nil {
		return nil, err
	}
	if wasDirty && !fresh {
		bad, err := t.Verify()
		if err != nil {
			t.closeFiles()
			return nil, err
		}
		log.WithField("bad", bad).Warnf("cache: task was not closed cleanly; verified %d pieces, dropped %d", t.Count()+len(bad), len(bad))
	}
	os.Chtimes(filepath.Join(dir, metaFile), time.Time{}, time.Now())
	return t, nil
}

// createDirty durably creates the dirty marker of a task directory.
func createDirty(dir string) error {
	f, err := os.OpenFile(filepath.Join(dir, dirtyFile), os.O_WRONLY|os.O_CREATE, fileMode)
	if err != nil {
		return fmt.Errorf("create dirty marker: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("create dirty marker: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("create dirty marker: %w", err)
	}
	return nil
}

// TaskStat describes a task on disk.
type TaskStat struct {
	Meta         Meta
	Pieces       int   // pieces present
	NumPieces    int   // pieces in the task
	BytesPresent int64 // bytes of the pieces present
	// LastAccess is when the task was last opened, closed or touched.
	LastAccess time.Time
	// InUse reports whether the task is open in this process.
	InUse bool
}

// List returns all tasks on disk, sorted by task ID. Directories without a
// readable meta (crash debris) are not listed; GC removes them.
func (s *Store) List() ([]TaskStat, error) {
	stats, _, err := s.scan()
	return stats, err
}

// scan lists the tasks, and the names of the entries that are not tasks but
// debris: directories without readable meta and interrupted removals.
func (s *Store) scan() (stats []TaskStat, debris []string, err error) {
	entries, err := os.ReadDir(filepath.Join(s.dir, tasksDir))
	if err != nil {
		return nil, nil, fmt.Errorf("list cache %s: %w", s.dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		if isTrash(name) {
			debris = append(debris, name)
			continue
		}
		if !e.IsDir() || validateTaskID(name) != nil {
			continue
		}
		st, err := s.stat(name)
		if err != nil {
			if !os.IsNotExist(err) || !dirGone(s.taskDir(name)) {
				debris = append(debris, name)
			}
			continue
		}
		stats = append(stats, st)
	}
	sort.Slice(stats, func(i, j int) bool { return stats[i].Meta.TaskID < stats[j].Meta.TaskID })
	return stats, debris, nil
}

// dirGone reports whether dir no longer exists.
func dirGone(dir string) bool {
	_, err := os.Stat(dir)
	return os.IsNotExist(err)
}

// stat describes task id from memory if it is open here, from disk otherwise.
func (s *Store) stat(id string) (TaskStat, error) {
	dir := s.taskDir(id)
	fi, err := os.Stat(filepath.Join(dir, metaFile))
	if err != nil {
		return TaskStat{}, err
	}
	s.mu.Lock()
	t := s.tasks[id]
	s.mu.Unlock()
	if t != nil {
		t.mu.Lock()
		defer t.mu.Unlock()
		return TaskStat{
			Meta:         t.meta,
			Pieces:       t.bitmap.Count(),
			NumPieces:    len(t.sums),
			BytesPresent: t.bytesPresent,
			LastAccess:   fi.ModTime(),
			InUse:        true,
		}, nil
	}
	m, err := readMeta(dir)
	if err != nil {
		return TaskStat{}, err
	}
	st := TaskStat{Meta: m, NumPieces: m.Layout().NumPieces(), LastAccess: fi.ModTime()}
	records, err := os.ReadFile(filepath.Join(dir, piecesFile))
	if err != nil && !os.IsNotExist(err) {
		return TaskStat{}, err
	}
	l := m.Layout()
	for i := 0; i < st.NumPieces && (i+1)*sumSize <= len(records); i++ {
		if !Sum(records[i*sumSize:]).IsZero() {
			_, n := l.PieceRange(i)
			st.Pieces++
			st.BytesPresent += n
		}
	}
	return st, nil
}

// Remove deletes a task from disk. It returns an error wrapping ErrInUse if
// the task is open in this process or locked by another, and one wrapping
// ErrNotFound if there is no such task.
func (s *Store) Remove(taskID string) error {
	if err := validateTaskID(taskID); err != nil {
		return fmt.Errorf("remove task: %w", err)
	}
	if err := s.remove(taskID); err != nil {
		return fmt.Errorf("remove task %s: %w", taskID, err)
	}
	return nil
}

// remove deletes a task directory if nobody uses it: it takes the task lock
// without waiting, renames the directory out of the way and deletes it.
func (s *Store) remove(id string) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errStoreClosed
	}
	t, wait, done := s.claimLocked(id, false)
	s.mu.Unlock()
	if t != nil || wait != nil {
		return ErrInUse
	}
	defer func() {
		s.mu.Lock()
		done()
		s.mu.Unlock()
	}()
	dir := s.taskDir(id)
	lock, err := lockTaskDir(context.Background(), dir, false, false)
	switch {
	case os.IsNotExist(err):
		return ErrNotFound
	case err == errLocked:
		return ErrInUse
	case err != nil:
		return err
	}
	defer unlockClose(lock)
	trash := filepath.Join(s.dir, tasksDir, fmt.Sprintf("%s%s-%d", trashPrefix, id, time.Now().UnixNano()))
	if err := os.Rename(dir, trash); err != nil {
		return err
	}
	syncDir(filepath.Dir(dir))
	return os.RemoveAll(trash)
}

// GC removes tasks, least recently accessed first: those not accessed within
// the TTL, then more until the pieces of all tasks fit in the quota. It never
// removes a task open in this process or locked by another process. It also
// deletes debris: task directories without readable meta that nobody holds,
// and the remains of interrupted removals (these count neither in removed nor
// in freed).
func (s *Store) GC(ctx context.Context) (removed []string, freed int64, err error) {
	stats, debris, err := s.scan()
	if err != nil {
		return nil, 0, fmt.Errorf("gc: %w", err)
	}
	var errs []error
	for _, name := range debris {
		if isTrash(name) {
			os.RemoveAll(filepath.Join(s.dir, tasksDir, name))
			continue
		}
		if err := s.remove(name); err != nil && !errors.Is(err, ErrInUse) && !errors.Is(err, ErrNotFound) {
			errs = append(errs, fmt.Errorf("remove debris %s: %w", name, err))
		}
	}
	sort.SliceStable(stats, func(i, j int) bool { return stats[i].LastAccess.Before(stats[j].LastAccess) })

	var total int64
	for _, st := range stats {
		total += st.BytesPresent
	}
	gone := make([]bool, len(stats))
	try := func(i int) {
		st := stats[i]
		if st.InUse {
			return
		}
		err := s.remove(st.Meta.TaskID)
		switch {
		case err == nil:
			gone[i] = true
			removed = append(removed, st.Meta.TaskID)
			freed += st.BytesPresent
			total -= st.BytesPresent
			s.opts.log.WithFields(logrus.Fields{"task": st.Meta.TaskID, "url": st.Meta.URL, "bytes": st.BytesPresent}).Info("cache: gc removed task")
		case errors.Is(err, ErrInUse), errors.Is(err, ErrNotFound):
		default:
			errs = append(errs, fmt.Errorf("remove task %s: %w", st.Meta.TaskID, err))
		}
	}
	if ttl := s.opts.ttl; ttl > 0 {
		now := time.Now()
		for i, st := range stats {
			if ctx.Err() != nil {
				break
			}
			if now.Sub(st.LastAccess) > ttl {
				try(i)
			}
		}
	}
	if quota := s.opts.quota; quota > 0 {
		for i := range stats {
			if total <= quota || ctx.Err() != nil {
				break
			}
			if !gone[i] {
				try(i)
			}
		}
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return removed, freed, fmt.Errorf("gc: %w", err)
	}
	return removed, freed, nil
}

// Close closes the store. Tasks still open are closed cleanly (their later
// Close calls return nil); further operations on the store fail.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	open := make([]*Task, 0, len(s.tasks))
	for id, t := range s.tasks {
		t.refs = 0
		open = append(open, t)
		delete(s.tasks, id)
	}
	s.mu.Unlock()
	var errs []error
	for _, t := range open {
		errs = append(errs, t.shutdown())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close cache %s: %w", s.dir, err)
	}
	return nil
}
