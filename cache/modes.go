package cache

import (
	"io/fs"
	"os"
	"path/filepath"
)

// The store keeps other people's content (private images, datasets): its
// directories and files are for the owner (the daemon's user) alone.
const (
	dirMode  fs.FileMode = 0o700
	fileMode fs.FileMode = 0o600
)

// tightenModes restricts a store created before these modes (0755/0644) to
// dirMode and fileMode: the root, the tasks directory and every task's
// directory and files. Symbolic links are left alone (not followed).
func tightenModes(root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil // removed meanwhile (another process's GC)
			}
			return err
		}
		want := fileMode
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			return nil
		case d.IsDir():
			want = dirMode
		case !d.Type().IsRegular():
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if info.Mode().Perm()&^want == 0 {
			return nil
		}
		if err := os.Chmod(path, info.Mode().Perm()&want); err != nil && !os.IsNotExist(err) {
			return err
		}
		return nil
	})
}
