package cache

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestExport(t *testing.T) {
	s := newStore(t, t.TempDir())
	data := content(3<<20+5, 7)
	tk := create(t, s, testMeta("exp", int64(len(data)), 1<<20))
	writeAll(t, tk, data)
	dst := filepath.Join(t.TempDir(), "out")

	// A second holder blocks the export.
	other, err := s.Open(context.Background(), "exp")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Export(tk, dst); !errors.Is(err, ErrInUse) {
		t.Fatalf("export with two holders: %v, want ErrInUse", err)
	}
	other.Close()

	if err := s.Export(tk, dst); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("exported file differs (%d bytes, %v)", len(got), err)
	}
	if _, err := s.Open(context.Background(), "exp"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("task still in the store after export: %v", err)
	}
	if list, _ := s.List(); len(list) != 0 {
		t.Fatalf("store lists %d tasks after export", len(list))
	}
}

func TestExportIncomplete(t *testing.T) {
	s := newStore(t, t.TempDir())
	data := content(2<<20, 3)
	tk := create(t, s, testMeta("inc", int64(len(data)), 1<<20))
	if err := s.Export(tk, filepath.Join(t.TempDir(), "x")); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("export of an empty task: %v", err)
	}
	tk.Close()
}
