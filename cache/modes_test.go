package cache

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// checkModes fails for every directory under root not 0700 and every
// regular file not 0600.
func checkModes(t *testing.T, root string) (dirs, files int) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			dirs++
			if info.Mode().Perm() != 0o700 {
				t.Errorf("directory %s has mode %v, want 0700", path, info.Mode().Perm())
			}
		case d.Type().IsRegular():
			files++
			if info.Mode().Perm() != 0o600 {
				t.Errorf("file %s has mode %v, want 0600", path, info.Mode().Perm())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dirs, files
}

// TestStoreModes: whatever the umask, a store's directories are 0700 and
// its files (data, piece records, meta, lock, dirty marker) 0600; a store
// made with looser modes is tightened when opened.
func TestStoreModes(t *testing.T) {
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })
	tests := []struct {
		name   string
		loosen bool
	}{
		{"new store", false},
		{"existing store with 0755/0644 modes", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			s, err := Open(dir, WithLogger(quietLogger()))
			if err != nil {
				t.Fatal(err)
			}
			data := content(3*1024+5, 1)
			tk := create(t, s, testMeta("task1", int64(len(data)), 1024))
			writeAll(t, tk, data)
			if err := tk.Close(); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if tc.loosen {
				filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
					if err != nil {
						return err
					}
					if d.IsDir() {
						return os.Chmod(path, 0o755)
					}
					return os.Chmod(path, 0o644)
				})
				newStore(t, dir)
			}
			dirs, files := checkModes(t, dir)
			if dirs < 3 || files < 3 {
				t.Errorf("walked %d directories and %d files: the store is not where expected", dirs, files)
			}
		})
	}
}
