package testenv

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestRegistryBuildPush builds a small image, pushes it to a real
// docker-registry through the counting front, and reads it back.
func TestRegistryBuildPush(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	img := BuildImage(t, ImageOptions{Tag: "t1", Files: []ImageFile{
		{Path: "/etc/hello", Data: []byte("hello\n")},
		{Path: "/data/r.bin", Random: 100000, Seed: 1},
	}})
	if len(img.Layers) != 3 || img.Config.Digest == "" || img.FileSHA256["/etc/hello"] != sha256Hex([]byte("hello\n")) {
		t.Fatalf("image %+v", img)
	}
	img.Push(t, reg.Addr+"/x/y:t1")
	reg.ResetCounters()
	req, _ := http.NewRequest("GET", reg.URL("/v2/x/y/manifests/t1"), nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Layers []Descriptor `json:"layers"`
	}
	json.NewDecoder(resp.Body).Decode(&m)
	resp.Body.Close()
	if resp.Header.Get("Docker-Content-Digest") != img.Manifest.Digest || len(m.Layers) != 3 {
		t.Fatalf("manifest %s (%d layers), want %s", resp.Header.Get("Docker-Content-Digest"), len(m.Layers), img.Manifest.Digest)
	}
	last := img.Layers[2]
	resp, err = http.Get(reg.URL("/v2/x/y/blobs/" + last.Digest))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if n != last.Size || reg.BlobBytes() != last.Size || reg.BlobGets() != 1 || reg.ManifestGets() != 1 {
		t.Errorf("read %d of %d bytes; counters: %d blob bytes, %d blob GETs, %d manifest GETs",
			n, last.Size, reg.BlobBytes(), reg.BlobGets(), reg.ManifestGets())
	}
	if got := reg.Requests(); len(got) != 2 || !strings.HasPrefix(got[1], "GET /v2/x/y/blobs/") {
		t.Errorf("requests %q", got)
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/tmp/a`:          "/tmp/a",
		`/tmp/a\040b`:     "/tmp/a b",
		`/tmp/tab\011end`: "/tmp/tab\tend",
		`/tmp/back\134x`:  `/tmp/back\x`,
		`/tmp/trail\04`:   `/tmp/trail\04`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}
