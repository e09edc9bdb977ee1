package supernode_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/cache"
	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/origin"
	"github.com/damselfly-p2p/damselfly/supernode"
	"github.com/damselfly-p2p/damselfly/testenv"
	"github.com/damselfly-p2p/damselfly/trust/egress"
	"github.com/damselfly-p2p/damselfly/wire"
)

// logBuffer collects log output (safe for concurrent use).
type logBuffer = testenv.LogBuffer

// node is a supernode served on 127.0.0.1.
type node struct {
	sn   *supernode.Supernode
	addr string
	base string
	logs *logBuffer
	stop func()
}

// fastSource is an origin client that gives up quickly on 5xx and dials
// through policy.
func fastSource(log logrus.FieldLogger, policy *egress.Policy) *origin.Client {
	return origin.New(origin.WithRetries(2), origin.WithBackoff(time.Millisecond, 10*time.Millisecond), origin.WithLogger(log),
		origin.WithPolicy(policy))
}

// allowLoopback is an origin policy that lets the supernode fetch from the
// tests' loopback origins.
func allowLoopback(t *testing.T) *egress.Policy {
	t.Helper()
	p, err := egress.New(egress.Options{Allow: []string{"127.0.0.0/8"}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startNode starts a supernode with cfg (DataDir defaults to a temporary
// directory) on a free port. Its logs, at debug level, go to node.logs.
func startNode(t *testing.T, cfg supernode.Config) *node {
	t.Helper()
	return startNodeOn(t, listen(t), cfg)
}

// listen opens a listener on a free loopback port.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// startNodeOn is startNode serving on ln, whose address is known before
// (cluster members name each other).
func startNodeOn(t *testing.T, ln net.Listener, cfg supernode.Config) *node {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	cfg.AdvertiseAddr = ln.Addr().String()
	logs := &logBuffer{}
	l := logrus.New()
	l.SetOutput(logs)
	l.SetLevel(logrus.DebugLevel)
	cfg.Log = l
	if cfg.Egress == nil {
		cfg.Egress = allowLoopback(t)
	}
	if cfg.Source == nil {
		cfg.Source = fastSource(l, cfg.Egress)
	}
	sn, err := supernode.New(cfg)
	if err != nil {
		ln.Close()
		t.Fatalf("supernode.New: %v", err)
	}
	if err := sn.AddOwnAddr(cfg.AdvertiseAddr); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: sn.Handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
	var once sync.Once
	n := &node{sn: sn, addr: cfg.AdvertiseAddr, base: "http://" + cfg.AdvertiseAddr, logs: logs}
	n.stop = func() {
		once.Do(func() {
			srv.Close()
			<-served
			if err := sn.Close(); err != nil {
				t.Errorf("supernode Close: %v", err)
			}
		})
	}
	t.Cleanup(n.stop)
	return n
}

// answer is a raw HTTP answer.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) errorResponse(t *testing.T) wire.ErrorResponse {
	t.Helper()
	var e wire.ErrorResponse
	if err := json.Unmarshal(a.body, &e); err != nil {
		t.Fatalf("error body is not an ErrorResponse: %v (%q)", err, a.body)
	}
	return e
}

func httpDo(t *testing.T, method, url string, body []byte) answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, url, err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

func (n *node) post(t *testing.T, path string, v any) answer {
	t.Helper()
	var body []byte
	switch v := v.(type) {
	case []byte:
		body = v
	case string:
		body = []byte(v)
	default:
		var err error
		if body, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	return httpDo(t, http.MethodPost, n.base+path, body)
}

func (n *node) get(t *testing.T, path string) answer {
	t.Helper()
	return httpDo(t, http.MethodGet, n.base+path, nil)
}

// register registers and expects success.
func (n *node) register(t *testing.T, req wire.RegisterRequest) *wire.RegisterResponse {
	t.Helper()
	a := n.post(t, "/api/v1/tasks/register", req)
	if a.status != http.StatusOK {
		t.Fatalf("register %s: status %d: %s", manifest.RedactURL(req.URL), a.status, a.body)
	}
	var resp wire.RegisterResponse
	if err := json.Unmarshal(a.body, &resp); err != nil {
		t.Fatalf("decode RegisterResponse: %v", err)
	}
	return &resp
}

func (n *node) taskStatus(t *testing.T, id string) wire.TaskStatus {
	t.Helper()
	a := n.get(t, "/api/v1/tasks/"+id)
	if a.status != http.StatusOK {
		t.Fatalf("task %s: status %d: %s", id, a.status, a.body)
	}
	var ts wire.TaskStatus
	if err := json.Unmarshal(a.body, &ts); err != nil {
		t.Fatal(err)
	}
	return ts
}

func (n *node) status(t *testing.T) (wire.Status, []byte) {
	t.Helper()
	a := n.get(t, "/api/v1/status")
	if a.status != http.StatusOK {
		t.Fatalf("status: %d: %s", a.status, a.body)
	}
	var st wire.Status
	if err := json.Unmarshal(a.body, &st); err != nil {
		t.Fatal(err)
	}
	return st, a.body
}

// waitDone waits until the seed of task id holds everything.
func (n *node) waitDone(t *testing.T, id string) wire.TaskStatus {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ts := n.taskStatus(t, id)
		if ts.State == "done" && ts.SeedPieces == ts.NumPieces {
			return ts
		}
		if ts.State == "failed" || time.Now().After(deadline) {
			t.Fatalf("seed of %s: state %q (%d/%d pieces, error %q), want done", id, ts.State, ts.SeedPieces, ts.NumPieces, ts.Error)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// seedContent reads every piece of task id from the seed's upload server
// and returns the sha256 (hex) of their concatenation.
func (n *node) seedContent(t *testing.T, reg *wire.RegisterResponse) string {
	t.Helper()
	h := sha256.New()
	l := reg.Layout()
	for i := 0; i < l.NumPieces(); i++ {
		a := n.get(t, fmt.Sprintf("/peer/tasks/%s/pieces/%d?urgent=1", reg.TaskID, i))
		if a.status != http.StatusOK {
			t.Fatalf("piece %d from the seed: status %d: %s", i, a.status, a.body)
		}
		if _, want := l.PieceRange(i); int64(len(a.body)) != want {
			t.Fatalf("piece %d from the seed: %d bytes, want %d", i, len(a.body), want)
		}
		if got, want := a.header.Get("X-Damselfly-Piece-Digest"), cache.SumOf(a.body).String(); got != want {
			t.Errorf("piece %d: digest header %q, bytes hash to %s", i, got, want)
		}
		h.Write(a.body)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// pieceDigests returns the "sha256:<hex>" digests of the pieces of the
// content testenv.Origin.AddRandom stores for size and seed.
func pieceDigests(t *testing.T, size, seed int64) []string {
	t.Helper()
	data, err := io.ReadAll(testenv.RandomReader(size, seed))
	if err != nil {
		t.Fatal(err)
	}
	l := manifest.NewLayout(size)
	out := make([]string, l.NumPieces())
	for i := range out {
		off, n := l.PieceRange(i)
		out[i] = cache.SumOf(data[off : off+n]).String()
	}
	return out
}

// metric returns the value of an unlabelled metric in Prometheus text.
func metric(t *testing.T, text, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("metric %s not in /metrics:\n%s", name, text)
	return 0
}

// peerHost is the host of a fake peer (nothing listens at its address).
func peerHost(name string, port int) wire.Host {
	return wire.Host{Hostname: name, UploadAddr: "127.0.0.1:" + strconv.Itoa(port), UploadSlots: 4}
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

// waitFor polls cond for up to 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
