package peermetrics

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/damselfly-p2p/damselfly/p2p"
	"github.com/damselfly-p2p/damselfly/p2p/localapi"
)

// value reads a counter's or gauge's value.
func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// ndjson is a local API answer: events, one a line.
func ndjson(t *testing.T, events ...localapi.Event) string {
	t.Helper()
	var b strings.Builder
	for _, e := range events {
		line, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// TestLocalAPI: the wrapper records a download's bytes by source from its
// result line, however the answer is split into writes, and counts
// failures; the answer passes through unchanged.
func TestLocalAPI(t *testing.T) {
	res := &p2p.Result{Length: 1000, FromPeers: 600, FromSeed: 300, FromOrigin: 100, Elapsed: time.Second}
	tests := []struct {
		name                        string
		answer                      string
		chunk                       int
		peers, seed, origin, ok, ko float64
	}{
		{"result in one write", ndjson(t, localapi.Event{Done: 10, Total: 1000}, localapi.Event{Result: res}), 0, 600, 300, 100, 1, 0},
		{"result split mid-line", ndjson(t, localapi.Event{Done: 10, Total: 1000}, localapi.Event{Result: res}), 7, 600, 300, 100, 1, 0},
		{"error", ndjson(t, localapi.Event{Done: 10, Total: 1000}, localapi.Event{Error: "origin said 404"}), 5, 0, 0, 0, 0, 1},
		{"cut short", ndjson(t, localapi.Event{Done: 10, Total: 1000}), 0, 0, 0, 0, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewPeer(prometheus.NewRegistry(), nil, 0)
			inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if got := value(t, m.active); got != 1 {
					t.Errorf("active downloads during the download = %v, want 1", got)
				}
				b := []byte(tt.answer)
				for len(b) > 0 {
					n := len(b)
					if tt.chunk > 0 && tt.chunk < n {
						n = tt.chunk
					}
					w.Write(b[:n])
					b = b[n:]
				}
			})
			rec := httptest.NewRecorder()
			m.LocalAPI(inner).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/v1/download", strings.NewReader("{}")))
			if rec.Body.String() != tt.answer {
				t.Fatalf("answer changed: %q", rec.Body.String())
			}
			for _, c := range []struct {
				name string
				got  float64
				want float64
			}{
				{"peers", value(t, m.bytes.WithLabelValues("peers")), tt.peers},
				{"seed", value(t, m.bytes.WithLabelValues("seed")), tt.seed},
				{"origin", value(t, m.bytes.WithLabelValues("origin")), tt.origin},
				{"ok", value(t, m.downloads.WithLabelValues("ok")), tt.ok},
				{"error", value(t, m.downloads.WithLabelValues("error")), tt.ko},
				{"active", value(t, m.active), 0},
			} {
				if c.got != c.want {
					t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
				}
			}
		})
	}
}

// TestLocalAPIOtherRoutes: other routes are not counted as downloads.
func TestLocalAPIOtherRoutes(t *testing.T) {
	m := NewPeer(prometheus.NewRegistry(), nil, 0)
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	m.LocalAPI(inner).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/api/v1/tasks", nil))
	if got := value(t, m.downloads.WithLabelValues("error")) + value(t, m.downloads.WithLabelValues("ok")); got != 0 {
		t.Fatalf("a GET /api/v1/tasks counted as %v downloads", got)
	}
}

func TestEvicted(t *testing.T) {
	m := NewPeer(prometheus.NewRegistry(), nil, 0)
	m.Evicted(2, 300)
	m.Evicted(1, 50)
	if tasks, bytes := value(t, m.evictedTasks), value(t, m.evictedBytes); tasks != 3 || bytes != 350 {
		t.Fatalf("evicted %v tasks, %v bytes; want 3, 350", tasks, bytes)
	}
}

func TestFUSE(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := NewFUSE(reg)
	reads := []struct {
		n     int
		errno syscall.Errno
	}{{4096, 0}, {100, 0}, {0, syscall.EIO}, {0, syscall.EIO}, {0, syscall.EINTR}, {0, syscall.ENOENT}}
	for _, r := range reads {
		f.Read(time.Millisecond, r.n, r.errno)
	}
	if got := value(t, f.readBytes); got != 4196 {
		t.Errorf("read bytes = %v, want 4196", got)
	}
	for errno, want := range map[string]float64{"EIO": 2, "EINTR": 1, "other": 1} {
		if got := value(t, f.failed.WithLabelValues(errno)); got != want {
			t.Errorf("errors{errno=%s} = %v, want %v", errno, got, want)
		}
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range fams {
		if fam.GetName() == "damselfly_fuse_read_duration_seconds" {
			if c := fam.GetMetric()[0].GetHistogram().GetSampleCount(); c != uint64(len(reads)) {
				t.Fatalf("histogram count = %d, want %d", c, len(reads))
			}
			return
		}
	}
	t.Fatal("no read latency histogram")
}
