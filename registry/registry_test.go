package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func TestParseChallenges(t *testing.T) {
	tests := []struct {
		in   string
		want []Challenge
	}{
		{`Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"`,
			[]Challenge{{"bearer", map[string]string{"realm": "https://auth.docker.io/token", "service": "registry.docker.io", "scope": "repository:library/busybox:pull"}}}},
		{`Basic realm="basic-realm"`, []Challenge{{"basic", map[string]string{"realm": "basic-realm"}}}},
		{`Basic realm="a", Bearer realm="https://x/t", service=reg`,
			[]Challenge{{"basic", map[string]string{"realm": "a"}}, {"bearer", map[string]string{"realm": "https://x/t", "service": "reg"}}}},
		{`Bearer realm="https://x/t",error="insufficient_scope",scope="repository:a:pull,push"`,
			[]Challenge{{"bearer", map[string]string{"realm": "https://x/t", "error": "insufficient_scope", "scope": "repository:a:pull,push"}}}},
		{`Bearer realm="q\"uo\\te"`, []Challenge{{"bearer", map[string]string{"realm": `q"uo\te`}}}},
		{``, nil},
	}
	for _, tc := range tests {
		h := http.Header{}
		if tc.in != "" {
			h.Set("WWW-Authenticate", tc.in)
		}
		got := ParseChallenges(h)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("ParseChallenges(%s) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestParseReference(t *testing.T) {
	tests := []struct {
		in, want, manifestURL string
		plain                 bool
		wantErr               bool
	}{
		{in: "busybox", want: "registry-1.docker.io/library/busybox:latest", manifestURL: "https://registry-1.docker.io/v2/library/busybox/manifests/latest"},
		{in: "docker.io/user/app:1.2", want: "registry-1.docker.io/user/app:1.2"},
		{in: "127.0.0.1:5000/test/bb:t", want: "127.0.0.1:5000/test/bb:t", manifestURL: "http://127.0.0.1:5000/v2/test/bb/manifests/t"},
		{in: "localhost/x", want: "localhost/x:latest", manifestURL: "http://localhost/v2/x/manifests/latest"},
		{in: "reg.example:5000/a/b/c@sha256:" + strings.Repeat("a", 64), want: "reg.example:5000/a/b/c@sha256:" + strings.Repeat("a", 64),
			manifestURL: "https://reg.example:5000/v2/a/b/c/manifests/sha256:" + strings.Repeat("a", 64)},
		{in: "reg.example/a:t", plain: true, want: "reg.example/a:t", manifestURL: "http://reg.example/v2/a/manifests/t"},
		{in: "", wantErr: true},
		{in: "http://reg/a", wantErr: true},
		{in: "Upper/Case", wantErr: true},
		{in: "a@sha256:short", wantErr: true},
		{in: "a:bad tag", wantErr: true},
	}
	for _, tc := range tests {
		r, err := ParseReference(tc.in, tc.plain)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseReference(%q) error %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if r.String() != tc.want {
			t.Errorf("ParseReference(%q) = %s, want %s", tc.in, r, tc.want)
		}
		if tc.manifestURL != "" && r.ManifestURL() != tc.manifestURL {
			t.Errorf("ParseReference(%q).ManifestURL() = %s, want %s", tc.in, r.ManifestURL(), tc.manifestURL)
		}
		back, err := ParseManifestURL(r.ManifestURL())
		if err != nil || back.String() != r.String() {
			t.Errorf("ParseManifestURL(%s) = %v, %v", r.ManifestURL(), back, err)
		}
	}
	for _, bad := range []string{"http://h/v2/a/blobs/sha256:" + strings.Repeat("a", 64), "http://h/other", "ftp://h/v2/a/manifests/t"} {
		if IsManifestURL(bad) {
			t.Errorf("IsManifestURL(%s) = true", bad)
		}
	}
}

func TestRepositoryOfAndBlobPath(t *testing.T) {
	d := "sha256:" + strings.Repeat("b", 64)
	for path, want := range map[string]string{
		"/v2/":                      "",
		"/v2/a/b/manifests/latest":  "a/b",
		"/v2/a/blobs/" + d:          "a",
		"/v2/x/y/z/tags/list":       "x/y/z",
		"/v2/a/blobs/uploads/abc":   "a",
		"/v2/a/manifests/blobs/odd": "a/manifests",
		"/other/a/manifests/latest": "",
	} {
		if got := RepositoryOf(path); got != want {
			t.Errorf("RepositoryOf(%s) = %q, want %q", path, got, want)
		}
	}
	if repo, dg, ok := ParseBlobPath("/v2/a/b/blobs/" + d); !ok || repo != "a/b" || dg.String() != d {
		t.Errorf("ParseBlobPath = %q %q %v", repo, dg, ok)
	}
	if _, _, ok := ParseBlobPath("/v2/a/blobs/uploads/x"); ok {
		t.Error("ParseBlobPath accepted an upload path")
	}
}

// tokenServer counts requests and hands out tokens with the given lifetime.
func tokenServer(t *testing.T, expiresIn int, requireUser string) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		time.Sleep(10 * time.Millisecond)
		if requireUser != "" {
			if u, _, ok := r.BasicAuth(); !ok || u != requireUser {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
		}
		json.NewEncoder(w).Encode(map[string]any{"access_token": "tok-" + r.URL.Query().Get("scope"), "expires_in": expiresIn})
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestTokensShareAndExpire(t *testing.T) {
	srv, n := tokenServer(t, 300, "")
	tk := NewTokens(nil, nil)
	now := time.Now()
	tk.now = func() time.Time { return now }
	ch := Challenge{Scheme: "bearer", Params: map[string]string{"realm": srv.URL + "/token", "service": "s", "scope": "repository:a:pull"}}
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if tok, err := tk.Token(context.Background(), ch, ""); err != nil || tok != "tok-repository:a:pull" {
				t.Errorf("Token = %q, %v", tok, err)
			}
		}()
	}
	wg.Wait()
	if n.Load() != 1 {
		t.Errorf("50 concurrent callers made %d token requests, want 1", n.Load())
	}
	// Another scope, and another credential, are other tokens.
	tk.Token(context.Background(), ch.WithScope("repository:b:pull"), "")
	tk.Token(context.Background(), ch, "Basic eDp5")
	if n.Load() != 3 {
		t.Errorf("token requests = %d, want 3", n.Load())
	}
	// Renewed shortly before expiry.
	now = now.Add(275 * time.Second)
	tk.Token(context.Background(), ch, "")
	if n.Load() != 4 {
		t.Errorf("token requests after expiry = %d, want 4", n.Load())
	}
	if tk.Fetches() != 4 {
		t.Errorf("Fetches = %d", tk.Fetches())
	}
	if _, err := tk.Token(context.Background(), Challenge{Scheme: "basic", Params: map[string]string{"realm": "x"}}, ""); err == nil {
		t.Error("Token accepted a basic challenge")
	}
}

func TestTokensDenied(t *testing.T) {
	srv, _ := tokenServer(t, 0, "alice")
	tk := NewTokens(nil, nil)
	ch := Challenge{Scheme: "bearer", Params: map[string]string{"realm": srv.URL + "/token"}}
	if _, err := tk.Token(context.Background(), ch, ""); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("anonymous: %v, want refused", err)
	}
	if tok, err := tk.Token(context.Background(), ch, "Basic YWxpY2U6cHc="); err != nil || tok == "" {
		t.Errorf("alice: %q, %v", tok, err)
	}
}

// fakeRegistry serves an index with two platforms behind bearer auth.
func fakeRegistry(t *testing.T) (*httptest.Server, map[string]string) {
	tsrv, _ := tokenServer(t, 60, "")
	blobs := map[string]string{}
	docs := map[string][]byte{}
	add := func(mt string, v any) Descriptor {
		b, _ := json.Marshal(v)
		d := digest.FromBytes(b).String()
		docs[d] = b
		return Descriptor{MediaType: mt, Digest: d, Size: int64(len(b))}
	}
	image := func(arch string) Descriptor {
		cfg := digest.FromString("config-" + arch).String()
		layer := digest.FromString("layer-" + arch).String()
		blobs[arch+"/config"], blobs[arch+"/layer"] = cfg, layer
		return add(MediaTypeOCIManifest, map[string]any{"schemaVersion": 2, "mediaType": MediaTypeOCIManifest,
			"config": Descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: cfg, Size: 10},
			"layers": []Descriptor{{MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", Digest: layer, Size: 20}}})
	}
	amd, arm := image("amd64"), image("arm64")
	amd.Platform = &Platform{OS: "linux", Architecture: "amd64"}
	arm.Platform = &Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	idx := add(MediaTypeOCIIndex, map[string]any{"schemaVersion": 2, "mediaType": MediaTypeOCIIndex, "manifests": []Descriptor{arm, amd}})
	docs["multi"] = docs[idx.Digest]
	docs["single"] = docs[amd.Digest]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer tok-") {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="fake"`, tsrv.URL))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		ref := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
		b, ok := docs[ref]
		if !ok {
			http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN"}]}`, 404)
			return
		}
		var probe struct {
			MediaType string `json:"mediaType"`
		}
		json.Unmarshal(b, &probe)
		w.Header().Set("Content-Type", probe.MediaType)
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv, blobs
}

func TestResolve(t *testing.T) {
	srv, blobs := fakeRegistry(t)
	c := &Client{HTTP: srv.Client(), Tokens: NewTokens(nil, nil)}
	host := strings.TrimPrefix(srv.URL, "http://")
	tests := []struct {
		tag, platform string
		wantArch      string
		wantErr       string
	}{
		{"multi", "", "amd64", ""},
		{"multi", "linux/arm64", "arm64", ""},
		{"multi", "linux/arm64/v8", "arm64", ""},
		{"multi", "linux/arm64/v7", "", "no image for platform"},
		{"multi", "windows/amd64", "", "no image for platform"},
		{"single", "linux/arm64", "amd64", ""}, // a plain manifest is what it is
		{"missing", "", "", "404"},
	}
	for _, tc := range tests {
		t.Run(tc.tag+" "+tc.platform, func(t *testing.T) {
			p, err := ParsePlatform(tc.platform)
			if err != nil {
				t.Fatal(err)
			}
			ref := Reference{Scheme: "http", Host: host, Repository: "app", Tag: tc.tag}
			im, err := c.Resolve(context.Background(), ref, nil, p)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			bl := im.Blobs()
			if len(bl) != 2 || bl[0].Digest != blobs[tc.wantArch+"/config"] || bl[1].Digest != blobs[tc.wantArch+"/layer"] {
				t.Errorf("blobs %+v, want the %s config and layer", bl, tc.wantArch)
			}
			if !strings.HasPrefix(im.Authorization, "Bearer tok-") {
				t.Errorf("Authorization %q: want the exchanged token", im.Authorization)
			}
		})
	}
	for _, bad := range []string{"linux", "/amd64", "a/b/c/d"} {
		if _, err := ParsePlatform(bad); err == nil {
			t.Errorf("ParsePlatform(%q) accepted", bad)
		}
	}
}
