//go:build e2e

package e2e

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/xattr"

	"github.com/damselfly-p2p/damselfly/fusefs"
	"github.com/damselfly-p2p/damselfly/testenv"
)

// mountMode reads the user.damselfly.mode xattr of path.
func mountMode(t *testing.T, path string) string {
	t.Helper()
	v, err := xattr.Get(path, fusefs.XattrMode)
	if err != nil {
		t.Fatalf("getxattr %s %s: %v", path, fusefs.XattrMode, err)
	}
	return string(v)
}

// readRanges reads each [off, off+n) of f and compares it with want.
func readRanges(t *testing.T, f *os.File, offs []int64, n int64, want map[int64][]byte, what string) {
	t.Helper()
	buf := make([]byte, n)
	for _, off := range offs {
		if _, err := f.ReadAt(buf, off); err != nil {
			t.Fatalf("%s: read %d bytes at %d: %v", what, n, off, err)
		}
		if !bytes.Equal(buf, want[off]) {
			t.Fatalf("%s: bytes at %d differ from the origin's", what, off)
		}
	}
}

// TestDfmountDirect mounts an HTTP URL with no supernode reachable: reads
// go straight to the origin for the pieces they touch only; a kill -9 and
// remount resumes from the data dir; a supernode started later is joined
// without remounting; with the origin gone, present bytes still read.
func TestDfmountDirect(t *testing.T) {
	bin := bins(t)
	const size = 64 << 20
	const n = 8 << 10
	origin := testenv.NewOrigin(t)
	origin.AddRandom("f.bin", size, 31)
	url := origin.URL("f.bin")
	ps := pieceSize(size)
	// Scattered reads: a piece start, a middle, a piece boundary
	// straddled, the last bytes.
	offs := []int64{0, 5*ps + 12345, 9*ps - n/2, size - n}
	want := map[int64][]byte{}
	touched := map[int64]bool{}
	for _, off := range offs {
		want[off] = rangeGet(t, url, off, n)
		// The kernel may read ahead up to 128 KiB past a read.
		for p := off / ps; p <= min(off+n+128<<10, size-1)/ps; p++ {
			touched[p] = true
		}
	}
	// The supernode's address is known before anything listens there.
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(origin.Addr())...)
	sn.Proc.Kill9()

	dir, mnt := t.TempDir(), t.TempDir()
	args := []string{"--supernode", sn.Addr, "--data-dir", dir, "--no-daemon", "--upload-listen", "127.0.0.1:0",
		"--prefetch=false", "--read-timeout", "10s"}
	origin.ResetCounters()
	p := startMount(t, bin, url, mnt, args...)
	file := filepath.Join(mnt, "f.bin")
	if m := mountMode(t, file); m != "direct" {
		t.Fatalf("mode %q with no supernode, want direct", m)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	readRanges(t, f, offs, n, want, "direct mount")
	f.Close()
	served := origin.BytesServed("f.bin")
	t.Logf("direct reads of %d ranges: the origin sent %d bytes (%d pieces of %d touched, file %d)",
		len(offs), served, len(touched), ps, size)
	if served < int64(len(offs))*n || served > int64(len(touched))*ps {
		t.Fatalf("origin sent %d bytes; want at most the %d touched pieces (%d bytes)", served, len(touched), int64(len(touched))*ps)
	}
	if !strings.Contains(p.Log(), "straight from the origin") {
		t.Errorf("stderr does not say the mount reads straight from the origin:\n%s", p.Tail(50))
	}

	// A supernode that starts afterwards is joined without remounting.
	sn.Restart(t)
	deadline := time.Now().Add(90 * time.Second)
	for mountMode(t, file) != "p2p" {
		if time.Now().After(deadline) {
			t.Fatalf("mount did not join the supernode started after it:\n%s", p.Tail(30))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if task := sn.Status(t).Task(url); task == nil || task.Peers < 1 {
		t.Fatalf("supernode status after the join: task %+v, want the mount's peer", task)
	}
	st := sn.Status(t)
	if st.TotalPeers < 1 {
		t.Fatalf("supernode status shows no peer after the join: %+v", st.Peers)
	}

	// kill -9 and remount with the supernode gone again: the pieces read
	// before are not fetched again.
	p.Kill9()
	sn.Proc.Kill9()
	present := presentPieces(t, dir)
	if present < len(offs) {
		t.Fatalf("store holds %d pieces after the kill; want at least %d", present, len(offs))
	}
	origin.ResetCounters()
	p = startMount(t, bin, url, mnt, args...)
	f, err = os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	readRanges(t, f, offs, n, want, "remount")
	if got := origin.BytesServed("f.bin"); got > ps {
		t.Fatalf("remount re-fetched %d bytes of present pieces", got)
	}

	// Origin gone too: present bytes still read, missing ones fail (EIO).
	origin.Close()
	readRanges(t, f, offs, n, want, "offline")
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, 20*ps); !errors.Is(err, syscall.EIO) {
		t.Fatalf("offline read of a missing piece: %v, want EIO", err)
	}
	f.Close()
	stopMount(t, p)
}

// TestDfmountDirectPrefetch: with no supernode configured at all and the
// prefetch on, the whole file arrives from the origin behind the reads,
// once, and equals the origin's.
func TestDfmountDirectPrefetch(t *testing.T) {
	bin := bins(t)
	const size = 24<<20 + 5
	origin := testenv.NewOrigin(t)
	want := origin.AddRandom("p.bin", size, 32)
	mnt := t.TempDir()
	p := startMount(t, bin, origin.URL("p.bin"), mnt, "--data-dir", t.TempDir(), "--no-daemon",
		"--upload-listen", "127.0.0.1:0")
	file := filepath.Join(mnt, "p.bin")
	waitComplete(t, file, time.Minute)
	if got := sha256Of(t, file); got != want {
		t.Fatalf("sha256 %s, want %s", got, want)
	}
	if served := origin.BytesServed("p.bin"); served > size+pieceSize(size) {
		t.Errorf("origin sent %d bytes for a file of %d", served, size)
	}
	stopMount(t, p)
}
