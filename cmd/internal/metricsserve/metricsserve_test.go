package metricsserve

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestStart: /metrics parses and holds the registry's metrics; pprof is
// served only with Pprof; an empty Listen starts nothing.
func TestStart(t *testing.T) {
	tests := []struct {
		name      string
		pprof     bool
		wantPprof int
	}{
		{"metrics only", false, http.StatusNotFound},
		{"with pprof", true, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := NewRegistry()
			c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "test_total", Help: "A test counter."})
			c.Add(7)
			reg.MustRegister(c)
			s, err := Start(Options{Listen: "127.0.0.1:0", Pprof: tt.pprof}, reg, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			code, body := get(t, "http://"+s.Addr()+"/metrics")
			if code != http.StatusOK {
				t.Fatalf("/metrics: %d", code)
			}
			parser := expfmt.NewTextParser(model.UTF8Validation)
			fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
			if err != nil {
				t.Fatalf("parse /metrics: %v", err)
			}
			if got := fams["damselfly_test_total"].GetMetric()[0].GetCounter().GetValue(); got != 7 {
				t.Fatalf("damselfly_test_total = %v, want 7", got)
			}
			if _, ok := fams["go_goroutines"]; !ok {
				t.Fatal("no Go runtime metrics")
			}
			if code, _ := get(t, "http://"+s.Addr()+"/debug/pprof/"); code != tt.wantPprof {
				t.Fatalf("/debug/pprof/: %d, want %d", code, tt.wantPprof)
			}
		})
	}
	s, err := Start(Options{}, NewRegistry(), nil)
	if s != nil || err != nil {
		t.Fatalf("Start without Listen = %v, %v; want nil, nil", s, err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close of a nil Server: %v", err)
	}
}

func TestLoopback(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:9100", true},
		{"[::1]:9100", true},
		{"localhost:9100", true},
		{"0.0.0.0:9100", false},
		{"[::]:9100", false},
		{"10.0.0.5:9100", false},
		{"no port", false},
	}
	for _, tt := range tests {
		if got := Loopback(tt.addr); got != tt.want {
			t.Errorf("Loopback(%q) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

// TestHandlerGatherer reads the metrics an authenticated handler serves,
// and fails when the handler refuses.
func TestHandlerGatherer(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "inner_peers", Help: "Peers."})
	g.Set(3)
	reg.MustRegister(g)
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		metrics.ServeHTTP(w, r)
	}))
	tests := []struct {
		name    string
		token   string
		wantErr bool
	}{
		{"right token", "s3cret", false},
		{"wrong token", "nope", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hg := HandlerGatherer{Handler: mux, Path: "/metrics", Header: http.Header{"Authorization": {"Bearer " + tt.token}}}
			fams, err := hg.Gather()
			if tt.wantErr {
				if err == nil {
					t.Fatal("gathered from a handler that refused")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(fams) != 1 || fams[0].GetName() != "inner_peers" || fams[0].GetMetric()[0].GetGauge().GetValue() != 3 {
				t.Fatalf("gathered %v", fams)
			}
		})
	}
}
