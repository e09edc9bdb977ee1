package cache

import (
	"errors"
	"os"
	"testing"
	"time"
)

// flip inverts one byte of piece i in the task's data file behind the
// store's back, and dates the change a second later than now (so that the
// test does not depend on the file system's timestamp granularity).
func flip(t *testing.T, tk *Task, i int) {
	t.Helper()
	off, _ := tk.Layout().PieceRange(i)
	f, err := os.OpenFile(tk.DataPath(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off+3); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off+3); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Second)
	if err := os.Chtimes(tk.DataPath(), later, later); err != nil {
		t.Fatal(err)
	}
}

func TestRotIsNoticedAndDropped(t *testing.T) {
	const length, ps = 5*1024 + 17, 1024
	data := content(length, 9)
	tests := []struct {
		name  string
		check func(tk *Task) ([]int, error)
	}{
		{"PieceReader", func(tk *Task) ([]int, error) {
			var bad []int
			for i := 0; i < tk.NumPieces(); i++ {
				_, err := tk.PieceReader(i)
				switch {
				case err == nil:
				case errors.Is(err, ErrCorrupt) && errors.Is(err, ErrNotFound):
					bad = append(bad, i)
				default:
					return bad, err
				}
			}
			return bad, nil
		}},
		{"CheckPieces", (*Task).CheckPieces},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, "")
			tk := create(t, s, testMeta("rot", length, ps))
			defer tk.Close()
			writeAll(t, tk, data)
			if bad, err := tc.check(tk); err != nil || len(bad) != 0 {
				t.Fatalf("intact task: bad %v, %v", bad, err)
			}
			flip(t, tk, 2)
			bad, err := tc.check(tk)
			if err != nil || len(bad) != 1 || bad[0] != 2 {
				t.Fatalf("after a flip in piece 2: bad %v, %v", bad, err)
			}
			checkPieces(t, tk, data, 0, 1, 3, 4, 5)
			if r := record(t, s, "rot", 2); !r.IsZero() {
				t.Error("the corrupt piece's record is still on disk")
			}
			// Fetched again, it is served again.
			p := piece(tk, data, 2)
			if err := tk.WritePiece(2, p, SumOf(p)); err != nil {
				t.Fatal(err)
			}
			if bad, err := tc.check(tk); err != nil || len(bad) != 0 {
				t.Fatalf("after the re-fetch: bad %v, %v", bad, err)
			}
			checkPieces(t, tk, data, 0, 1, 2, 3, 4, 5)
		})
	}
}

// A task opened from disk trusts none of its pieces until they are
// re-hashed: rot that happened while no process had it open is caught.
func TestRotWhileClosedIsNoticed(t *testing.T) {
	const length, ps = 4 * 1024, 1024
	data := content(length, 4)
	dir := t.TempDir()
	s := newStore(t, dir)
	tk := create(t, s, testMeta("cold", length, ps))
	writeAll(t, tk, data)
	path := tk.DataPath()
	if err := tk.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{^data[1500]}, 1500)
	f.Close()
	// Even with the old modification time restored.
	old := time.Now().Add(-time.Hour)
	os.Chtimes(path, old, old)
	tk, err = s.Open(t.Context(), "cold")
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Close()
	bad, err := tk.CheckPieces()
	if err != nil || len(bad) != 1 || bad[0] != 1 {
		t.Fatalf("bad %v, %v; want piece 1", bad, err)
	}
	if tk.Complete() {
		t.Error("task still complete")
	}
}
