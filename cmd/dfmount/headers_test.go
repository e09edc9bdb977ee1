package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/damselfly-p2p/damselfly/fusefs"
	"github.com/damselfly-p2p/damselfly/trust/egress"
)

// memContent is a fusefs.Content held in memory.
type memContent []byte

func (m memContent) Size() int64 { return int64(len(m)) }
func (m memContent) ReadAtContext(_ context.Context, p []byte, off int64) (int, error) {
	return bytes.NewReader(m).ReadAt(p, off)
}
func (m memContent) Present() int64   { return int64(len(m)) }
func (m memContent) Complete() bool   { return true }
func (m memContent) DataPath() string { return "" }

// authServer serves body and counts requests carrying Authorization.
func authServer(t *testing.T, body func(path string) string) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			n.Add(1)
		}
		io.WriteString(w, body(r.URL.Path))
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// TestDatasetHeaders: -H headers reach the manifest's own host but not a
// foreign host the manifest names, unless --header-host names it; entries
// on addresses the origin policy refuses (loopback by default, even the
// manifest's own host) are not fetched at all.
func TestDatasetHeaders(t *testing.T) {
	foreign, foreignAuth := authServer(t, func(string) string { return "payload" })
	var manifestURL string
	own, ownAuth := authServer(t, func(path string) string {
		if path != "/ds/manifest.json" {
			return "payload"
		}
		return fmt.Sprintf(`{"version":1,"files":[{"path":"a","size":7,"url":%q},{"path":"b","size":7,"url":"b.bin"}]}`, foreign.URL+"/a.bin")
	})
	manifestURL = own.URL + "/ds/manifest.json"
	foreignHost := strings.TrimPrefix(foreign.URL, "http://")
	tests := []struct {
		name         string
		headerHosts  []string
		allow        []string
		wantForeign  int64
		wantEntryErr bool // every entry refused by the origin policy
	}{
		{"foreign host gets no headers", nil, []string{foreignHost, strings.TrimPrefix(own.URL, "http://")}, 0, false},
		{"--header-host names it", []string{foreignHost}, []string{foreignHost, strings.TrimPrefix(own.URL, "http://")}, 1, false},
		{"origin policy refuses it", nil, nil, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			foreignAuth.Store(0)
			ownAuth.Store(0)
			scope, err := newHeaderScope(manifestURL, tc.headerHosts)
			if err != nil {
				t.Fatal(err)
			}
			policy, err := egress.New(egress.Options{Allow: tc.allow})
			if err != nil {
				t.Fatal(err)
			}
			h := http.Header{"Authorization": {"Bearer secret"}}
			open := func(ctx context.Context, url string) (fusefs.Content, error) {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				for k, v := range scope.header(url, h) {
					req.Header[k] = v
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return nil, err
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				return memContent(b), err
			}
			entries, err := buildTree(context.Background(), &options{kind: "dataset"}, treeOpeners{open: open, policy: policy}, manifestURL)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				buf := make([]byte, e.Size)
				_, err := e.Data.ReadAt(context.Background(), buf, 0)
				if tc.wantEntryErr {
					if err == nil || !strings.Contains(err.Error(), "origin unavailable") {
						t.Errorf("entry %s on a refused address: err %v, want origin unavailable", e.Path, err)
					}
					continue
				}
				if err != nil && err != io.EOF {
					t.Errorf("read %s: %v", e.Path, err)
				}
			}
			if got := foreignAuth.Load(); got != tc.wantForeign {
				t.Errorf("foreign host got Authorization %d times, want %d", got, tc.wantForeign)
			}
			if ownAuth.Load() == 0 {
				t.Error("the manifest's own host got no Authorization")
			}
		})
	}
}

func TestHeaderScope(t *testing.T) {
	s, err := newHeaderScope("https://data.example.com/ds/m.json", []string{"cdn.example.com", "other.example:8443"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		url  string
		want bool
	}{
		{"https://data.example.com/x", true},
		{"https://data.example.com:443/x", true},
		{"http://data.example.com/x", false},
		{"https://data.example.com:8443/x", false},
		{"https://evil.example.com/x", false},
		{"https://cdn.example.com:9999/x", true},
		{"https://other.example:8443/x", true},
		{"https://other.example/x", false},
	}
	for _, tc := range tests {
		if got := s.allows(tc.url); got != tc.want {
			t.Errorf("allows(%s) = %v, want %v", tc.url, got, tc.want)
		}
	}
}
