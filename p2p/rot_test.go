package p2p_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/p2p"
	"github.com/damselfly-p2p/damselfly/testenv"
)

// flipStored inverts one byte of piece i of the stored task behind the
// store's back, dated a second ahead (independent of timestamp
// granularity).
func flipStored(t *testing.T, p *p2p.Peer, taskID string, i int) {
	t.Helper()
	tk, release, ok := p.Lookup(taskID)
	if !ok {
		t.Fatalf("task %s not held", taskID)
	}
	off, _ := tk.Layout().PieceRange(i)
	path := tk.DataPath()
	release()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	f.ReadAt(b, off+10)
	b[0] ^= 0x01
	if _, err := f.WriteAt(b, off+10); err != nil {
		t.Fatal(err)
	}
	f.Close()
	later := time.Now().Add(time.Second)
	os.Chtimes(path, later, later)
}

// A byte flipped in a stored piece never reaches an output: the next
// download of the URL drops the rotten piece, fetches it again and writes
// the right bytes.
func TestRottenStoreIsRepaired(t *testing.T) {
	origin := testenv.NewOrigin(t)
	const size = 9<<20 + 321
	sha := origin.AddRandom("f", size, 11)
	tests := []struct {
		name       string
		supernodes func(t *testing.T) []string
		p2p        bool // the piece comes back from the swarm, not the origin
	}{
		{"through a supernode", func(t *testing.T) []string { return []string{startSupernode(t)} }, true},
		{"no supernode", func(t *testing.T) []string { return nil }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newPeer(t, tc.supernodes(t)...)
			dir := t.TempDir()
			if _, err := download(t, p, p2p.Request{URL: origin.URL("f"), Output: filepath.Join(dir, "first")}); err != nil {
				t.Fatal(err)
			}
			id, err := manifest.TaskID(origin.URL("f"), "", nil)
			if err != nil {
				t.Fatal(err)
			}
			flipStored(t, p, id, 1)
			out := filepath.Join(dir, "second")
			res, err := download(t, p, p2p.Request{URL: origin.URL("f"), Output: out})
			if err != nil {
				t.Fatalf("download after the flip: %v", err)
			}
			if got := fileSHA256(t, out); got != sha {
				t.Fatalf("output sha256 %s, want %s: rotten bytes reached the output", got, sha)
			}
			// Through a supernode the piece comes back from the swarm (the
			// seed here), without one from the origin.
			if fetched := res.FromPeers + res.FromSeed + res.FromOrigin; fetched == 0 {
				t.Errorf("the rotten piece was not fetched again (result %+v)", res)
			}
			if tc.p2p && (res.BackToSource || res.FromOrigin > 0) {
				t.Errorf("the rotten piece came from the origin, not the swarm (result %+v)", res)
			}
		})
	}
}

// A store whose disk fills up fails the download at once with
// ErrStoreFull (wrapping ENOSPC) instead of stalling and then asking the
// origin for pieces there is no room for.
func TestStoreDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	origin := testenv.NewOrigin(t)
	origin.AddRandom("f", 9<<20, 12)
	tests := []struct {
		name       string
		supernodes func(t *testing.T) []string
	}{
		{"through a supernode", func(t *testing.T) []string { return []string{startSupernode(t)} }},
		{"no supernode", func(t *testing.T) []string { return nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := smallTmpfs(t, "2m")
			p, err := p2p.New(p2p.Config{DataDir: dir, Supernodes: tc.supernodes(t), UploadListen: "127.0.0.1:0",
				StallTimeout: time.Minute, Log: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			_, err = download(t, p, p2p.Request{URL: origin.URL("f"), Output: filepath.Join(t.TempDir(), "out")})
			if !errors.Is(err, p2p.ErrStoreFull) || !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("download to a full store: err = %v, want ErrStoreFull wrapping ENOSPC", err)
			}
		})
	}
}

// smallTmpfs mounts a tmpfs of size under a temp dir, unmounted at cleanup.
func smallTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}
