package snapshotter

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func TestParseChallenge(t *testing.T) {
	tests := []struct {
		in     string
		scheme string
		params map[string]string
	}{
		{`Bearer realm="https://auth/token",service="registry",scope="repository:a/b:pull,push"`, "Bearer",
			map[string]string{"realm": "https://auth/token", "service": "registry", "scope": "repository:a/b:pull,push"}},
		{`Basic realm="Registry Realm"`, "Basic", map[string]string{"realm": "Registry Realm"}},
		{`Bearer realm=https://a/t,service=s`, "Bearer", map[string]string{"realm": "https://a/t", "service": "s"}},
	}
	for _, tt := range tests {
		scheme, params := parseChallenge(tt.in)
		if scheme != tt.scheme {
			t.Errorf("%q: scheme %q", tt.in, scheme)
		}
		for k, v := range tt.params {
			if params[k] != v {
				t.Errorf("%q: %s = %q, want %q", tt.in, k, params[k], v)
			}
		}
	}
}

// registry is a real HTTP server demanding auth on blob requests.
func registry(t *testing.T, mode string, tokenHits *atomic.Int32) *httptest.Server {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/token":
			tokenHits.Add(1)
			if u, p, ok := r.BasicAuth(); !ok || u != "alice" || p != "pw" {
				http.Error(w, "bad creds", http.StatusUnauthorized)
				return
			}
			if r.URL.Query().Get("scope") != "repository:team/app:pull" {
				http.Error(w, "bad scope "+r.URL.Query().Get("scope"), http.StatusBadRequest)
				return
			}
			fmt.Fprint(w, `{"token":"tok123","expires_in":300}`)
		case strings.HasPrefix(r.URL.Path, "/v2/"):
			want := map[string]string{"bearer": "Bearer tok123", "basic": "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:pw"))}[mode]
			if mode != "none" && r.Header.Get("Authorization") != want {
				if mode == "bearer" {
					w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="test"`, srv.URL))
				} else {
					w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				}
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			w.WriteHeader(http.StatusOK)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestBlobURLAuth(t *testing.T) {
	creds := func(host string) (string, string) { return "alice", "pw" }
	tests := []struct {
		mode, wantAuth string
	}{
		{"none", ""},
		{"basic", "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:pw"))},
		{"bearer", "Bearer tok123"},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			var hits atomic.Int32
			srv := registry(t, tt.mode, &hits)
			host := strings.TrimPrefix(srv.URL, "http://")
			r := &Registry{Credentials: creds}
			dgst := "sha256:" + strings.Repeat("e", 64)
			u, h, err := r.BlobURL(context.Background(), host+"/team/app:v1", dgst)
			if err != nil {
				t.Fatal(err)
			}
			if want := "http://" + host + "/v2/team/app/blobs/" + dgst; u != want {
				t.Fatalf("url %s, want %s", u, want)
			}
			if got := h.Get("Authorization"); got != tt.wantAuth {
				t.Fatalf("Authorization %q, want %q", got, tt.wantAuth)
			}
		})
	}
}

func TestTokenNoStampede(t *testing.T) {
	var hits atomic.Int32
	srv := registry(t, "bearer", &hits)
	host := strings.TrimPrefix(srv.URL, "http://")
	r := &Registry{Credentials: func(string) (string, string) { return "alice", "pw" }}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, h, err := r.BlobURL(context.Background(), host+"/team/app:v1", fmt.Sprintf("sha256:%064x", i))
			if err == nil && h.Get("Authorization") != "Bearer tok123" {
				err = fmt.Errorf("no token")
			}
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("token server hit %d times for 20 concurrent blobs, want 1", n)
	}
}

func TestPlainHTTPAndMirrors(t *testing.T) {
	r := &Registry{PlainHTTP: []string{"reg.internal:5000"}, Mirrors: map[string][]string{"docker.io": {"mirror.local"}}}
	tests := []struct {
		host string
		want bool
	}{{"localhost:5000", true}, {"127.0.0.7", true}, {"reg.internal:5000", true}, {"ghcr.io", false}}
	for _, tt := range tests {
		if got := r.plain(tt.host); got != tt.want {
			t.Errorf("plain(%s) = %v", tt.host, got)
		}
	}
}

func TestDockerConfigCredentials(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.json")
	auth := base64.StdEncoding.EncodeToString([]byte("bob:s3cret"))
	os.WriteFile(p, []byte(`{"auths":{"https://index.docker.io/v1/":{"auth":"`+auth+`"},"reg:5000":{"username":"u","password":"p"}}}`), 0o600)
	creds, err := DockerConfigCredentials(p)
	if err != nil {
		t.Fatal(err)
	}
	if u, s := creds("registry-1.docker.io"); u != "bob" || s != "s3cret" {
		t.Errorf("docker hub creds = %q %q", u, s)
	}
	if u, s := creds("reg:5000"); u != "u" || s != "p" {
		t.Errorf("reg creds = %q %q", u, s)
	}
	if u, _ := creds("other"); u != "" {
		t.Errorf("unknown host has creds %q", u)
	}
	none, err := DockerConfigCredentials(filepath.Join(dir, "missing.json"))
	if err != nil {
		t.Fatal(err)
	}
	if u, _ := none("x"); u != "" {
		t.Fatal("missing config gave creds")
	}
}
