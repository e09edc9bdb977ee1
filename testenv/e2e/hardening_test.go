//go:build e2e

package e2e

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/testenv"
)

// stalledWithin is how long a server may keep a stalled client (issue 14).
const stalledWithin = 60 * time.Second

// stall opens a connection with dial, sends what, then neither sends nor
// reads more; it reports whether the server closed the connection within
// stalledWithin.
func stall(t *testing.T, dial func() (net.Conn, error), what string) error {
	c, err := dial()
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, what); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	start := time.Now()
	c.SetReadDeadline(start.Add(stalledWithin + 5*time.Second))
	_, err = io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("still connected after %v", time.Since(start).Round(time.Second))
	}
	if d := time.Since(start); d > stalledWithin {
		return fmt.Errorf("dropped only after %v", d.Round(time.Second))
	}
	return nil
}

// TestHardeningStalledClients: a slow-body client and an idle keep-alive
// client of the supernode and of the daemon's local API and mirror are
// disconnected within a minute, while the servers keep serving others.
func TestHardeningStalledClients(t *testing.T) {
	bin := bins(t)
	origin := testenv.NewOrigin(t)
	want := origin.AddRandom("f.bin", 3*MiB, 21)
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(origin.Addr())...)
	mirror := net.JoinHostPort("127.0.0.1", fmt.Sprint(testenv.FreePort(t)))
	d := testenv.StartDaemon(t, bin, sn.Addr, "--proxy-listen", mirror)
	tcp := func(addr string) func() (net.Conn, error) {
		return func() (net.Conn, error) { return net.Dial("tcp", addr) }
	}
	unix := func() (net.Conn, error) { return net.Dial("unix", d.Sock) }
	slowBody := "POST /api/v1/tasks/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"peerID\":"
	idle := "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
	cases := []struct {
		name string
		dial func() (net.Conn, error)
		send string
	}{
		{"supernode slow body", tcp(sn.Addr), slowBody},
		{"supernode idle keep-alive", tcp(sn.Addr), idle},
		{"supernode silent", tcp(sn.Addr), ""},
		{"local API slow body", unix, strings.Replace(slowBody, "/api/v1/tasks/register", "/api/v1/download", 1)},
		{"local API idle keep-alive", unix, idle},
		{"mirror idle keep-alive", tcp(mirror), "GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n"},
	}
	var wg sync.WaitGroup
	errs := make([]error, len(cases))
	for i, c := range cases {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = stall(t, c.dial, c.send) }()
	}
	// Meanwhile the servers serve others.
	out := filepath.Join(t.TempDir(), "out")
	p := testenv.Dfget(t, bin, sn.Addr, origin.URL("f.bin"), out, "--daemon-sock", d.Sock)
	waitOK(t, p, time.Minute)
	assertSHA(t, out, want)
	wg.Wait()
	for i, c := range cases {
		if errs[i] != nil {
			t.Errorf("%s: %v", c.name, errs[i])
		}
	}
	if resp, err := http.Get(sn.URL("/healthz")); err != nil || resp.StatusCode != 200 {
		t.Errorf("supernode after the stalled clients: %v", err)
	} else {
		resp.Body.Close()
	}
}

// findData returns the data files of the tasks stored under dataDir.
func findData(t *testing.T, dataDir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dataDir, func(path string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() && e.Name() == "data" {
			if _, err := os.Stat(filepath.Join(filepath.Dir(path), "meta.json")); err == nil {
				out = append(out, path)
			}
		}
		return nil
	})
	return out
}

// TestHardeningRot: a byte flipped in a piece the daemon stores is noticed
// (and logged) at the next download of the URL through the daemon, which
// exits 0 with the right bytes; the daemon keeps serving its other tasks.
func TestHardeningRot(t *testing.T) {
	bin := bins(t)
	origin := testenv.NewOrigin(t)
	want := origin.AddRandom("f.bin", 9*MiB, 22)
	other := origin.AddRandom("g.bin", 3*MiB, 23)
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(origin.Addr())...)
	d := testenv.StartDaemon(t, bin, sn.Addr)
	dir := t.TempDir()
	for _, name := range []string{"f.bin", "g.bin"} {
		p := testenv.Dfget(t, bin, sn.Addr, origin.URL(name), filepath.Join(dir, "first-"+name), "--daemon-sock", d.Sock)
		waitOK(t, p, time.Minute)
	}
	var target string
	for _, path := range findData(t, d.DataDir) {
		if fi, err := os.Stat(path); err == nil && fi.Size() == 9*MiB {
			target = path
		}
	}
	if target == "" {
		t.Fatalf("no stored data file of 9 MiB under %s", d.DataDir)
	}
	f, err := os.OpenFile(target, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	off := int64(pieceSize(9*MiB) + 12345) // in piece 1
	f.ReadAt(b, off)
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	f.Close()

	out := filepath.Join(dir, "second")
	p := testenv.Dfget(t, bin, sn.Addr, origin.URL("f.bin"), out, "--daemon-sock", d.Sock)
	waitOK(t, p, time.Minute)
	assertSHA(t, out, want)
	if !strings.Contains(d.Proc.Log(), "corrupt") {
		t.Errorf("the daemon did not log the rot:\n%s", d.Proc.Tail(20))
	}
	// Another peer still gets the other task, the daemon among its parents,
	// and nobody reported the daemon.
	out2 := filepath.Join(dir, "other")
	p = testenv.Dfget(t, bin, sn.Addr, origin.URL("g.bin"), out2)
	waitOK(t, p, time.Minute)
	assertSHA(t, out2, other)
	if strings.Contains(sn.Proc.Log(), "parent reported") {
		t.Errorf("a parent was reported:\n%s", sn.Proc.Tail(20))
	}
}

// TestHardeningBackToSourceLimit: `dfget -s 1M` of 4 MiB with no supernode
// takes at least 3 s (a lower bound, robust to a slow machine).
func TestHardeningBackToSourceLimit(t *testing.T) {
	bin := bins(t)
	origin := testenv.NewOrigin(t)
	want := origin.AddRandom("f.bin", 4*MiB, 24)
	out := filepath.Join(t.TempDir(), "out")
	start := time.Now()
	p := testenv.Start(t, bin, "dfget", origin.URL("f.bin"), "-o", out, "-s", "1M", "--data-dir", t.TempDir(),
		"--upload-listen", "127.0.0.1:0", "--no-progress")
	waitOK(t, p, time.Minute)
	elapsed := time.Since(start)
	assertSHA(t, out, want)
	if elapsed < 3*time.Second {
		t.Fatalf("4 MiB at -s 1M took %v, want at least 3s", elapsed)
	}
	if r := parseResult(t, p); !r.BackToSource {
		t.Errorf("result %+v, want back to source", r)
	}
}

// TestHardeningPrivateStore: after downloads (one-shot dfget, through a
// daemon, the supernode's seed), nothing under the data dirs is readable,
// writable or searchable by other users.
func TestHardeningPrivateStore(t *testing.T) {
	bin := bins(t)
	origin := testenv.NewOrigin(t)
	origin.AddRandom("f.bin", 2*MiB, 25)
	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(origin.Addr())...)
	d := testenv.StartDaemon(t, bin, sn.Addr)
	dir := t.TempDir()
	oneShot := t.TempDir()
	waitOK(t, testenv.Dfget(t, bin, sn.Addr, origin.URL("f.bin"), filepath.Join(dir, "a"), "--daemon-sock", d.Sock), time.Minute)
	waitOK(t, testenv.Dfget(t, bin, sn.Addr, origin.URL("f.bin"), filepath.Join(dir, "b"), "--data-dir", oneShot,
		"--keep-seeding", "1s"), time.Minute)
	for _, root := range []string{d.DataDir, oneShot} {
		filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
			if err != nil || path == root {
				return nil
			}
			fi, err := e.Info()
			if err != nil || fi.Mode()&fs.ModeSocket != 0 {
				return nil
			}
			if fi.Mode().Perm()&0o077 != 0 {
				t.Errorf("%s has mode %v: other users can reach it", path, fi.Mode().Perm())
			}
			return nil
		})
	}
}
