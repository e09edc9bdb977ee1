package cache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestInvalidTaskIDs(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"", false},
		{"../x", false},
		{"a/b", false},
		{"..", false},
		{".", false},
		{"a.b", false},
		{"a b", false},
		{"é", false},
		{strings.Repeat("a", 129), false},
		{strings.Repeat("a", 128), true},
		{"Abc_-09", true},
	}
	s := newStore(t, "")
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			tk, err := s.Create(context.Background(), testMeta(tt.id, 10, 4))
			if (err == nil) != tt.ok {
				t.Fatalf("Create(%q) error = %v, want ok=%v", tt.id, err, tt.ok)
			}
			if err == nil {
				tk.Close()
				if err := s.Remove(tt.id); err != nil {
					t.Fatalf("Remove: %v", err)
				}
				return
			}
			if _, err := s.Open(context.Background(), tt.id); err == nil || errors.Is(err, ErrNotFound) {
				t.Fatalf("Open(%q) = %v, want a validation error", tt.id, err)
			}
			if err := s.Remove(tt.id); err == nil || errors.Is(err, ErrNotFound) {
				t.Fatalf("Remove(%q) = %v, want a validation error", tt.id, err)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(s.Dir()), "x")); err == nil {
		t.Fatal("path traversal created a file")
	}
}

func TestOpenStore(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(file); err == nil {
		t.Fatal("Open on a regular file succeeded")
	}
	if os.Geteuid() != 0 {
		ro := filepath.Join(dir, "ro")
		os.MkdirAll(filepath.Join(ro, tasksDir), 0o755)
		os.Chmod(filepath.Join(ro, tasksDir), 0o555)
		defer os.Chmod(filepath.Join(ro, tasksDir), 0o755)
		if _, err := Open(ro); err == nil || !strings.Contains(err.Error(), "not writable") {
			t.Fatalf("Open on a read-only dir = %v", err)
		}
	}
	s, err := Open(filepath.Join(dir, "a", "b"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !filepath.IsAbs(s.Dir()) || !exists(filepath.Join(s.Dir(), tasksDir)) {
		t.Fatalf("Dir = %s", s.Dir())
	}
}

func TestCrossProcessLock(t *testing.T) {
	// flock locks belong to open file descriptions, so two Stores on one
	// directory exclude each other like two processes do.
	dir := t.TempDir()
	s1 := newStore(t, dir)
	s2 := newStore(t, dir, WithTTL(time.Nanosecond), WithQuota(1))
	data := content(30, 8)
	tk1 := create(t, s1, testMeta("locked", 30, 10))
	if _, err := tk1.PutPiece(0, data[:10]); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	_, err := s2.Create(ctx, testMeta("locked", 30, 10))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Create while locked = %v", err)
	}
	if d := time.Since(start); d < 140*time.Millisecond {
		t.Fatalf("Create returned after %v without waiting", d)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err = s2.Open(ctx, "locked")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Open while locked = %v", err)
	}
	if err := s2.Remove("locked"); !errors.Is(err, ErrInUse) {
		t.Fatalf("Remove while locked = %v", err)
	}
	removed, _, err := s2.GC(context.Background())
	if err != nil || len(removed) != 0 {
		t.Fatalf("GC while locked removed %v, %v", removed, err)
	}
	stats, _ := s2.List()
	if len(stats) != 1 || stats[0].InUse {
		t.Fatalf("List from the other store = %+v", stats)
	}

	// Create blocks until the holder closes, then resumes its pieces.
	type result struct {
		tk  *Task
		err error
	}
	got := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		tk, err := s2.Create(ctx, testMeta("locked", 30, 10))
		got <- result{tk, err}
	}()
	time.Sleep(80 * time.Millisecond)
	select {
	case r := <-got:
		t.Fatalf("Create did not block: %v", r.err)
	default:
	}
	if err := tk1.Close(); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	checkPieces(t, r.tk, data, 0)
	// Now s1 is excluded.
	if err := s1.Remove("locked"); !errors.Is(err, ErrInUse) {
		t.Fatalf("Remove from the first store = %v", err)
	}
	r.tk.Close()
	if err := s1.Remove("locked"); err != nil {
		t.Fatal(err)
	}
	if err := s1.Remove("locked"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Remove = %v", err)
	}
}

// setAccess sets the last access time of a task.
func setAccess(t *testing.T, s *Store, id string, at time.Time) {
	t.Helper()
	if err := os.Chtimes(filepath.Join(s.taskDir(id), metaFile), at, at); err != nil {
		t.Fatal(err)
	}
}

func TestGC(t *testing.T) {
	now := time.Now()
	type task struct {
		id     string
		pieces int // of 100 bytes
		age    time.Duration
		open   bool
	}
	tasks := []task{
		{"oldest-open", 5, 10 * time.Hour, true},
		{"old", 3, 9 * time.Hour, false},
		{"middle", 4, 5 * time.Hour, false},
		{"recent", 2, time.Hour, false},
		{"new", 1, time.Minute, false},
	}
	tests := []struct {
		name    string
		opts    []Option
		removed []string
		freed   int64
	}{
		{"no limits", nil, nil, 0},
		{"ttl", []Option{WithTTL(2 * time.Hour)}, []string{"old", "middle"}, 700},
		{"quota", []Option{WithQuota(1000)}, []string{"old", "middle"}, 700},
		{"quota fits", []Option{WithQuota(1500)}, nil, 0},
		{"quota needs one", []Option{WithQuota(1300)}, []string{"old"}, 300},
		{"ttl then quota", []Option{WithTTL(6 * time.Hour), WithQuota(700)}, []string{"old", "middle", "recent"}, 900},
		{"quota below open task", []Option{WithQuota(1)}, []string{"old", "middle", "recent", "new"}, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, "", tt.opts...)
			for _, k := range tasks {
				tk := create(t, s, testMeta(k.id, 1000, 100))
				for i := 0; i < k.pieces; i++ {
					if _, err := tk.PutPiece(i, content(100, byte(i))); err != nil {
						t.Fatal(err)
					}
				}
				if k.open {
					defer tk.Close()
				} else {
					tk.Close()
				}
				setAccess(t, s, k.id, now.Add(-k.age))
			}
			removed, freed, err := s.GC(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(removed, tt.removed) || freed != tt.freed {
				t.Fatalf("GC removed %v freeing %d, want %v freeing %d", removed, freed, tt.removed, tt.freed)
			}
			stats, err := s.List()
			if err != nil {
				t.Fatal(err)
			}
			if len(stats) != len(tasks)-len(tt.removed) {
				t.Fatalf("%d tasks left", len(stats))
			}
			for _, id := range tt.removed {
				if exists(s.taskDir(id)) {
					t.Fatalf("%s still on disk", id)
				}
			}
			if !exists(s.taskDir("oldest-open")) {
				t.Fatal("open task removed")
			}
		})
	}
}

func TestGCDebris(t *testing.T) {
	s := newStore(t, "")
	tasks := filepath.Join(s.Dir(), tasksDir)
	os.MkdirAll(filepath.Join(tasks, "nometa"), 0o755)
	os.WriteFile(filepath.Join(tasks, "nometa", dataFile), []byte("x"), 0o644)
	os.MkdirAll(filepath.Join(tasks, trashPrefix+"gone-1", "sub"), 0o755)
	tk := create(t, s, testMeta("keep", 10, 10))
	defer tk.Close()
	removed, _, err := s.GC(context.Background())
	if err != nil || len(removed) != 0 {
		t.Fatalf("GC = %v, %v", removed, err)
	}
	entries, _ := os.ReadDir(tasks)
	if len(entries) != 1 || entries[0].Name() != "keep" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("left in tasks/: %v", names)
	}
}

func TestStoreClose(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	tk := create(t, s, testMeta("open", 20, 10))
	if _, err := tk.PutPiece(1, content(10, 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if exists(filepath.Join(s.taskDir("open"), dirtyFile)) {
		t.Fatal("dirty marker left by Store.Close")
	}
	if err := tk.Close(); err != nil {
		t.Fatalf("Task.Close after Store.Close = %v", err)
	}
	if _, err := s.Create(context.Background(), testMeta("x", 1, 1)); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Create on closed store = %v", err)
	}
	// The lock was released: another store can open it at once.
	s2 := newStore(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	tk2, err := s2.Open(ctx, "open")
	if err != nil {
		t.Fatal(err)
	}
	defer tk2.Close()
	if !tk2.Has(1) || tk2.Count() != 1 {
		t.Fatal("piece lost")
	}
}
