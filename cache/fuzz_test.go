package cache

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// FuzzPieceRecords: whatever the pieces file of a task holds (torn writes,
// garbage, a wrong length), opening the task never panics, counts no more
// pieces than the layout has, and once checked serves only pieces whose
// bytes match their records.
func FuzzPieceRecords(f *testing.F) {
	f.Add([]byte{}, uint32(5000), uint8(0))
	f.Add(make([]byte, 3*sumSize), uint32(3*1024), uint8(1))
	f.Add([]byte("not a record"), uint32(1), uint8(2))
	rec := SumOf(make([]byte, 1024))
	f.Add(append(rec[:], make([]byte, sumSize+7)...), uint32(2048), uint8(1))
	f.Fuzz(func(t *testing.T, records []byte, length uint32, dirty uint8) {
		length %= 64 << 10
		dir := t.TempDir()
		s, err := Open(dir, WithLogger(quietLogger()))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ctx := context.Background()
		tk, err := s.Create(ctx, testMeta("fuzz", int64(length), 1024))
		if err != nil {
			t.Fatal(err)
		}
		if err := tk.Close(); err != nil {
			t.Fatal(err)
		}
		tdir := s.taskDir("fuzz")
		if err := os.WriteFile(filepath.Join(tdir, piecesFile), records, 0o600); err != nil {
			t.Fatal(err)
		}
		if dirty%2 == 1 {
			os.WriteFile(filepath.Join(tdir, dirtyFile), nil, 0o600)
		}
		tk, err = s.Open(ctx, "fuzz")
		if err != nil {
			return
		}
		defer tk.Close()
		if tk.Count() > tk.NumPieces() || tk.BytesPresent() > int64(length) || tk.BytesPresent() < 0 {
			t.Fatalf("count %d of %d pieces, %d bytes of %d", tk.Count(), tk.NumPieces(), tk.BytesPresent(), length)
		}
		if _, err := tk.CheckPieces(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < tk.NumPieces(); i++ {
			r, err := tk.PieceReader(i)
			if err != nil {
				continue
			}
			buf := make([]byte, r.Size())
			if _, err := r.ReadAt(buf, 0); err != nil {
				t.Fatal(err)
			}
			if sum, _ := tk.PieceDigest(i); sum != SumOf(buf) {
				t.Fatalf("piece %d served with a record its bytes do not match", i)
			}
		}
	})
}
