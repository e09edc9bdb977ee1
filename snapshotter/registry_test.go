package snapshotter

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/damselfly-p2p/damselfly/testenv"
)

func TestBlobURLAuth(t *testing.T) {
	creds := func(host string) (string, string) { return "alice", "pw" }
	users := map[string]string{"alice": "pw"}
	tests := []struct {
		name     string
		auth     testenv.FakeAuth
		wantAuth string
	}{
		{"none", testenv.FakeAuth{}, ""},
		{"basic", testenv.FakeAuth{Scheme: "basic", Users: users}, "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:pw"))},
		{"bearer", testenv.FakeAuth{Scheme: "bearer", Users: users, Token: "tok123"}, "Bearer tok123"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := testenv.NewFakeRegistry(t, tt.auth)
			r := &Registry{Credentials: creds}
			dgst := "sha256:" + strings.Repeat("e", 64)
			u, h, err := r.BlobURL(context.Background(), reg.Host+"/team/app:v1", dgst)
			if err != nil {
				t.Fatal(err)
			}
			if want := "http://" + reg.Host + "/v2/team/app/blobs/" + dgst; u != want {
				t.Fatalf("url %s, want %s", u, want)
			}
			if got := h.Get("Authorization"); got != tt.wantAuth {
				t.Fatalf("Authorization %q, want %q", got, tt.wantAuth)
			}
			if tt.auth.Scheme == "bearer" {
				if sc := reg.TokenScopes(); len(sc) != 1 || sc[0] != "repository:team/app:pull" {
					t.Errorf("token scopes %q, want one request for repository:team/app:pull", sc)
				}
			}
		})
	}
}

func TestBlobURLNoCredentials(t *testing.T) {
	reg := testenv.NewFakeRegistry(t, testenv.FakeAuth{Scheme: "basic", Users: map[string]string{"alice": "pw"}})
	r := &Registry{}
	if _, _, err := r.BlobURL(context.Background(), reg.Host+"/team/app:v1", "sha256:"+strings.Repeat("e", 64)); err == nil {
		t.Fatal("a registry that wants basic credentials was answered without any")
	}
}

func TestTokenNoStampede(t *testing.T) {
	reg := testenv.NewFakeRegistry(t, testenv.FakeAuth{Scheme: "bearer", Users: map[string]string{"alice": "pw"}, Token: "tok123",
		TokenDelay: 10 * time.Millisecond})
	r := &Registry{Credentials: func(string) (string, string) { return "alice", "pw" }}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, h, err := r.BlobURL(context.Background(), reg.Host+"/team/app:v1", fmt.Sprintf("sha256:%064x", i))
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
	if n := reg.TokenRequests(); n != 1 {
		t.Fatalf("token server hit %d times for 20 concurrent blobs, want 1", n)
	}
}

func TestPlainHTTPAndMirrors(t *testing.T) {
	r := &Registry{PlainHTTP: []string{"reg.internal:5000"}, Mirrors: map[string][]string{"registry-1.docker.io": {"mirror.local"}}}
	tests := []struct {
		host string
		want bool
	}{{"localhost:5000", true}, {"127.0.0.7", true}, {"reg.internal:5000", true}, {"ghcr.io", false}}
	for _, tt := range tests {
		if got := r.plain(tt.host); got != tt.want {
			t.Errorf("plain(%s) = %v", tt.host, got)
		}
	}
	// mirror.local is not reachable: the probe fails, naming the mirror.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := r.BlobURL(ctx, "busybox", "sha256:"+strings.Repeat("e", 64)); err == nil || !strings.Contains(err.Error(), "mirror.local") {
		t.Errorf("docker.io blob went elsewhere than its mirror: %v", err)
	}
}
