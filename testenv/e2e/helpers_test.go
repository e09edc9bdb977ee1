//go:build e2e

package e2e

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/cache"
	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/testenv"
)

const MiB = 1 << 20

var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBinaries()
	os.Exit(code)
}

func bins(t *testing.T) string {
	t.Helper()
	if binDir == "" {
		binDir = testenv.BuildBinaries(t)
	}
	return binDir
}

// result is dfget's machine-readable summary line.
type result struct {
	Length, Peers, Seed, Origin, Reused int64
	BackToSource                        bool
}

var resultLine = regexp.MustCompile(`dfget-result length=(\d+) peers=(\d+) seed=(\d+) origin=(\d+) reused=(\d+) elapsed_ms=\d+ back_to_source=(\w+)`)

func parseResult(t *testing.T, p *testenv.Proc) result {
	t.Helper()
	m := resultLine.FindStringSubmatch(p.Log())
	if m == nil {
		t.Fatalf("%s printed no result line; log:\n%s", p.Name, p.Tail(30))
	}
	n := func(s string) int64 { v, _ := strconv.ParseInt(s, 10, 64); return v }
	return result{Length: n(m[1]), Peers: n(m[2]), Seed: n(m[3]), Origin: n(m[4]), Reused: n(m[5]), BackToSource: m[6] == "true"}
}

// waitOK waits for a dfget and fails the test unless it exited 0.
func waitOK(t *testing.T, p *testenv.Proc, timeout time.Duration) {
	t.Helper()
	code, err := p.Wait(timeout)
	if err != nil || code != 0 {
		t.Fatalf("%s: exit %d, %v; log:\n%s", p.Name, code, err, p.Tail(40))
	}
}

// waitAll waits for all procs concurrently.
func waitAll(t *testing.T, ps []*testenv.Proc, timeout time.Duration) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]string, len(ps))
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, err := p.Wait(timeout)
			if err != nil || code != 0 {
				errs[i] = fmt.Sprintf("peer %d: exit %d, %v; log:\n%s", i, code, err, p.Tail(25))
			}
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e != "" {
			t.Fatal(e)
		}
	}
}

func assertSHA(t *testing.T, path, want string) {
	t.Helper()
	if got := testenv.SHA256File(t, path); got != want {
		t.Fatalf("%s: sha256 %s, want %s", path, got, want)
	}
}

func pieceSize(length int64) int64 { return manifest.PieceSizeFor(length) }

// waitPresent waits until the store in dataDir holds at least minRecords
// pieces; used to kill a peer mid-transfer.
func waitPresent(t *testing.T, dataDir string, minRecords int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cache.CountPresent(dataDir) >= minRecords {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never held %d pieces", dataDir, minRecords)
}

// presentPieces counts the pieces the store in dataDir holds.
func presentPieces(t *testing.T, dataDir string) int { return cache.CountPresent(dataDir) }

// evilPeer is a real HTTP server on loopback that joins a task, claims
// every piece, and serves garbage.
type evilPeer struct {
	id     string
	addr   string
	served int64
	mu     sync.Mutex
}

func startEvilPeer(t *testing.T, supernode, url string) *evilPeer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &evilPeer{id: "evil-peer", addr: ln.Addr().String()}
	var numPieces int
	var layout manifest.Layout
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/bitmap"):
			b := manifest.NewBitmap(numPieces)
			for i := 0; i < numPieces; i++ {
				b.Set(i)
			}
			json.NewEncoder(w).Encode(map[string]any{"numPieces": numPieces, "count": numPieces, "bitmap": b})
		case strings.Contains(r.URL.Path, "/pieces/"):
			i, _ := strconv.Atoi(r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:])
			_, n := layout.PieceRange(i)
			buf := make([]byte, n)
			for k := range buf {
				buf[k] = byte(k * 7)
			}
			e.mu.Lock()
			e.served += n
			e.mu.Unlock()
			w.Write(buf)
		default:
			http.NotFound(w, r)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	host := map[string]any{"hostname": "evil", "uploadAddr": e.addr}
	var reg struct {
		TaskID    string `json:"taskID"`
		Length    int64  `json:"length"`
		PieceSize int64  `json:"pieceSize"`
	}
	post(t, supernode, "/api/v1/tasks/register", map[string]any{"peerID": e.id, "host": host, "url": url}, &reg)
	layout = manifest.Layout{Length: reg.Length, PieceSize: reg.PieceSize}
	numPieces = layout.NumPieces()
	b := manifest.NewBitmap(numPieces)
	for i := 0; i < numPieces; i++ {
		b.Set(i)
	}
	post(t, supernode, "/api/v1/peers/announce", map[string]any{"peerID": e.id, "host": host,
		"tasks": []any{map[string]any{"taskID": reg.TaskID, "bitmap": b}}}, nil)
	return e
}

func post(t *testing.T, addr, path string, in, out any) {
	t.Helper()
	body, _ := json.Marshal(in)
	resp, err := http.Post("http://"+addr+path, "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("POST %s: %s", path, resp.Status)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("POST %s: decode: %v", path, err)
		}
	}
}

func md5File(t *testing.T, o *testenv.Origin, name string) string {
	t.Helper()
	resp, err := http.Get(o.URL(name))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h := md5.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		t.Fatal(err)
	}
	o.ResetCounters()
	return hex.EncodeToString(h.Sum(nil))
}

func mustGet(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}

// startPeers starts n dfget processes of url at once, each with its own data
// dir, writing out/f0, out/f1, ...
func startPeers(t *testing.T, bin, supernode, url, out string, n int, extra ...string) (procs []*testenv.Proc, dirs []string) {
	t.Helper()
	for i := 0; i < n; i++ {
		dir := t.TempDir()
		dirs = append(dirs, dir)
		args := append([]string{"--data-dir", dir}, extra...)
		procs = append(procs, testenv.Dfget(t, bin, supernode, url, filepath.Join(out, fmt.Sprintf("f%d", i)), args...))
	}
	return procs, dirs
}
