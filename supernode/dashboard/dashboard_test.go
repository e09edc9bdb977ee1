package dashboard

import (
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func TestSeries(t *testing.T) {
	tests := []struct {
		name     string
		size     int
		add      []float64
		want     []float64
		wantLast float64
	}{
		{"empty", 3, nil, []float64{}, 0},
		{"partial", 3, []float64{1, 2}, []float64{1, 2}, 2},
		{"exactly full", 3, []float64{1, 2, 3}, []float64{1, 2, 3}, 3},
		{"wrapped", 3, []float64{1, 2, 3, 4, 5}, []float64{3, 4, 5}, 5},
		{"size below one keeps one", 0, []float64{1, 2}, []float64{2}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSeries(tt.size)
			for _, v := range tt.add {
				s.Add(v)
			}
			if got := s.Values(); !slices.Equal(got, tt.want) {
				t.Errorf("Values() = %v, want %v", got, tt.want)
			}
			if got := s.Last(); got != tt.wantLast {
				t.Errorf("Last() = %v, want %v", got, tt.wantLast)
			}
		})
	}
}

func TestOriginSavedPercent(t *testing.T) {
	tests := []struct {
		name                  string
		peers, seed, fromOrig int64
		want                  float64 // -1: nil
	}{
		{"nothing delivered", 0, 0, 100, -1},
		{"six copies from one origin copy", 5 << 20, 1 << 20, 1 << 20, 100 * (1 - 1.0/6)},
		{"all from origin", 0, 1 << 20, 1 << 20, 0},
		{"origin fetched more than delivered", 0, 1 << 20, 3 << 20, 0},
		{"no origin bytes (cached)", 4 << 20, 0, 0, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := OriginSavedPercent(tt.peers, tt.seed, tt.fromOrig)
			switch {
			case tt.want < 0 && got != nil:
				t.Fatalf("got %v, want nil", *got)
			case tt.want >= 0 && got == nil:
				t.Fatalf("got nil, want %v", tt.want)
			case got != nil && math.Abs(*got-tt.want) > 1e-9:
				t.Fatalf("got %v, want %v", *got, tt.want)
			}
		})
	}
}

func TestTotalsAdd(t *testing.T) {
	var sum Totals
	sum.Add(Totals{Tasks: 2, ActiveTasks: 1, Peers: 3, BytesFromPeers: 30, BytesFromSeed: 10, BytesFromOrigin: 10, Throughput: 5})
	sum.Add(Totals{Tasks: 1, Peers: 1, IsolatedPeers: 1, BytesFromSeed: 40, BytesFromOrigin: 40, Throughput: 1})
	if sum.Tasks != 3 || sum.ActiveTasks != 1 || sum.Peers != 4 || sum.IsolatedPeers != 1 || sum.Throughput != 6 {
		t.Fatalf("counts wrong: %+v", sum)
	}
	if sum.OriginSaved == nil || *sum.OriginSaved != 37.5 {
		t.Fatalf("origin saved = %v, want 37.5 (50 of 80 bytes from the origin)", sum.OriginSaved)
	}
}

func TestTaskName(t *testing.T) {
	tests := []struct{ url, want string }{
		{"http://127.0.0.1:8080/big.bin", "127.0.0.1:8080/big.bin"},
		{"https://user:pw@files.example/a/b/c.tar?sig=secret", "files.example/…/c.tar"},
		{"https://registry.example/v2/library/alpine/blobs/sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
			"library/alpine@sha256:0123456789ab"},
		{"https://files.example/", "files.example"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			got := TaskName(tt.url)
			if got != tt.want {
				t.Fatalf("TaskName(%q) = %q, want %q", tt.url, got, tt.want)
			}
			if strings.Contains(got, "secret") || strings.Contains(got, "pw") {
				t.Fatalf("TaskName leaks credentials: %q", got)
			}
		})
	}
}

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(Handler())
	t.Cleanup(srv.Close)
	tests := []struct {
		path, wantType, wantBody string
		wantStatus               int
	}{
		{"/", "text/html", `src="/dashboard/app.js"`, 200},
		{"/dashboard/app.js", "javascript", "/api/v1/dashboard", 200},
		{"/dashboard/style.css", "text/css", "--fg", 200},
		{"/dashboard/index.html", "", "", 404},
		{"/dashboard/nope.js", "", "", 404},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, err := http.Get(srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if tt.wantStatus != 200 {
				return
			}
			if ct := resp.Header.Get("Content-Type"); !strings.Contains(ct, tt.wantType) {
				t.Errorf("Content-Type %q, want %q", ct, tt.wantType)
			}
			if !strings.Contains(string(body), tt.wantBody) {
				t.Errorf("body lacks %q", tt.wantBody)
			}
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
				t.Errorf("Content-Security-Policy %q", csp)
			}
		})
	}
}

// TestNoExternalResources keeps the page working offline: no asset names
// another host.
func TestNoExternalResources(t *testing.T) {
	for _, name := range []string{"index.html", "app.js", "style.css"} {
		b, err := assets.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"http://", "https://", "//cdn", "@import"} {
			if strings.Contains(strings.ReplaceAll(string(b), "http://www.w3.org/2000/svg", ""), bad) {
				t.Errorf("%s contains %q", name, bad)
			}
		}
	}
}
