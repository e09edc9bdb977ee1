package supernode_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/supernode"
	"github.com/damselfly-p2p/damselfly/testenv"
	"github.com/damselfly-p2p/damselfly/wire"
)

// preheatRegistry is a fake registry holding a two-platform image (repo
// team/app, tag v1) behind bearer auth that accepts alice's Basic
// credentials at its token server.
type preheatRegistry struct {
	*testenv.FakeRegistry
	// amd64 config and layer, and the arm64 layer
	amdConfig, amdLayer, armLayer digest.Digest
}

func newPreheatRegistry(t *testing.T, layerSize int) *preheatRegistry {
	t.Helper()
	r := &preheatRegistry{FakeRegistry: testenv.NewFakeRegistry(t, testenv.FakeAuth{Scheme: "bearer", Scope: true,
		Users: map[string]string{"alice": "pw"}, Token: "preheat-token"})}
	const (
		dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
		dockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	)
	img := func(cfg, layer digest.Digest, arch string, layerSize int) testenv.FakeDescriptor {
		d := r.AddManifest("team/app", dockerManifest, map[string]any{"schemaVersion": 2, "mediaType": dockerManifest,
			"config": map[string]any{"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cfg, "size": 300},
			"layers": []any{map[string]any{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": layer, "size": layerSize}}})
		d.Platform = map[string]string{"os": "linux", "architecture": arch}
		return d
	}
	blob := func(n int) digest.Digest { d, _ := r.AddRandomBlob(n); return d }
	r.amdConfig, r.amdLayer, r.armLayer = blob(300), blob(layerSize), blob(layerSize)
	amd := img(r.amdConfig, r.amdLayer, "amd64", layerSize)
	arm := img(blob(300), r.armLayer, "arm64", layerSize)
	idx := map[string]any{"schemaVersion": 2, "mediaType": dockerList, "manifests": []any{arm, amd}}
	r.AddManifest("team/app", dockerList, idx, "v1")
	r.AddManifest("app", dockerList, idx, "v1")
	return r
}

func (r *preheatRegistry) gets(d digest.Digest) int { return r.BlobGets(d) }

// waitPreheat polls a preheat until it finishes.
func waitPreheat(t *testing.T, n *node, id string) wire.PreheatStatus {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		a := n.get(t, "/api/v1/preheats/"+id)
		if a.status != http.StatusOK {
			t.Fatalf("preheat %s: status %d: %s", id, a.status, a.body)
		}
		var st wire.PreheatStatus
		if err := json.Unmarshal(a.body, &st); err != nil {
			t.Fatal(err)
		}
		if st.State == wire.PreheatSuccess || st.State == wire.PreheatFailed {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("preheat %s still %s after 30s: %+v", id, st.State, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func startPreheat(t *testing.T, n *node, req any) wire.PreheatStatus {
	t.Helper()
	a := n.post(t, "/api/v1/preheats", req)
	if a.status != http.StatusAccepted && a.status != http.StatusOK {
		t.Fatalf("POST /api/v1/preheats: %d: %s", a.status, a.body)
	}
	var st wire.PreheatStatus
	if err := json.Unmarshal(a.body, &st); err != nil || st.ID == "" {
		t.Fatalf("preheat answer %s: %v", a.body, err)
	}
	if a.header.Get("Location") != "/api/v1/preheats/"+st.ID {
		t.Errorf("Location %q", a.header.Get("Location"))
	}
	return st
}

// TestPreheatImage resolves a manifest list to linux/amd64, exchanges
// Basic credentials for a token, and warms the config and layer.
func TestPreheatImage(t *testing.T) {
	reg := newPreheatRegistry(t, 3<<20)
	n := startNode(t, supernode.Config{})
	url := reg.URL + "/v2/team/app/manifests/v1"
	st := startPreheat(t, n, wire.PreheatRequest{URL: url,
		Headers: http.Header{"Authorization": {"Basic YWxpY2U6cHc="}}}) // alice:pw
	if st.Type != wire.PreheatImage || st.Platform != "linux/amd64" || st.Trigger != "api" {
		t.Errorf("first answer %+v", st)
	}
	st = waitPreheat(t, n, st.ID)
	if st.State != wire.PreheatSuccess {
		t.Fatalf("preheat %s: %s", st.State, st.Error)
	}
	if len(st.Blobs) != 2 || st.Blobs[0].Digest != reg.amdConfig.String() || st.Blobs[1].Digest != reg.amdLayer.String() {
		t.Fatalf("blobs %+v: want the amd64 config and layer", st.Blobs)
	}
	if st.Present != st.Length || st.Length != 300+3<<20 {
		t.Errorf("present %d of %d bytes", st.Present, st.Length)
	}
	for _, b := range st.Blobs {
		ts := n.waitDone(t, b.TaskID)
		if b.TaskID != manifest.DigestTaskID(digest.Digest(b.Digest)) {
			t.Errorf("blob task %s is not the digest task", b.TaskID)
		}
		if ts.BytesFromOrigin != b.Length {
			t.Errorf("%s: %d bytes from the registry, want %d", b.Digest, ts.BytesFromOrigin, b.Length)
		}
	}
	if reg.gets(reg.armLayer) != 0 {
		t.Error("the arm64 layer was fetched")
	}
	if n := reg.TokenRequests(); n != 1 {
		t.Errorf("%d token requests, want 1 (shared by the manifest and blob fetches)", n)
	}
	if strings.Contains(n.logs.String(), "preheat-token") || strings.Contains(n.logs.String(), "YWxpY2U6cHc=") {
		t.Error("credentials in the logs")
	}
	// A second preheat of the warm image costs the registry no blob bytes.
	before := reg.BlobBytes()
	st2 := waitPreheat(t, n, startPreheat(t, n, map[string]any{"url": url, "type": "image", "platform": "linux/arm64",
		"headers": map[string][]string{"Authorization": {"Basic YWxpY2U6cHc="}}}).ID)
	if st2.State != wire.PreheatSuccess || st2.Blobs[1].Digest != reg.armLayer.String() {
		t.Fatalf("arm64 preheat: %+v", st2)
	}
	if got := reg.BlobBytes() - before; got < 3<<20 || got > 3<<20+1000 {
		t.Errorf("arm64 preheat fetched %d blob bytes, want the arm64 layer and config only", got)
	}
	var list []wire.PreheatStatus
	if a := n.get(t, "/api/v1/preheats"); a.status != 200 || json.Unmarshal(a.body, &list) != nil || len(list) != 2 || list[0].ID != st2.ID {
		t.Errorf("list: %+v", list)
	}
}

func TestPreheatFile(t *testing.T) {
	origin := testenv.NewOrigin(t)
	sum := origin.AddRandom("f.bin", 5<<20+7, 3)
	n := startNode(t, supernode.Config{})
	tests := []struct {
		name, digest, wantState, wantErr string
	}{
		{"no digest", "", wire.PreheatSuccess, ""},
		{"right digest", "sha256:" + sum, wire.PreheatSuccess, ""},
		{"wrong digest", "sha256:" + strings.Repeat("0", 64), wire.PreheatFailed, "does not match"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := waitPreheat(t, n, startPreheat(t, n, wire.PreheatRequest{URL: origin.URL("f.bin"), Digest: tc.digest}).ID)
			if st.State != tc.wantState || !strings.Contains(st.Error, tc.wantErr) {
				t.Fatalf("state %s error %q; want %s %q", st.State, st.Error, tc.wantState, tc.wantErr)
			}
			if st.Type != wire.PreheatFile || len(st.Blobs) != 1 {
				t.Fatalf("%+v", st)
			}
			if tc.wantState == wire.PreheatSuccess && st.Present != 5<<20+7 {
				t.Errorf("present %d", st.Present)
			}
		})
	}
	if got := origin.BytesServed("f.bin"); got > 3*(5<<20+7) {
		t.Errorf("origin served %d bytes for three preheats (two tasks)", got)
	}
}

func TestPreheatErrors(t *testing.T) {
	reg := newPreheatRegistry(t, 1000)
	n := startNode(t, supernode.Config{})
	bad := []struct{ name, body string }{
		{"not JSON", `{`},
		{"no URL", `{}`},
		{"ftp", `{"url": "ftp://x/y"}`},
		{"bad type", `{"url": "http://x/y", "type": "dir"}`},
		{"image of a file URL", `{"url": "http://x/y.bin", "type": "image"}`},
		{"bad platform", `{"url": "http://x/v2/a/manifests/t", "platform": "linux"}`},
		{"bad digest", `{"url": "http://x/y", "digest": "md5:abc"}`},
	}
	for _, tc := range bad {
		if a := n.post(t, "/api/v1/preheats", tc.body); a.status != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400 (%s)", tc.name, a.status, a.body)
		}
	}
	if a := n.get(t, "/api/v1/preheats/nope"); a.status != http.StatusNotFound {
		t.Errorf("unknown preheat: %d", a.status)
	}
	// Failures are reported in the status, with the registry's answer.
	for _, tc := range []struct{ url, header, want string }{
		{reg.URL + "/v2/app/manifests/missing", "Basic YWxpY2U6cHc=", "404"},
		{reg.URL + "/v2/app/manifests/v1", "", "token server refused"},
		{reg.URL + "/v2/app/manifests/v1", "Basic d3Jvbmc6cHc=", "token server refused"},
	} {
		req := wire.PreheatRequest{URL: tc.url}
		if tc.header != "" {
			req.Headers = http.Header{"Authorization": {tc.header}}
		}
		st := waitPreheat(t, n, startPreheat(t, n, req).ID)
		if st.State != wire.PreheatFailed || !strings.Contains(st.Error, tc.want) {
			t.Errorf("%s: state %s error %q, want failed with %q", tc.url, st.State, st.Error, tc.want)
		}
	}
}

// TestRegistryNotification feeds the supernode a registry's notification
// envelope: pushed blobs and manifests are preheated, pulls ignored.
func TestRegistryNotification(t *testing.T) {
	origin := testenv.NewOrigin(t)
	// The same content under its digest's blob path.
	sum := origin.AddRandom("content", 2<<20, 9)
	origin.AddRandom("v2/app/blobs/sha256:"+sum, 2<<20, 9)
	blobURL := origin.URL("v2/app/blobs/sha256:" + sum)
	n := startNode(t, supernode.Config{})
	env := map[string]any{"events": []any{
		map[string]any{"id": "1", "action": "push", "target": map[string]any{"mediaType": "application/octet-stream",
			"digest": "sha256:" + sum, "size": 2 << 20, "repository": "app", "url": blobURL}},
		map[string]any{"id": "2", "action": "pull", "target": map[string]any{"mediaType": "application/octet-stream",
			"digest": "sha256:" + sum, "url": blobURL}},
		map[string]any{"id": "3", "action": "push", "target": map[string]any{"mediaType": "application/octet-stream",
			"digest": "sha256:" + sum, "size": 2 << 20, "repository": "app", "url": blobURL}},
		map[string]any{"id": "4", "action": "delete", "target": map[string]any{"digest": "sha256:" + sum}},
	}}
	a := n.post(t, "/api/v1/registry/notifications", env)
	var resp struct {
		Preheats []string `json:"preheats"`
	}
	if a.status != 200 || json.Unmarshal(a.body, &resp) != nil || len(resp.Preheats) != 1 {
		t.Fatalf("notification: %d %s; want one preheat", a.status, a.body)
	}
	st := waitPreheat(t, n, resp.Preheats[0])
	if st.State != wire.PreheatSuccess || st.Trigger != "registry" || st.Blobs[0].TaskID != manifest.DigestTaskID(digest.Digest("sha256:"+sum)) {
		t.Fatalf("%+v", st)
	}
	if a := n.post(t, "/api/v1/registry/notifications", "nope"); a.status != 400 {
		t.Errorf("bad envelope: %d", a.status)
	}
}

// hangingOrigin answers no request until the test ends.
func hangingOrigin(t *testing.T) string {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: frees the handlers
	return srv.URL
}

// TestPreheatBounds: preheats of an origin that hangs take only that
// origin's slots (a good origin's preheat still finishes), unfinished
// preheats are bounded (429 beyond the queue), and a preheat that outlives
// its timeout fails saying so.
func TestPreheatBounds(t *testing.T) {
	t.Run("hanging origin does not block others", func(t *testing.T) {
		hang := hangingOrigin(t)
		good := testenv.NewOrigin(t)
		good.AddRandom("good", 200_000, 7)
		n := startNode(t, supernode.Config{})
		var hung []string
		for i := 0; i < 4; i++ {
			hung = append(hung, startPreheat(t, n, wire.PreheatRequest{URL: fmt.Sprintf("%s/hang/%d", hang, i)}).ID)
		}
		st := waitPreheat(t, n, startPreheat(t, n, wire.PreheatRequest{URL: good.URL("good")}).ID)
		if st.State != wire.PreheatSuccess {
			t.Fatalf("good preheat %s: %s", st.State, st.Error)
		}
		for _, id := range hung {
			a := n.get(t, "/api/v1/preheats/"+id)
			var hs wire.PreheatStatus
			if err := json.Unmarshal(a.body, &hs); err != nil {
				t.Fatal(err)
			}
			if hs.State == wire.PreheatSuccess {
				t.Errorf("preheat of the hanging origin %s succeeded", id)
			}
		}
	})
	t.Run("queue full", func(t *testing.T) {
		hang := hangingOrigin(t)
		n := startNode(t, supernode.Config{PreheatQueue: 3})
		for i := 0; i < 3; i++ {
			startPreheat(t, n, wire.PreheatRequest{URL: fmt.Sprintf("%s/hang/%d", hang, i)})
		}
		// The same request again joins its unfinished job.
		startPreheat(t, n, wire.PreheatRequest{URL: hang + "/hang/0"})
		a := n.post(t, "/api/v1/preheats", wire.PreheatRequest{URL: hang + "/hang/3"})
		if a.status != http.StatusTooManyRequests || a.header.Get("Retry-After") == "" {
			t.Fatalf("preheat beyond the queue: status %d (Retry-After %q): %s, want 429 with Retry-After",
				a.status, a.header.Get("Retry-After"), a.body)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		hang := hangingOrigin(t)
		n := startNode(t, supernode.Config{PreheatTimeout: 300 * time.Millisecond})
		st := waitPreheat(t, n, startPreheat(t, n, wire.PreheatRequest{URL: hang + "/hang"}).ID)
		if st.State != wire.PreheatFailed || !strings.Contains(st.Error, "timed out") {
			t.Fatalf("preheat of a hanging origin: %s %q, want failed saying it timed out", st.State, st.Error)
		}
	})
}
