package cli

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestSecureSocket(t *testing.T) {
	gid := os.Getgid()
	tests := []struct {
		name, group string
		wantGID     int
	}{
		{"no group", "", gid},
		{"numeric group", strconv.Itoa(gid), gid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.sock")
			ln, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			os.Chmod(path, 0o777)
			g, err := LookupGroup(tc.group)
			if err != nil {
				t.Fatal(err)
			}
			if err := SecureSocket(path, g); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o660 {
				t.Errorf("socket mode %v, want 0660", fi.Mode().Perm())
			}
		})
	}
	if _, err := LookupGroup("no-such-group-damselfly"); err == nil {
		t.Error("LookupGroup of an unknown group succeeded")
	}
}
