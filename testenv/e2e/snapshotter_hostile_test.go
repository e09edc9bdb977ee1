//go:build e2e

package e2e

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/opencontainers/go-digest"

	"github.com/damselfly-p2p/damselfly/testenv"
)

// registryDo sends one request to the registry and fails the test on an
// unexpected status.
func registryDo(t *testing.T, method, url, ctype string, body []byte, want int) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
		req.Header.Set("Accept", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != want {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: %s %s", method, url, resp.Status, b)
	}
	return resp
}

// pushCrafted copies repo:tag's eStargz manifest to repo:newTag with the
// layer holding path rewritten by edit (its TOC annotation updated to the
// new TOC's digest, so that the TOC digest check passes and the layer's own
// checks are what is tested).
func pushCrafted(t *testing.T, reg *testenv.Registry, repo, tag, newTag string, edit func(*estargz.JTOC)) {
	t.Helper()
	const mt = "application/vnd.oci.image.manifest.v1+json"
	resp := registryDo(t, http.MethodGet, reg.URL("/v2/"+repo+"/manifests/"+tag), mt, nil, http.StatusOK)
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	resp.Body.Close()
	layers := m["layers"].([]any)
	last := layers[len(layers)-1].(map[string]any)
	resp = registryDo(t, http.MethodGet, reg.URL("/v2/"+repo+"/blobs/"+last["digest"].(string)), "", nil, http.StatusOK)
	blob, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	crafted := craftTOC(t, blob, edit)
	sr := io.NewSectionReader(bytes.NewReader(crafted), 0, int64(len(crafted)))
	r, err := estargz.Open(sr)
	if err != nil {
		t.Fatalf("crafted layer: %v", err)
	}
	d := pushBlob(t, reg, repo, crafted)
	last["digest"], last["size"] = d.String(), len(crafted)
	// A new diff ID for the crafted layer (its uncompressed stream), so that
	// containerd does not reuse the good image's snapshot.
	zr, err := gzip.NewReader(bytes.NewReader(crafted))
	if err != nil {
		t.Fatal(err)
	}
	diffID, err := digest.FromReader(zr)
	if err != nil {
		t.Fatal(err)
	}
	cfgDesc := m["config"].(map[string]any)
	resp = registryDo(t, http.MethodGet, reg.URL("/v2/"+repo+"/blobs/"+cfgDesc["digest"].(string)), "", nil, http.StatusOK)
	var cfg map[string]any
	json.NewDecoder(resp.Body).Decode(&cfg)
	resp.Body.Close()
	rootfs := cfg["rootfs"].(map[string]any)
	ids := rootfs["diff_ids"].([]any)
	ids[len(ids)-1] = diffID.String()
	cfgJSON, _ := json.Marshal(cfg)
	cd := pushBlob(t, reg, repo, cfgJSON)
	cfgDesc["digest"], cfgDesc["size"] = cd.String(), len(cfgJSON)
	ann, _ := last["annotations"].(map[string]any)
	if ann == nil {
		ann = map[string]any{}
		last["annotations"] = ann
	}
	ann["containerd.io/snapshot/stargz/toc.digest"] = r.TOCDigest().String()
	doc, _ := json.Marshal(m)
	registryDo(t, http.MethodPut, reg.URL("/v2/"+repo+"/manifests/"+newTag), mt, doc, http.StatusCreated).Body.Close()
}

// pushBlob uploads data to repo in one request.
func pushBlob(t *testing.T, reg *testenv.Registry, repo string, data []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(data)
	resp := registryDo(t, http.MethodPost, reg.URL("/v2/"+repo+"/blobs/uploads/"), "", nil, http.StatusAccepted)
	loc := resp.Header.Get("Location")
	resp.Body.Close()
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	if !strings.HasPrefix(loc, "http") {
		loc = reg.URL(loc)
	}
	registryDo(t, http.MethodPut, loc+sep+"digest="+d.String(), "application/octet-stream", data, http.StatusCreated).Body.Close()
	return d
}

// TestSnapshotterHostileLayers: crafted eStargz layers under df-snapshotter.
// A broken chunk is EIO on that file only; a TOC that cannot be trusted
// (huge or negative chunk size, a chunk past the end of the blob) is
// refused and the layer unpacked from the same download; the snapshotter
// and the good image keep working throughout.
func TestSnapshotterHostileLayers(t *testing.T) {
	bin := bins(t)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	big := strings.Repeat("hostile layer data\n", 200000)
	im := testenv.BuildImage(t, testenv.ImageOptions{Files: []testenv.ImageFile{
		{Path: "/data/big", Data: []byte(big)},
		{Path: "/data/small", Data: []byte("hello\n")},
	}})
	im.Push(t, reg.Addr+"/test/hostile:plain")
	p := testenv.Start(t, bin, "dfctl", "image", "convert", "--compression-level", "1",
		reg.Addr+"/test/hostile:plain", reg.Addr+"/test/hostile:esgz")
	if code, err := p.Wait(5 * time.Minute); err != nil || code != 0 {
		t.Fatalf("dfctl image convert: %d %v\n%s", code, err, p.Tail(30))
	}
	onFile := func(name, typ string, f func(e *estargz.TOCEntry)) func(*estargz.JTOC) {
		return func(toc *estargz.JTOC) {
			for _, e := range toc.Entries {
				if strings.TrimPrefix(e.Name, "./") == name && e.Type == typ {
					f(e)
					return
				}
			}
			t.Fatalf("no %s entry %s in the last layer", typ, name)
		}
	}
	// The last layer holds /data/small (one layer per file).
	pushCrafted(t, reg, "test/hostile", "esgz", "broken", onFile("data/small", "reg", func(e *estargz.TOCEntry) { e.InnerOffset = 1 << 40 }))
	pushCrafted(t, reg, "test/hostile", "esgz", "huge", onFile("data/small", "reg", func(e *estargz.TOCEntry) { e.ChunkSize = 1 << 40 }))
	pushCrafted(t, reg, "test/hostile", "esgz", "negative", onFile("data/small", "reg", func(e *estargz.TOCEntry) { e.ChunkSize = -1 }))
	pushCrafted(t, reg, "test/hostile", "esgz", "pastend", onFile("data/small", "reg", func(e *estargz.TOCEntry) { e.Offset = 1 << 40 }))

	sn := testenv.StartSupernode(t, bin, testenv.AllowOrigins(reg.Addr)...)
	h := startHost(t, bin, sn.Addr, "--background-fetch=false", "--read-timeout", "10s")
	good := reg.Addr + "/test/hostile:esgz"
	h.pull(t, bin, good)
	if out := h.ctr(t, "run", "--rm", "--snapshotter", "damselfly", good, "good1", "cat", "/data/small"); out != "hello\n" {
		t.Fatalf("good image: %q", out)
	}
	h.pull(t, bin, reg.Addr+"/test/hostile:broken")
	out := h.ctr(t, "run", "--rm", "--snapshotter", "damselfly", reg.Addr+"/test/hostile:broken", "broken1",
		"sh", "-c", "cat /data/small; echo rc=$?; ls /data")
	if !strings.Contains(out, "rc=1") || !strings.Contains(out, "small") || !strings.Contains(out, "big") {
		t.Errorf("broken chunk: %q, want a failed read (EIO) and a working ls", out)
	}
	for _, tag := range []string{"huge", "negative", "pastend"} {
		ref := reg.Addr + "/test/hostile:" + tag
		h.pull(t, bin, ref)
		out := h.ctr(t, "run", "--rm", "--snapshotter", "damselfly", ref, tag+"1", "sh", "-c", "cat /data/small; ls /data")
		if !strings.Contains(out, "hello") || !strings.Contains(out, "big") {
			t.Errorf("%s: %q, want the layer unpacked and readable", tag, out)
		}
	}
	log := h.snap.Log()
	if h.snap.Exited() || strings.Contains(log, "panic:") || strings.Contains(log, "fatal error") {
		t.Fatalf("df-snapshotter died or panicked:\n%s", h.snap.Tail(40))
	}
	if n := strings.Count(log, "unpacking the layer through the swarm"); n < 3 {
		t.Errorf("%d refused layers unpacked, want 3:\n%s", n, h.snap.Tail(40))
	}
	if out := h.ctr(t, "run", "--rm", "--snapshotter", "damselfly", good, "good2", "cat", "/data/small"); out != "hello\n" {
		t.Fatalf("good image after the hostile ones: %q", out)
	}
}
