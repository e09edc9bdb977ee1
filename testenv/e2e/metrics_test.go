//go:build e2e

package e2e

import (
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/damselfly-p2p/damselfly/testenv"
)

// metricsAddr is a free loopback address for a --metrics-listen.
func metricsAddr(t *testing.T) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t)))
}

// scrape fetches http://addr/metrics and parses it with the Prometheus
// text parser; a page that does not parse fails the test.
func scrape(t *testing.T, addr string) metricFamilies {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape %s: %s: %s", addr, resp.Status, b)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse the metrics of %s: %v", addr, err)
	}
	return fams
}

type metricFamilies map[string]*dto.MetricFamily

// value is the value of the counter or gauge name whose labels include
// labels (pairs); it fails the test when there is none.
func (m metricFamilies) value(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	fam, ok := m[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, mt := range fam.GetMetric() {
		have := map[string]string{}
		for _, l := range mt.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case mt.Counter != nil:
			return mt.Counter.GetValue()
		case mt.Gauge != nil:
			return mt.Gauge.GetValue()
		case mt.Untyped != nil:
			return mt.Untyped.GetValue()
		}
	}
	t.Fatalf("no %s with labels %v", name, labels)
	return 0
}

// histogramCount is the sample count of histogram name.
func (m metricFamilies) histogramCount(t *testing.T, name string) uint64 {
	t.Helper()
	fam, ok := m[name]
	if !ok || len(fam.GetMetric()) == 0 || fam.GetMetric()[0].Histogram == nil {
		t.Fatalf("no histogram %s", name)
	}
	return fam.GetMetric()[0].GetHistogram().GetSampleCount()
}

// TestMetrics: every daemon's --metrics-listen serves /metrics that parse,
// and the byte counters add up to the bytes the test moved. A supernode
// (cluster and admin tokens on), two dfdaemons fetching the same file in
// turn through dfget, and a dfmount reading it through FUSE.
func TestMetrics(t *testing.T) {
	bin := bins(t)
	const size = 24 * MiB
	origin := testenv.NewOrigin(t)
	want := origin.AddRandom("m.bin", size, 31)
	url := origin.URL("m.bin")
	tr := testenv.NewTrust(t, testenv.TrustOptions{ClusterToken: true, AdminToken: true})

	snMetrics := metricsAddr(t)
	sn := tr.StartSupernode(t, bin, append(testenv.AllowOrigins(origin.Addr()), "--metrics-listen", snMetrics)...)
	// The main port's /metrics still wants the admin token.
	if resp, err := http.Get(sn.URL("/metrics")); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("main-port /metrics without a token: %v %v, want 401", resp, err)
	} else {
		resp.Body.Close()
	}

	type daemon struct {
		d       *testenv.Daemon
		metrics string
	}
	var ds []daemon
	for i := 0; i < 2; i++ {
		addr := metricsAddr(t)
		ds = append(ds, daemon{tr.StartDaemon(t, bin, sn.Addr, "--metrics-listen", addr, "--pprof"), addr})
	}
	for i, d := range ds {
		out := filepath.Join(t.TempDir(), "m.bin")
		p := tr.Dfget(t, bin, sn.Addr, url, out, "--daemon-sock", d.d.Sock)
		waitOK(t, p, 2*time.Minute)
		assertSHA(t, out, want)
		m := scrape(t, d.metrics)
		peers := m.value(t, "damselfly_peer_download_bytes_total", "source", "peers")
		seed := m.value(t, "damselfly_peer_download_bytes_total", "source", "seed")
		fromOrigin := m.value(t, "damselfly_peer_download_bytes_total", "source", "origin")
		t.Logf("daemon %d: peers %v, seed %v, origin %v", i, peers, seed, fromOrigin)
		if sum := peers + seed + fromOrigin; sum != size {
			t.Errorf("daemon %d: bytes from peers + seed + origin = %v, want the file size %d", i, sum, size)
		}
		if ok := m.value(t, "damselfly_peer_downloads_total", "result", "ok"); ok != 1 {
			t.Errorf("daemon %d: %v downloads ok, want 1", i, ok)
		}
		if active := m.value(t, "damselfly_peer_downloads_active"); active != 0 {
			t.Errorf("daemon %d: %v downloads active after the download", i, active)
		}
		if c := m.value(t, "damselfly_peer_cache_bytes"); c != size {
			t.Errorf("daemon %d: cache holds %v bytes, want %d", i, c, size)
		}
		if m.histogramCount(t, "damselfly_peer_download_duration_seconds") != 1 {
			t.Errorf("daemon %d: download duration histogram count != 1", i)
		}
		// Every fetched piece is timed, whatever its source.
		var pieces uint64
		for _, mt := range m["damselfly_peer_piece_duration_seconds"].GetMetric() {
			pieces += mt.GetHistogram().GetSampleCount()
		}
		fetched := m.value(t, "damselfly_peer_download_bytes_total", "source", "peers") +
			m.value(t, "damselfly_peer_download_bytes_total", "source", "seed")
		if fetched > 0 && pieces == 0 {
			t.Errorf("daemon %d: fetched %v bytes from parents, piece latency histogram is empty", i, fetched)
		}
	}
	// What the second daemon got from peers, the first one uploaded.
	first, second := scrape(t, ds[0].metrics), scrape(t, ds[1].metrics)
	if up, got := first.value(t, "damselfly_peer_upload_bytes_total"), second.value(t, "damselfly_peer_download_bytes_total", "source", "peers"); up != got {
		t.Errorf("first daemon uploaded %v bytes, second got %v from peers", up, got)
	}
	if resp, err := http.Get("http://" + ds[0].metrics + "/debug/pprof/cmdline"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/debug/pprof/cmdline with --pprof: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// The supernode: its own counters, through the unauthenticated
	// listener; the seed read the file from the origin once and served
	// what the daemons report as from the seed.
	m := scrape(t, snMetrics)
	if got := m.value(t, "damselfly_supernode_origin_bytes_total"); got < size {
		t.Errorf("supernode origin bytes %v, want at least %d", got, size)
	}
	seedBytes := first.value(t, "damselfly_peer_download_bytes_total", "source", "seed") +
		second.value(t, "damselfly_peer_download_bytes_total", "source", "seed")
	if got := m.value(t, "damselfly_supernode_seed_served_bytes_total"); got < seedBytes {
		t.Errorf("seed served %v bytes, daemons got %v from it", got, seedBytes)
	}
	if got := m.value(t, "damselfly_supernode_registrations_total"); got < 2 {
		t.Errorf("supernode registrations %v, want at least 2", got)
	}
	if _, ok := m["process_resident_memory_bytes"]; !ok {
		t.Error("supernode metrics listener has no process metrics")
	}

	// dfmount with an embedded peer: reading the whole file through FUSE
	// shows in its read histogram and bytes, with no EIO.
	mnt, mountMetrics := t.TempDir(), metricsAddr(t)
	args := append(tr.PeerArgs(), "--supernode", sn.Addr, "--data-dir", t.TempDir(), "--no-daemon",
		"--upload-listen", "127.0.0.1:0", "--metrics-listen", mountMetrics)
	p := startMount(t, bin, url, mnt, args...)
	if got := sha256Of(t, filepath.Join(mnt, "m.bin")); got != want {
		t.Fatalf("sha256 through the mount %s, want %s", got, want)
	}
	mm := scrape(t, mountMetrics)
	if n := mm.histogramCount(t, "damselfly_fuse_read_duration_seconds"); n == 0 {
		t.Error("FUSE read histogram is empty after reading the file")
	}
	if got := mm.value(t, "damselfly_fuse_read_bytes_total"); got < size {
		t.Errorf("FUSE reads returned %v bytes, want at least the file size %d", got, size)
	}
	if got := mm.value(t, "damselfly_fuse_read_errors_total", "errno", "EIO"); got != 0 {
		t.Errorf("%v EIO reads", got)
	}
	if got := mm.value(t, "damselfly_peer_cache_bytes"); got < size {
		t.Errorf("embedded peer's cache holds %v bytes, want the file (%d)", got, size)
	}
	stopMount(t, p)
}
