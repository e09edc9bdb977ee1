package fusefs

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/pkg/xattr"
)

func TestCheckPath(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"a/b.bin", "a/b.bin", true},
		{"a//b", "a/b", true},
		{"./a", "a", true},
		{"dir/", "dir", true},
		{"../etc/passwd", "", false},
		{"a/../../b", "", false},
		{"a/..", "", false},
		{"/abs", "", false},
		{"", "", false},
		{".", "", false},
	}
	for _, tt := range tests {
		got, err := CheckPath(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("CheckPath(%q) = %q, %v; want %q ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseDataset(t *testing.T) {
	base := "http://o/ds/manifest.json"
	tests := []struct {
		name, doc, wantErr string
	}{
		{"ok", `{"version":1,"files":[{"path":"a/b","size":3,"url":"b.bin"}],"symlinks":[{"path":"d/l","target":"../a/b"}]}`, ""},
		{"bad version", `{"version":2,"files":[]}`, "version"},
		{"escape", `{"version":1,"files":[{"path":"../x","size":1,"url":"x"}]}`, "escapes"},
		{"absolute", `{"version":1,"files":[{"path":"/x","size":1,"url":"x"}]}`, "absolute"},
		{"negative size", `{"version":1,"files":[{"path":"x","size":-1,"url":"x"}]}`, "negative"},
		{"no url", `{"version":1,"files":[{"path":"x","size":1}]}`, "bad url"},
		{"bad scheme", `{"version":1,"files":[{"path":"x","size":1,"url":"ftp://h/x"}]}`, "scheme"},
		{"bad mode", `{"version":1,"files":[{"path":"x","size":1,"url":"x","mode":"rwx"}]}`, "mode"},
		{"symlink escape", `{"version":1,"files":[],"symlinks":[{"path":"../l","target":"x"}]}`, "escapes"},
		{"not json", `{`, "dataset manifest"},
		{"over 1 PiB", `{"version":1,"files":[{"path":"x","size":1125899906842625,"url":"x"}]}`, "1 PiB"},
		{"max int64", `{"version":1,"files":[{"path":"x","size":9223372036854775807,"url":"x"}]}`, "1 PiB"},
		{"file is also a dir", `{"version":1,"files":[{"path":"a/b","size":1,"url":"x"},{"path":"a","size":1,"url":"y"}]}`, "also the directory"},
		{"twice", `{"version":1,"files":[{"path":"a","size":1,"url":"x"},{"path":"./a","size":1,"url":"y"}]}`, "twice"},
		{"symlink is a dir", `{"version":1,"files":[{"path":"l/f","size":1,"url":"x"}],"symlinks":[{"path":"l","target":"f"}]}`, "also the directory"},
		{"symlink absolute", `{"version":1,"files":[],"symlinks":[{"path":"l","target":"/etc/passwd"}]}`, "leaves the mount"},
		{"symlink climbs out", `{"version":1,"files":[],"symlinks":[{"path":"d/l","target":"../../etc"}]}`, "leaves the mount"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := ParseDataset([]byte(tt.doc), base)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if d.Files[0].URL != "http://o/ds/b.bin" {
					t.Fatalf("relative URL resolved to %s", d.Files[0].URL)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestCheckEntryNames(t *testing.T) {
	tests := []struct {
		names []string
		ok    bool
	}{
		{[]string{"bin/", "bin/sh", "./etc/passwd", "./", "/"}, true},
		{[]string{"bin/../../etc/shadow"}, false},
		{[]string{"/etc/shadow"}, false},
		{[]string{strings.Repeat("a", 300)}, false},
		{[]string{strings.Repeat("a/", 2100)}, false},
	}
	for _, tt := range tests {
		var ents []*estargz.TOCEntry
		for _, n := range tt.names {
			ents = append(ents, &estargz.TOCEntry{Name: n, Type: "dir"})
		}
		rt := &rawTOC{toc: &estargz.JTOC{Version: 1, Entries: ents}, tocOffset: 100}
		if err := rt.check(); (err == nil) != tt.ok {
			t.Errorf("%.60v: err = %v, want ok=%v", tt.names, err, tt.ok)
		}
	}
	bad := &rawTOC{toc: &estargz.JTOC{Version: 1, Entries: []*estargz.TOCEntry{{Name: "x", Type: "hardlink", LinkName: "../../y"}}}}
	if err := bad.check(); err == nil {
		t.Error("escaping hardlink target accepted")
	}
}

func TestNewTreeErrors(t *testing.T) {
	tests := []struct {
		name string
		ents []Entry
	}{
		{"duplicate", []Entry{{Path: "a", Mode: 0o444}, {Path: "a", Mode: 0o444}}},
		{"under a file", []Entry{{Path: "a", Mode: 0o444}, {Path: "a/b", Mode: 0o444}}},
		{"escape", []Entry{{Path: "../a", Mode: 0o444}}},
		{"file then its child", []Entry{{Path: "a/b", Mode: 0o444}, {Path: "a", Mode: 0o444}}},
		{"hard link to nothing", []Entry{{Path: "a", Link: "b"}}},
		{"hard link to a dir", []Entry{{Path: "d", Mode: os.ModeDir | 0o755}, {Path: "a", Link: "d"}}},
		{"root not a dir", []Entry{{Path: ".", Mode: 0o444}}},
	}
	for _, tt := range tests {
		if _, err := NewTree(tt.ents, time.Second); err == nil {
			t.Errorf("%s: NewTree accepted it", tt.name)
		}
	}
}

// memData is in-memory FileData; block makes reads wait for ctx.
type memData struct {
	data  []byte
	block bool
}

func (m *memData) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if m.block {
		<-ctx.Done()
		return 0, ctx.Err()
	}
	return copy(p, m.data[off:]), nil
}
func (m *memData) Progress() (int64, int64) { return int64(len(m.data)) / 2, int64(len(m.data)) }
func (m *memData) PassthroughPath() string  { return "" }

// TestMountTree mounts a real FUSE tree over in-memory data.
func TestMountTree(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	content := bytes.Repeat([]byte("0123456789"), 10000)
	ents := []Entry{
		{Path: "dir", Mode: os.ModeDir | 0o750, Xattrs: map[string][]byte{"trusted.overlay.opaque": []byte("y")}},
		{Path: "dir/file", Mode: 0o640, Size: int64(len(content)), Data: &memData{data: content}, Digest: "sha256:abc", Source: "http://o/f"},
		{Path: "slow", Mode: 0o444, Size: 100, Data: &memData{data: make([]byte, 100), block: true}},
		{Path: "link", Mode: os.ModeSymlink | 0o777, Target: "dir/file"},
		{Path: "dir/gone", Mode: os.ModeDevice | os.ModeCharDevice},
		{Path: "suid", Mode: 0o755 | os.ModeSetuid, Size: 0, Data: &memData{}},
	}
	root, err := NewTree(ents, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	root.Observe(rec)
	mnt := t.TempDir()
	server, err := Mount(mnt, root, MountOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := server.Unmount(); err != nil {
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	})
	got, err := os.ReadFile(filepath.Join(mnt, "dir/file"))
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("read: %v (%d bytes)", err, len(got))
	}
	if fi, _ := os.Stat(filepath.Join(mnt, "dir")); fi.Mode().Perm() != 0o750 || !fi.IsDir() {
		t.Errorf("dir mode %v", fi.Mode())
	}
	if fi, _ := os.Stat(filepath.Join(mnt, "suid")); fi.Mode()&os.ModeSetuid == 0 {
		t.Errorf("setuid bit lost: %v", fi.Mode())
	}
	if target, _ := os.Readlink(filepath.Join(mnt, "link")); target != "dir/file" {
		t.Errorf("readlink = %q", target)
	}
	if fi, err := os.Lstat(filepath.Join(mnt, "dir/gone")); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Errorf("whiteout device: %v %v", fi, err)
	}
	if v, err := xattr.Get(filepath.Join(mnt, "dir"), "trusted.overlay.opaque"); err != nil || string(v) != "y" {
		t.Errorf("opaque xattr = %q %v", v, err)
	}
	tests := []struct{ name, want string }{
		{XattrProgress, "50000/100000"},
		{XattrDigest, "sha256:abc"},
		{XattrSource, "http://o/f"},
	}
	for _, tt := range tests {
		if v, err := xattr.Get(filepath.Join(mnt, "dir/file"), tt.name); err != nil || string(v) != tt.want {
			t.Errorf("%s = %q %v, want %q", tt.name, v, err, tt.want)
		}
	}
	names, err := xattr.List(filepath.Join(mnt, "dir/file"))
	if err != nil || len(names) != 3 {
		t.Errorf("listxattr = %v %v", names, err)
	}
	// A read that cannot be served fails with EIO after the read timeout.
	f, err := os.Open(filepath.Join(mnt, "slow"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = f.Read(make([]byte, 10))
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("blocked read = %v, want EIO", err)
	}
	// The mount's observer saw the reads: all the file's bytes, and the
	// EIO (the kernel may retry the read, so at least one).
	if _, n, errnos := rec.snapshot(); n != len(content) || errnos[syscall.EIO] < 1 {
		t.Fatalf("observer saw %d bytes and errnos %v; want %d bytes and an EIO", n, errnos, len(content))
	}
	// Writes are refused.
	if _, err := os.OpenFile(filepath.Join(mnt, "dir/file"), os.O_WRONLY, 0); err == nil {
		t.Fatal("opened for writing")
	}
	// A second mount on a live one is refused; the live one is reported.
	if err := PrepareMountpoint(mnt); err == nil || !strings.Contains(err.Error(), "already") {
		t.Fatalf("PrepareMountpoint on a live mount: %v", err)
	}
	if typ, ok := MountedType(mnt); !ok || typ != "fuse."+FSName {
		t.Fatalf("MountedType = %q %v", typ, ok)
	}
}

func TestFileName(t *testing.T) {
	tests := map[string]string{
		"http://h/a/b.bin?x=1": "b.bin",
		"http://h/":            "download",
		"http://h":             "download",
		"http://h/dir/":        "dir",
	}
	for in, want := range tests {
		if got := FileName(in); got != want {
			t.Errorf("FileName(%q) = %q, want %q", in, got, want)
		}
	}
}
