package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestWriteReadRoundTrip(t *testing.T) {
	tests := []struct {
		name      string
		length    int64
		pieceSize int64
	}{
		{"exact pieces", 4096, 1024},
		{"short last piece", 4097, 1024},
		{"single short piece", 10, 1024},
		{"many pieces", 100_000, 333},
		{"default piece size", 3<<20 + 17, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, "")
			tk := create(t, s, testMeta("task1", tt.length, tt.pieceSize))
			defer tk.Close()
			data := content(tt.length, 1)
			n := tk.NumPieces()
			if want := tk.Layout().NumPieces(); n != want || n == 0 {
				t.Fatalf("NumPieces = %d, layout says %d", n, want)
			}
			order := rand.New(rand.NewSource(1)).Perm(n)
			for k, i := range order {
				p := piece(tk, data, i)
				sum, err := tk.PutPiece(i, p)
				if err != nil {
					t.Fatalf("PutPiece(%d): %v", i, err)
				}
				if sum != Sum(sha256.Sum256(p)) {
					t.Fatalf("PutPiece(%d) sum = %v", i, sum)
				}
				if tk.Complete() != (k == n-1) {
					t.Fatalf("Complete after %d of %d pieces = %v", k+1, n, tk.Complete())
				}
				if rec := record(t, s, "task1", i); rec != sum {
					t.Fatalf("record %d on disk = %v, want %v", i, rec, sum)
				}
			}
			if tk.BytesPresent() != tt.length {
				t.Fatalf("BytesPresent = %d, want %d", tk.BytesPresent(), tt.length)
			}
			if !tk.Bitmap().Full(n) {
				t.Fatal("Bitmap not full")
			}
			got := make([]byte, tt.length)
			if _, err := tk.ReadAt(got, 0); err != nil {
				t.Fatalf("ReadAt: %v", err)
			}
			if sha256.Sum256(got) != sha256.Sum256(data) {
				t.Fatal("ReadAt content differs")
			}
			if _, err := tk.ReadAt(make([]byte, 1), tt.length); err != io.EOF {
				t.Fatalf("ReadAt past end: %v, want io.EOF", err)
			}
			onDisk, err := os.ReadFile(tk.DataPath())
			if err != nil || !bytes.Equal(onDisk, data) {
				t.Fatalf("data file differs (err %v)", err)
			}
			all := make([]int, n)
			for i := range all {
				all[i] = i
			}
			checkPieces(t, tk, data, all...)
		})
	}
}

func TestWritePieceRejects(t *testing.T) {
	s := newStore(t, "")
	tk := create(t, s, testMeta("rej", 2500, 1000))
	defer tk.Close()
	data := content(2500, 2)
	p0, p2 := piece(tk, data, 0), piece(tk, data, 2)
	tests := []struct {
		name    string
		i       int
		data    []byte
		want    Sum
		wantErr error
	}{
		{"digest mismatch", 0, p0, SumOf([]byte("other")), ErrDigestMismatch},
		{"corrupted data", 0, append([]byte{p0[0] ^ 1}, p0[1:]...), SumOf(p0), ErrDigestMismatch},
		{"too short", 0, p0[:999], SumOf(p0[:999]), ErrBadPiece},
		{"too long", 2, data[1900:], SumOf(data[1900:]), ErrBadPiece},
		{"short last piece as full", 2, data[1500:], SumOf(data[1500:]), ErrBadPiece},
		{"negative index", -1, p0, SumOf(p0), ErrBadPiece},
		{"index past end", 3, p2, SumOf(p2), ErrBadPiece},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tk.WritePiece(tt.i, tt.data, tt.want)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("WritePiece error = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), "rej") {
				t.Errorf("error %q does not name the task", err)
			}
			if tk.Count() != 0 || tk.BytesPresent() != 0 {
				t.Fatalf("something recorded: count %d", tk.Count())
			}
			for i := 0; i < 3; i++ {
				if !record(t, s, "rej", i).IsZero() {
					t.Fatalf("record %d written", i)
				}
			}
			onDisk, _ := os.ReadFile(tk.DataPath())
			if !bytes.Equal(onDisk, make([]byte, 2500)) {
				t.Fatal("data written for a rejected piece")
			}
		})
	}
	if err := tk.WritePiece(0, p0, SumOf(p0)); err != nil {
		t.Fatal(err)
	}
	// Mismatch message carries both digests.
	err := tk.WritePiece(1, piece(tk, data, 1), SumOf(p0))
	if !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), SumOf(p0).String()) ||
		!strings.Contains(err.Error(), SumOf(piece(tk, data, 1)).String()) {
		t.Fatalf("mismatch error %v lacks the digests", err)
	}
	// Already present: no-op.
	if err := tk.WritePiece(0, p0, SumOf(p0)); err != nil {
		t.Fatalf("rewrite of present piece: %v", err)
	}
	checkPieces(t, tk, data, 0)
	if _, err := tk.PieceReader(1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("PieceReader of absent piece: %v", err)
	}
}

func TestZeroLengthTask(t *testing.T) {
	dir := t.TempDir()
	for round := 0; round < 2; round++ {
		s := newStore(t, dir)
		tk := create(t, s, testMeta("empty", 0, 1024))
		if tk.NumPieces() != 0 || !tk.Complete() || tk.Count() != 0 || tk.BytesPresent() != 0 {
			t.Fatalf("round %d: empty task: n=%d complete=%v", round, tk.NumPieces(), tk.Complete())
		}
		if fi, err := os.Stat(tk.DataPath()); err != nil || fi.Size() != 0 {
			t.Fatalf("data file: %v, %v", fi, err)
		}
		if n, err := tk.ReadAt(make([]byte, 1), 0); n != 0 || err != io.EOF {
			t.Fatalf("ReadAt = %d, %v", n, err)
		}
		if err := tk.Wait(context.Background(), 0); !errors.Is(err, ErrBadPiece) {
			t.Fatalf("Wait(0) = %v", err)
		}
		if err := tk.Close(); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
}

func TestResumeAfterClose(t *testing.T) {
	dir := t.TempDir()
	data := content(5000, 3)
	s := newStore(t, dir)
	m := testMeta("resume", 5000, 1000)
	m.ETag = `"v1"`
	tk := create(t, s, m)
	for _, i := range []int{0, 2, 4} {
		if _, err := tk.PutPiece(i, piece(tk, data, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tk.Close(); err != nil {
		t.Fatal(err)
	}
	if exists(filepath.Join(s.taskDir("resume"), dirtyFile)) {
		t.Fatal("dirty marker left after clean close")
	}
	if _, err := tk.ReadAt(make([]byte, 1), 0); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("ReadAt after Close: %v", err)
	}

	// Same store, Open.
	tk, err := s.Open(context.Background(), "resume")
	if err != nil {
		t.Fatal(err)
	}
	checkPieces(t, tk, data, 0, 2, 4)
	if got := tk.Meta(); got.ETag != `"v1"` || got.Length != 5000 {
		t.Fatalf("meta = %+v", got)
	}
	tk.Close()
	s.Close()

	// New store, Create with matching meta (no ETag known this time).
	s2 := newStore(t, dir)
	m.ETag = ""
	tk = create(t, s2, m)
	checkPieces(t, tk, data, 0, 2, 4)
	writeAll(t, tk, data)
	if !tk.Complete() {
		t.Fatal("not complete")
	}
	if tk.Meta().ETag != `"v1"` {
		t.Fatal("ETag lost on resume")
	}
	tk.Close()
}

func TestOpenMissingOrBroken(t *testing.T) {
	s := newStore(t, "")
	if _, err := s.Open(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open missing = %v", err)
	}
	if exists(s.taskDir("nope")) {
		t.Fatal("Open created a directory")
	}
	tk := create(t, s, testMeta("broken", 10, 4))
	tk.Close()
	if err := os.WriteFile(filepath.Join(s.taskDir("broken"), metaFile), []byte("{garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(context.Background(), "broken"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open with broken meta = %v", err)
	}
	// Create repairs it.
	tk = create(t, s, testMeta("broken", 10, 4))
	if tk.Count() != 0 || tk.NumPieces() != 3 {
		t.Fatalf("re-created task: %d/%d", tk.Count(), tk.NumPieces())
	}
	tk.Close()
}

// crash abandons an open task the way a killed process would: the files
// and the lock are released, nothing else (the dirty marker stays).
func crash(t *testing.T, s *Store, tk *Task) {
	t.Helper()
	s.mu.Lock()
	delete(s.tasks, tk.id)
	tk.refs = 0
	s.mu.Unlock()
	tk.mu.Lock()
	tk.closed = true
	tk.mu.Unlock()
	if err := tk.closeFiles(); err != nil {
		t.Fatal(err)
	}
	if err := unlockClose(tk.lock); err != nil {
		t.Fatal(err)
	}
}

func TestCrashRecovery(t *testing.T) {
	const id = "crashy"
	data := content(6000, 4)
	tests := []struct {
		name    string
		damage  func(t *testing.T, dir string) // applied after the crash
		cleanly bool                           // close cleanly instead of crashing
		want    []int                          // pieces expected after reopening
	}{
		{
			name:   "crash, data intact",
			damage: func(*testing.T, string) {},
			want:   []int{0, 1, 2, 3, 4, 5},
		},
		{
			name: "crash, piece 1 data corrupted",
			damage: func(t *testing.T, dir string) {
				f, err := os.OpenFile(filepath.Join(dir, dataFile), os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				if _, err := f.WriteAt([]byte("XXXX"), 1500); err != nil {
					t.Fatal(err)
				}
			},
			want: []int{0, 2, 3, 4, 5},
		},
		{
			name: "power loss: records of 2 and 5 reached disk, data did not",
			damage: func(t *testing.T, dir string) {
				f, err := os.OpenFile(filepath.Join(dir, dataFile), os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				f.WriteAt(make([]byte, 1000), 2000)
				f.Truncate(5000) // last piece beyond the end
			},
			want: []int{0, 1, 3, 4},
		},
		{
			name: "clean close: no verification, corruption goes unnoticed",
			damage: func(t *testing.T, dir string) {
				f, err := os.OpenFile(filepath.Join(dir, dataFile), os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				f.WriteAt([]byte("XXXX"), 1500)
			},
			cleanly: true,
			want:    []int{0, 1, 2, 3, 4, 5},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := newStore(t, dir)
			tk := create(t, s, testMeta(id, 6000, 1000))
			writeAll(t, tk, data)
			if tt.cleanly {
				tk.Close()
			} else {
				crash(t, s, tk)
			}
			taskDir := s.taskDir(id)
			if exists(filepath.Join(taskDir, dirtyFile)) == tt.cleanly {
				t.Fatalf("dirty marker present = %v after close cleanly=%v", !tt.cleanly, tt.cleanly)
			}
			tt.damage(t, taskDir)

			s2 := newStore(t, dir)
			tk2, err := s2.Open(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			defer tk2.Close()
			if tt.cleanly {
				if tk2.Count() != len(tt.want) {
					t.Fatalf("Count = %d", tk2.Count())
				}
				bad, err := tk2.Verify()
				if err != nil || len(bad) != 1 || bad[0] != 1 {
					t.Fatalf("explicit Verify = %v, %v; want [1]", bad, err)
				}
				return
			}
			checkPieces(t, tk2, data, tt.want...)
			for i := 0; i < 6; i++ {
				if rec := record(t, s2, id, i); rec.IsZero() == tk2.Has(i) {
					t.Errorf("record %d on disk disagrees with Has", i)
				}
			}
			// The missing pieces can be written again.
			writeAll(t, tk2, data)
			if !tk2.Complete() {
				t.Fatal("not complete after rewrite")
			}
		})
	}
}

func TestCreateDetectsChangedContent(t *testing.T) {
	base := testMeta("chg", 3000, 1000)
	base.ETag = `"e1"`
	base.LastModified = "Mon, 01 Jan 2024 00:00:00 GMT"
	tests := []struct {
		name   string
		change func(m *Meta)
		keep   bool
	}{
		{"identical", func(*Meta) {}, true},
		{"validators unknown", func(m *Meta) { m.ETag, m.LastModified = "", "" }, true},
		{"other URL", func(m *Meta) { m.URL = "http://mirror/x" }, true},
		{"length changed", func(m *Meta) { m.Length = 3001 }, false},
		{"piece size changed", func(m *Meta) { m.PieceSize = 500 }, false},
		{"ETag changed", func(m *Meta) { m.ETag = `"e2"` }, false},
		{"Last-Modified changed", func(m *Meta) { m.LastModified = "Tue, 02 Jan 2024 00:00:00 GMT" }, false},
	}
	for _, shared := range []bool{false, true} {
		for _, tt := range tests {
			name := tt.name
			if shared {
				name += " (task open)"
			}
			t.Run(name, func(t *testing.T) {
				s := newStore(t, "")
				tk := create(t, s, base)
				data := content(3000, 5)
				writeAll(t, tk, data)
				if !shared {
					tk.Close()
				}
				ch := tk.Changed()
				m := base
				tt.change(&m)
				tk2 := create(t, s, m)
				defer tk2.Close()
				if shared {
					defer tk.Close()
					if tk2 != tk {
						t.Fatal("Create of an open task returned another Task")
					}
				}
				if tt.keep {
					checkPieces(t, tk2, data, 0, 1, 2)
					if got := tk2.Meta(); got.ETag != base.ETag || got.LastModified != base.LastModified {
						t.Fatalf("validators lost: %+v", got)
					}
					return
				}
				if tk2.Count() != 0 || tk2.BytesPresent() != 0 {
					t.Fatalf("pieces kept: %d", tk2.Count())
				}
				if tk2.Meta().Length != m.Length || tk2.Meta().PieceSize != m.PieceSize || tk2.Meta().ETag != m.ETag {
					t.Fatalf("meta not adopted: %+v", tk2.Meta())
				}
				if fi, _ := os.Stat(tk2.DataPath()); fi.Size() != m.Length {
					t.Fatalf("data file size %d", fi.Size())
				}
				for i := 0; i < 3; i++ {
					if !record(t, s, "chg", i).IsZero() {
						t.Fatalf("record %d survived", i)
					}
				}
				if onDisk, err := readMeta(s.taskDir("chg")); err != nil || onDisk.Length != m.Length || onDisk.ETag != m.ETag {
					t.Fatalf("meta.json = %+v, %v", onDisk, err)
				}
				if shared {
					select {
					case <-ch:
					default:
						t.Fatal("Changed not closed by reset")
					}
				}
			})
		}
	}
}

func TestWaitAndChanged(t *testing.T) {
	s := newStore(t, "")
	tk := create(t, s, testMeta("wait", 4000, 1000))
	defer tk.Close()
	data := content(4000, 6)

	// Wait times out.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	err := tk.Wait(ctx, 1)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v, want deadline exceeded", err)
	}
	if err := tk.Wait(context.Background(), 4); !errors.Is(err, ErrBadPiece) {
		t.Fatalf("Wait(out of range) = %v", err)
	}

	// Waiters wake when another goroutine writes.
	ch := tk.Changed()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			errs[i] = tk.Wait(ctx, i)
		}()
	}
	time.Sleep(20 * time.Millisecond)
	select {
	case <-ch:
		t.Fatal("Changed closed before any write")
	default:
	}
	for _, i := range []int{3, 1, 0, 2} {
		if _, err := tk.PutPiece(i, piece(tk, data, i)); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Wait(%d) = %v", i, err)
		}
	}
	select {
	case <-ch:
	default:
		t.Fatal("Changed not closed by a write")
	}
	if ch2 := tk.Changed(); ch2 == ch {
		t.Fatal("Changed returned the same channel after it fired")
	}
	// Already present: immediate.
	if err := tk.Wait(context.Background(), 2); err != nil {
		t.Fatal(err)
	}

	// Reset wakes Changed, and Wait then waits again.
	ch = tk.Changed()
	if err := tk.Reset(testMeta("wait", 4000, 1000)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	default:
		t.Fatal("Changed not closed by Reset")
	}
	if tk.Has(2) || tk.Count() != 0 {
		t.Fatal("pieces survived Reset")
	}

	// Close wakes waiters with an error.
	done := make(chan error)
	go func() { done <- tk.Wait(context.Background(), 0) }()
	time.Sleep(20 * time.Millisecond)
	s.Close()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("Wait after close = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait not woken by close")
	}
}

func TestConcurrentWriters(t *testing.T) {
	s := newStore(t, "", WithSync(true))
	const length, ps = 200_000, 1000
	tk := create(t, s, testMeta("conc", length, ps))
	defer tk.Close()
	data := content(length, 7)
	n := tk.NumPieces()

	var wg sync.WaitGroup
	const writers = 8
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Every writer writes its own pieces, and all also race on
			// the first ten.
			for i := 0; i < n; i++ {
				if i%writers != w && i >= 10 {
					continue
				}
				p := piece(tk, data, i)
				if err := tk.WritePiece(i, p, SumOf(p)); err != nil {
					t.Errorf("WritePiece(%d): %v", i, err)
				}
			}
		}()
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		buf := make([]byte, ps)
		for {
			select {
			case <-stop:
				return
			case <-tk.Changed():
			}
			b := tk.Bitmap()
			for i := 0; i < n; i++ {
				if !b.Has(i) {
					continue
				}
				if _, err := tk.ReadAt(buf, int64(i)*ps); err != nil {
					t.Errorf("ReadAt: %v", err)
					return
				}
				if !bytes.Equal(buf, piece(tk, data, i)) {
					t.Errorf("piece %d visible before its data", i)
					return
				}
			}
			_ = tk.Count() + int(tk.BytesPresent())
		}
	}()
	wg.Wait()
	close(stop)
	readers.Wait()
	if !tk.Complete() || tk.BytesPresent() != length {
		t.Fatalf("Complete = %v, BytesPresent = %d", tk.Complete(), tk.BytesPresent())
	}
	got, _ := os.ReadFile(tk.DataPath())
	if !bytes.Equal(got, data) {
		t.Fatal("data differs")
	}
}

func TestSharedTask(t *testing.T) {
	s := newStore(t, "")
	m := testMeta("shared", 100, 10)
	a := create(t, s, m)
	b, err := s.Open(context.Background(), "shared")
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatal("same task opened twice in one process")
	}
	if _, err := a.PutPiece(0, content(10, 1)); err != nil {
		t.Fatal(err)
	}
	if !b.Has(0) {
		t.Fatal("handles do not share state")
	}
	stats, err := s.List()
	if err != nil || len(stats) != 1 || !stats[0].InUse || stats[0].Pieces != 1 || stats[0].BytesPresent != 10 {
		t.Fatalf("List = %+v, %v", stats, err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.PutPiece(1, content(10, 2)); err != nil {
		t.Fatalf("task closed while still referenced: %v", err)
	}
	if err := s.Remove("shared"); !errors.Is(err, ErrInUse) {
		t.Fatalf("Remove of open task = %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.PutPiece(2, content(10, 3)); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("write after last Close = %v", err)
	}
	stats, _ = s.List()
	if len(stats) != 1 || stats[0].InUse || stats[0].Pieces != 2 || stats[0].NumPieces != 10 {
		t.Fatalf("List after close = %+v", stats)
	}
}

func TestMetaHandling(t *testing.T) {
	s := newStore(t, "")
	m := Meta{TaskID: "meta", URL: "https://user:secret@origin/f?token=secret&x=1", Length: 5 << 20}
	tk := create(t, s, m)
	got := tk.Meta()
	if got.PieceSize != 1<<20 || got.CreatedAt.IsZero() {
		t.Fatalf("defaults not applied: %+v", got)
	}
	raw, err := os.ReadFile(filepath.Join(s.taskDir("meta"), metaFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "secret") || strings.Contains(got.URL, "secret") {
		t.Fatalf("credentials stored: %s", raw)
	}
	if err := tk.SetDigest("sha256:abc"); err != nil {
		t.Fatal(err)
	}
	tk.Close()
	tk, err = s.Open(context.Background(), "meta")
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Close()
	if tk.Meta().Digest != "sha256:abc" || !tk.Meta().CreatedAt.Equal(got.CreatedAt) {
		t.Fatalf("meta after reopen: %+v", tk.Meta())
	}
	if err := tk.Reset(Meta{TaskID: "other", Length: 1, PieceSize: 1}); err == nil {
		t.Fatal("Reset accepted another task's meta")
	}
	if err := tk.Reset(Meta{Length: 7, PieceSize: 2}); err != nil {
		t.Fatal(err)
	}
	if tk.NumPieces() != 4 || tk.Meta().TaskID != "meta" {
		t.Fatalf("after Reset: %d pieces, %+v", tk.NumPieces(), tk.Meta())
	}
	if _, err := tk.PutPiece(3, []byte{9}); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(s.taskDir("meta"), piecesFile)); fi.Size() != 4*32 {
		t.Fatalf("pieces file size %d", fi.Size())
	}
}

func TestTouch(t *testing.T) {
	s := newStore(t, "")
	tk := create(t, s, testMeta("touch", 10, 10))
	defer tk.Close()
	path := filepath.Join(s.taskDir("touch"), metaFile)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(path, old, old)
	tk.Touch() // within a second of opening: throttled
	if fi, _ := os.Stat(path); !fi.ModTime().Equal(old) {
		t.Fatal("Touch not throttled")
	}
	tk.mu.Lock()
	tk.lastTouch = time.Now().Add(-2 * time.Second)
	tk.mu.Unlock()
	tk.Touch()
	if fi, _ := os.Stat(path); time.Since(fi.ModTime()) > time.Minute {
		t.Fatal("Touch did not update the access time")
	}
}

func TestRacingWritersOfOnePiece(t *testing.T) {
	// Two sources disagree about a piece's content: whichever is recorded,
	// the data on disk must be the recorded one.
	s := newStore(t, "")
	m := testMeta("race1", 64<<10, 64<<10)
	tk := create(t, s, m)
	defer tk.Close()
	a, b := content(64<<10, 1), content(64<<10, 2)
	for round := 0; round < 200; round++ {
		var wg sync.WaitGroup
		for _, p := range [][]byte{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := tk.WritePiece(0, p, SumOf(p)); err != nil {
					t.Errorf("WritePiece: %v", err)
				}
			}()
		}
		wg.Wait()
		bad, err := tk.Verify()
		if err != nil || len(bad) != 0 {
			t.Fatalf("round %d: Verify = %v, %v", round, bad, err)
		}
		if err := tk.Reset(m); err != nil {
			t.Fatal(err)
		}
	}
}
