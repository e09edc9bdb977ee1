package registry

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/damselfly-p2p/damselfly/manifest/oci"
	"github.com/damselfly-p2p/damselfly/testenv"
)

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

// challenged GETs /v2/REPO/manifests/latest from reg with a, answering
// its challenge, and returns the Authorization that was accepted.
func challenged(t *testing.T, a *Authorizer, reg *testenv.FakeRegistry, repo string) (string, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, reg.URL+"/v2/"+repo+"/manifests/latest", nil)
	resp, auth, err := a.Do(context.Background(), reg.Client(), req, repo)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized {
		return "", fmt.Errorf("401 after the challenge was answered")
	}
	return auth, nil
}

func TestAuthorizerSharesTokens(t *testing.T) {
	reg := testenv.NewFakeRegistry(t, testenv.FakeAuth{Scheme: "bearer", Anonymous: true, Users: map[string]string{"alice": "pw"},
		TokenDelay: 10 * time.Millisecond})
	a := NewAuthorizer(reg.Client(), nil)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if auth, err := challenged(t, a, reg, "a"); err != nil || auth != "Bearer "+reg.Token() {
				t.Errorf("Do = %q, %v", auth, err)
			}
		}()
	}
	wg.Wait()
	if n := reg.TokenRequests(); n != 1 {
		t.Errorf("50 concurrent callers made %d token requests, want 1", n)
	}
	// Another repository is another token; the same one is cached.
	challenged(t, a, reg, "b")
	challenged(t, a, reg, "a")
	if n := reg.TokenRequests(); n != 2 {
		t.Errorf("token requests = %d, want 2", n)
	}
	if got := reg.TokenScopes(); got[len(got)-1] != "repository:b:pull" {
		t.Errorf("token scopes %q, want repository:b:pull last", got)
	}
	// A token the registry stops accepting is dropped and replaced.
	reg.RotateToken("fake-token-2")
	if auth, err := challenged(t, a, reg, "a"); err != nil || auth != "Bearer fake-token-2" {
		t.Errorf("after rotation: %q, %v", auth, err)
	}
	if n := reg.TokenRequests(); n != 3 {
		t.Errorf("token requests after rotation = %d, want 3", n)
	}
}

func TestAuthorizerCredentials(t *testing.T) {
	tests := []struct {
		name     string
		auth     testenv.FakeAuth
		creds    Credentials
		wantAuth string
		wantErr  error
	}{
		{"anonymous refused", testenv.FakeAuth{Scheme: "bearer", Users: map[string]string{"alice": "pw"}}, nil, "", ErrTokenDenied},
		{"alice's token", testenv.FakeAuth{Scheme: "bearer", Users: map[string]string{"alice": "pw"}},
			func(string) (string, string) { return "alice", "pw" }, "Bearer fake-token-1", nil},
		{"basic", testenv.FakeAuth{Scheme: "basic", Users: map[string]string{"alice": "pw"}},
			func(string) (string, string) { return "alice", "pw" }, "Basic YWxpY2U6cHc=", nil},
		{"no auth", testenv.FakeAuth{}, nil, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := testenv.NewFakeRegistry(t, tc.auth)
			reg.AddImage("a", "latest", 10)
			auth, err := challenged(t, NewAuthorizer(reg.Client(), tc.creds), reg, "a")
			if !errors.Is(err, tc.wantErr) || auth != tc.wantAuth {
				t.Errorf("got %q, %v; want %q, %v", auth, err, tc.wantAuth, tc.wantErr)
			}
		})
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
	tests := []struct{ host, user, secret string }{
		{"registry-1.docker.io", "bob", "s3cret"},
		{"reg:5000", "u", "p"},
		{"other", "", ""},
	}
	for _, tc := range tests {
		if u, s := creds(tc.host); u != tc.user || s != tc.secret {
			t.Errorf("%s: creds %q %q, want %q %q", tc.host, u, s, tc.user, tc.secret)
		}
	}
	none, err := DockerConfigCredentials(filepath.Join(dir, "missing.json"))
	if err != nil {
		t.Fatal(err)
	}
	if u, _ := none("x"); u != "" {
		t.Fatal("missing config gave creds")
	}
}

func TestIsPlainHTTP(t *testing.T) {
	tests := []struct {
		host string
		list []string
		want bool
	}{
		{"localhost:5000", nil, true}, {"127.0.0.7", nil, true}, {"[::1]:5000", nil, true},
		{"reg.internal:5000", []string{"reg.internal:5000"}, true}, {"reg.internal:5001", []string{"reg.internal"}, true},
		{"reg.internal:5001", []string{"reg.internal:5000"}, false}, {"ghcr.io", nil, false}, {"ghcr.io", []string{"*"}, true},
	}
	for _, tc := range tests {
		if got := IsPlainHTTP(tc.host, tc.list); got != tc.want {
			t.Errorf("IsPlainHTTP(%s, %v) = %v", tc.host, tc.list, got)
		}
	}
}

// twoPlatforms stores an index of two images (amd64, arm64/v8) as
// app:multi and the amd64 manifest as app:single, and returns the blobs
// by "ARCH/config" and "ARCH/layer".
func twoPlatforms(reg *testenv.FakeRegistry) map[string]digest.Digest {
	blobs := map[string]digest.Digest{}
	image := func(arch string) testenv.FakeDescriptor {
		cfg := reg.AddBlob([]byte("config-" + arch))
		layer := reg.AddBlob([]byte("layer-" + arch))
		blobs[arch+"/config"], blobs[arch+"/layer"] = cfg, layer
		return reg.AddManifest("app", oci.MediaTypeOCIManifest, map[string]any{"schemaVersion": 2, "mediaType": oci.MediaTypeOCIManifest,
			"config": testenv.FakeDescriptor{MediaType: oci.MediaTypeOCIConfig, Digest: cfg, Size: 10},
			"layers": []testenv.FakeDescriptor{{MediaType: oci.MediaTypeOCILayerGzip, Digest: layer, Size: 20}}})
	}
	amd, arm := image("amd64"), image("arm64")
	amd.Platform = map[string]string{"os": "linux", "architecture": "amd64"}
	arm.Platform = map[string]string{"os": "linux", "architecture": "arm64", "variant": "v8"}
	reg.AddManifest("app", oci.MediaTypeOCIIndex, map[string]any{"schemaVersion": 2, "mediaType": oci.MediaTypeOCIIndex,
		"manifests": []testenv.FakeDescriptor{arm, amd}}, "multi")
	amd.Platform = nil
	reg.AddManifest("app", oci.MediaTypeOCIManifest, map[string]any{"schemaVersion": 2, "mediaType": oci.MediaTypeOCIManifest,
		"config": testenv.FakeDescriptor{MediaType: oci.MediaTypeOCIConfig, Digest: blobs["amd64/config"], Size: 10},
		"layers": []testenv.FakeDescriptor{{MediaType: oci.MediaTypeOCILayerGzip, Digest: blobs["amd64/layer"], Size: 20}}}, "single")
	return blobs
}

func TestResolve(t *testing.T) {
	reg := testenv.NewFakeRegistry(t, testenv.FakeAuth{Scheme: "bearer", Anonymous: true})
	blobs := twoPlatforms(reg)
	c := NewClient(reg.Client(), nil)
	host := reg.Host
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
			if im.Authorization != "Bearer "+reg.Token() {
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
