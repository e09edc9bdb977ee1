package localapi_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/cache"
	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/p2p"
	"github.com/damselfly-p2p/damselfly/p2p/localapi"
	"github.com/damselfly-p2p/damselfly/testenv"
)

func quietLogger() logrus.FieldLogger { return testenv.QuietLogger() }

// sockDir returns a short temporary directory (unix socket paths are
// limited to about 100 bytes; t.TempDir() can be longer).
func sockDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "la")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// daemon is a local API server over a peer without supernode (downloads
// go straight to the origin).
type daemon struct {
	sock string
	peer *p2p.Peer
	stop func()
}

func startDaemon(t *testing.T, sock string) *daemon {
	t.Helper()
	peer, err := p2p.New(p2p.Config{DataDir: t.TempDir(), UploadListen: "127.0.0.1:0", Log: quietLogger()})
	if err != nil {
		t.Fatalf("p2p.New: %v", err)
	}
	t.Cleanup(func() { peer.Close() })
	ln, err := localapi.Listen(sock)
	if err != nil {
		t.Fatalf("Listen(%s): %v", sock, err)
	}
	srv := &http.Server{Handler: (&localapi.Server{Peer: peer, Log: quietLogger()}).Handler()}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
	var once sync.Once
	d := &daemon{sock: sock, peer: peer, stop: func() {
		once.Do(func() {
			srv.Close()
			<-served
		})
	}}
	t.Cleanup(d.stop)
	return d
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("output: %v", err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestAlive(t *testing.T) {
	dir := sockDir(t)
	sock := filepath.Join(dir, "d.sock")
	c := localapi.NewClient(sock)
	if c.Alive(ctx(t)) {
		t.Fatal("Alive with no daemon")
	}
	d := startDaemon(t, sock)
	if !c.Alive(ctx(t)) {
		t.Fatal("not Alive with a daemon serving")
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket %v (err %v), want a socket with mode 0660", fi.Mode(), err)
	}
	d.stop()
	if c.Alive(ctx(t)) {
		t.Error("Alive after the daemon stopped")
	}
	// A server that answers but is not healthy is not alive.
	other := filepath.Join(dir, "other.sock")
	ln, err := net.Listen("unix", other)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.NotFoundHandler()}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	if localapi.NewClient(other).Alive(ctx(t)) {
		t.Error("Alive for a server answering 404 to /healthz")
	}
}

func TestDownload(t *testing.T) {
	origin := testenv.NewOrigin(t)
	const size = 2<<20 + 4321
	sha := origin.AddRandom("f", size, 3)
	d := startDaemon(t, filepath.Join(sockDir(t), "d.sock"))
	c := localapi.NewClient(d.sock)

	out := filepath.Join(t.TempDir(), "out")
	var mu sync.Mutex
	var last [2]int64
	events := 0
	res, err := c.Download(ctx(t), localapi.DownloadRequest{URL: origin.URL("f"), Output: out, Digest: "sha256:" + sha},
		func(done, total int64) {
			mu.Lock()
			defer mu.Unlock()
			events++
			last = [2]int64{done, total}
		})
	if err != nil {
		t.Fatal(err)
	}
	if got := sha256File(t, out); got != sha {
		t.Errorf("output sha256 %s, origin %s", got, sha)
	}
	wantID, _ := manifest.TaskID(origin.URL("f"), "", nil)
	if res.TaskID != wantID || res.Length != size || res.FromOrigin != size || !res.BackToSource {
		t.Errorf("result %+v, want task %s, %d bytes from the origin", res, wantID, size)
	}
	mu.Lock()
	if events == 0 || last != [2]int64{size, size} {
		t.Errorf("progress: %d events, last %v; want a final %d/%d", events, last, size, size)
	}
	mu.Unlock()

	// The daemon's store lists the task.
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "unix", d.sock)
	}}}
	t.Cleanup(hc.CloseIdleConnections)
	resp, err := hc.Get("http://dfdaemon/api/v1/tasks")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []cache.TaskStat
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatalf("tasks: %v", err)
	}
	if len(list) != 1 || list[0].Meta.TaskID != wantID || list[0].Pieces != list[0].NumPieces || list[0].BytesPresent != size {
		t.Errorf("tasks %+v, want %s complete", list, wantID)
	}

	// Again: from the store.
	out2 := filepath.Join(t.TempDir(), "out2")
	before := origin.BytesServed("f")
	res, err = c.Download(ctx(t), localapi.DownloadRequest{URL: origin.URL("f"), Output: out2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := sha256File(t, out2); got != sha || res.Reused != size || origin.BytesServed("f") != before {
		t.Errorf("second download: sha256 %s, result %+v, origin +%d bytes; want %s all reused",
			got, res, origin.BytesServed("f")-before, sha)
	}
}

func TestDownloadErrors(t *testing.T) {
	origin := testenv.NewOrigin(t)
	sha := origin.AddRandom("f", 1<<20, 3)
	d := startDaemon(t, filepath.Join(sockDir(t), "d.sock"))
	c := localapi.NewClient(d.sock)
	outDir := t.TempDir()
	tests := []struct {
		name  string
		req   localapi.DownloadRequest
		inErr string
	}{
		{"relative output", localapi.DownloadRequest{URL: origin.URL("f"), Output: "out"}, "absolute"},
		{"dot-relative output", localapi.DownloadRequest{URL: origin.URL("f"), Output: "./sub/out"}, "absolute"},
		{"no output", localapi.DownloadRequest{URL: origin.URL("f")}, "absolute"},
		{"malformed URL", localapi.DownloadRequest{URL: "ftp://x/y", Output: filepath.Join(outDir, "o")}, "invalid URL"},
		{"origin 404", localapi.DownloadRequest{URL: origin.URL("missing"), Output: filepath.Join(outDir, "o")}, "404"},
		{"wrong digest", localapi.DownloadRequest{URL: origin.URL("f"), Output: filepath.Join(outDir, "o"),
			Digest: "sha256:" + strings.Repeat("0", 64)}, sha},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := c.Download(ctx(t), tc.req, nil)
			if err == nil {
				t.Fatalf("download succeeded: %+v", res)
			}
			if !strings.Contains(err.Error(), tc.inErr) {
				t.Errorf("error %q does not mention %q", err, tc.inErr)
			}
			ents, _ := os.ReadDir(outDir)
			for _, e := range ents {
				t.Errorf("failed download left %s", e.Name())
			}
		})
	}
	if _, err := os.Stat("out"); err == nil {
		t.Error("a relative output was written relative to the test's directory")
	}
	if !c.Alive(ctx(t)) {
		t.Error("daemon not alive after failed downloads")
	}
}

func TestListen(t *testing.T) {
	t.Run("live socket is refused", func(t *testing.T) {
		sock := filepath.Join(sockDir(t), "d.sock")
		startDaemon(t, sock)
		ln, err := localapi.Listen(sock)
		if err == nil {
			ln.Close()
			t.Fatal("second Listen on a live socket succeeded")
		}
		if !strings.Contains(err.Error(), "already listening") {
			t.Errorf("error %q", err)
		}
		if !localapi.NewClient(sock).Alive(ctx(t)) {
			t.Error("the live daemon stopped answering after the refused Listen")
		}
	})
	t.Run("stale socket is replaced", func(t *testing.T) {
		sock := filepath.Join(sockDir(t), "d.sock")
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		ln.Close() // a daemon killed with -9 leaves its socket behind
		if _, err := os.Stat(sock); err != nil {
			t.Fatalf("stale socket not left behind: %v", err)
		}
		startDaemon(t, sock)
		if !localapi.NewClient(sock).Alive(ctx(t)) {
			t.Error("not alive on the replaced socket")
		}
	})
	t.Run("missing directory is created", func(t *testing.T) {
		sock := filepath.Join(sockDir(t), "run", "damselfly", "d.sock")
		startDaemon(t, sock)
		if !localapi.NewClient(sock).Alive(ctx(t)) {
			t.Error("not alive")
		}
	})
}

// TestDaemonGoesAway: a daemon that stops mid-download is an error for the
// client, not a hang or a success.
func TestDaemonGoesAway(t *testing.T) {
	origin := testenv.NewOrigin(t, testenv.WithUploadCap(2<<20))
	origin.AddRandom("f", 8<<20, 3)
	d := startDaemon(t, filepath.Join(sockDir(t), "d.sock"))
	c := localapi.NewClient(d.sock)
	outDir := t.TempDir()
	errc := make(chan error, 1)
	dctx := ctx(t)
	go func() {
		_, err := c.Download(dctx, localapi.DownloadRequest{URL: origin.URL("f"), Output: filepath.Join(outDir, "o")}, nil)
		errc <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for origin.BytesServed("f") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("download never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	d.stop()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("download reported success after the daemon went away")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("client still waiting 10s after the daemon went away")
	}
	if _, err := os.Stat(filepath.Join(outDir, "o")); err == nil {
		t.Error("output written although the download was cut")
	}
}

// TestRemoteLazyMode reads lazily through the daemon: the bytes are the
// origin's, and the mode the daemon fetches in (direct: it has no
// supernode) reaches the reader (dfmount's user.damselfly.mode).
func TestRemoteLazyMode(t *testing.T) {
	dir := sockDir(t)
	sock := filepath.Join(dir, "d.sock")
	startDaemon(t, sock)
	origin := testenv.NewOrigin(t)
	origin.AddRandom("f", 3<<20+17, 5)
	want, err := io.ReadAll(testenv.RandomReader(3<<20+17, 5))
	if err != nil {
		t.Fatal(err)
	}
	c := localapi.NewClient(sock)
	rl, err := c.OpenLazy(ctx(t), localapi.LazyOpenRequest{URL: origin.URL("f")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rl.Close() })
	buf := make([]byte, 4096)
	if _, err := rl.ReadAtContext(ctx(t), buf, 2<<20); err != nil || !bytes.Equal(buf, want[2<<20:2<<20+4096]) {
		t.Fatalf("read through the daemon: %v (bytes equal: %v)", err, bytes.Equal(buf, want[2<<20:2<<20+4096]))
	}
	if m := rl.Mode(); m != "direct" {
		t.Errorf("mode %q through the daemon, want direct", m)
	}
}
