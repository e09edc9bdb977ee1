package cache

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/testenv"
)

// quietLogger discards log output in tests.
func quietLogger() logrus.FieldLogger { return testenv.QuietLogger() }

// newStore opens a store in dir (a fresh temporary one if empty) and closes
// it at the end of the test.
func newStore(t *testing.T, dir string, opts ...Option) *Store {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	s, err := Open(dir, append([]Option{WithLogger(quietLogger())}, opts...)...)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// content returns deterministic pseudo-random test content.
func content(n int64, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// piece returns piece i of data under the task's layout.
func piece(tk *Task, data []byte, i int) []byte {
	off, n := tk.Layout().PieceRange(i)
	return data[off : off+n]
}

// testMeta returns the meta of a task.
func testMeta(id string, length, pieceSize int64) Meta {
	return Meta{TaskID: id, URL: "http://origin/" + id, Length: length, PieceSize: pieceSize}
}

// create creates a task with a short timeout and closes it at the end of the
// test (a no-op if the test closed it).
func create(t *testing.T, s *Store, m Meta) *Task {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tk, err := s.Create(ctx, m)
	if err != nil {
		t.Fatalf("Create(%s): %v", m.TaskID, err)
	}
	return tk
}

// writeAll writes every piece of data into tk.
func writeAll(t *testing.T, tk *Task, data []byte) {
	t.Helper()
	for i := 0; i < tk.NumPieces(); i++ {
		p := piece(tk, data, i)
		if err := tk.WritePiece(i, p, SumOf(p)); err != nil {
			t.Fatalf("WritePiece(%d): %v", i, err)
		}
	}
}

// checkPieces checks that exactly the pieces in want are present and that
// each present piece reads back as in data.
func checkPieces(t *testing.T, tk *Task, data []byte, want ...int) {
	t.Helper()
	set := map[int]bool{}
	for _, i := range want {
		set[i] = true
	}
	for i := 0; i < tk.NumPieces(); i++ {
		if tk.Has(i) != set[i] {
			t.Errorf("Has(%d) = %v, want %v", i, tk.Has(i), set[i])
			continue
		}
		if !set[i] {
			continue
		}
		r, err := tk.PieceReader(i)
		if err != nil {
			t.Fatalf("PieceReader(%d): %v", i, err)
		}
		got, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("read piece %d: %v", i, err)
		}
		if !bytes.Equal(got, piece(tk, data, i)) {
			t.Errorf("piece %d content differs", i)
		}
		if sum, ok := tk.PieceDigest(i); !ok || sum != SumOf(got) {
			t.Errorf("PieceDigest(%d) = %v,%v, want %v", i, sum, ok, SumOf(got))
		}
	}
	if tk.Count() != len(want) {
		t.Errorf("Count = %d, want %d", tk.Count(), len(want))
	}
}

// record reads record i of a task's pieces file.
func record(t *testing.T, s *Store, id string, i int) Sum {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.taskDir(id), piecesFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < (i+1)*sumSize {
		return Sum{}
	}
	return Sum(b[i*sumSize:])
}

// exists reports whether path exists.
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
