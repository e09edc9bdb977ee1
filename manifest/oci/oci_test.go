package oci

import (
	"encoding/json"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func desc(mt, content string, p *ocispec.Platform) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mt, Digest: digest.FromString(content), Size: int64(len(content)), Platform: p}
}

func plat(s string) *ocispec.Platform {
	p, err := ParsePlatform(s)
	if err != nil {
		panic(err)
	}
	return &p
}

func TestSelectManifest(t *testing.T) {
	amd64 := desc(MediaTypeOCIManifest, "amd64", plat("linux/amd64"))
	arm64 := desc(MediaTypeOCIManifest, "arm64", plat("linux/arm64"))
	armv6 := desc(MediaTypeOCIManifest, "armv6", plat("linux/arm/v6"))
	armv7 := desc(MediaTypeOCIManifest, "armv7", plat("linux/arm/v7"))
	win := desc(MediaTypeOCIManifest, "windows", plat("windows/amd64"))
	attest := desc(MediaTypeOCIManifest, "attest", &ocispec.Platform{OS: "unknown", Architecture: "unknown"})
	attest.Annotations = map[string]string{AnnotationDockerReferenceType: "attestation-manifest"}
	idx := ocispec.Index{Manifests: []ocispec.Descriptor{attest, win, armv6, armv7, arm64, amd64}}

	for _, tc := range []struct {
		platform string
		want     ocispec.Descriptor
	}{
		{"linux/amd64", amd64},
		{"linux/arm64", arm64},
		{"linux/arm64/v8", arm64},
		{"linux/arm/v7", armv7}, // best: exact variant, not v6
		{"linux/arm/v6", armv6},
		{"linux/arm/v8", armv7}, // v8 can run v7 (and v6); v7 is better
		{"windows/amd64", win},
	} {
		got, err := SelectManifest(idx, *plat(tc.platform))
		if err != nil {
			t.Errorf("%s: %v", tc.platform, err)
			continue
		}
		if got.Digest != tc.want.Digest {
			t.Errorf("%s: got %s, want %s", tc.platform, got.Platform, tc.want.Platform)
		}
	}

	_, err := SelectManifest(idx, *plat("linux/s390x"))
	if err == nil || !strings.Contains(err.Error(), "linux/arm64") || !strings.Contains(err.Error(), "linux/s390x") {
		t.Errorf("s390x: want error listing available platforms, got %v", err)
	}
	// Attestations are never images, even when they are the only entry.
	if _, err := SelectManifest(ocispec.Index{Manifests: []ocispec.Descriptor{attest}}, *plat("linux/amd64")); err == nil {
		t.Error("attestation-only index: want error")
	}
	// An index of one unplatformed manifest yields it.
	bare := desc(MediaTypeDockerManifest, "bare", nil)
	got, err := SelectManifest(ocispec.Index{Manifests: []ocispec.Descriptor{bare}}, *plat("linux/amd64"))
	if err != nil || got.Digest != bare.Digest {
		t.Errorf("unplatformed: got %v, %v", got, err)
	}
	// Nested index entries may be chosen.
	nested := desc(MediaTypeOCIIndex, "nested", plat("linux/amd64"))
	got, err = SelectManifest(ocispec.Index{Manifests: []ocispec.Descriptor{nested}}, *plat("linux/amd64"))
	if err != nil || got.Digest != nested.Digest {
		t.Errorf("nested: got %v, %v", got, err)
	}
}

func TestParsePlatformDefault(t *testing.T) {
	p, err := ParsePlatform("")
	if err != nil || p.OS == "" || p.Architecture == "" {
		t.Fatalf("default platform: %v %v", p, err)
	}
	if _, err := ParsePlatform("linux/amd64/v2/extra"); err == nil {
		t.Error("bad platform: want error")
	}
}

const dockerManifest = `{
  "schemaVersion": 2,
  "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
  "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 100, "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111"},
  "layers": [
    {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 10, "digest": "sha256:2222222222222222222222222222222222222222222222222222222222222222"},
    {"mediaType": "application/vnd.docker.image.rootfs.diff.tar", "size": 20, "digest": "sha256:3333333333333333333333333333333333333333333333333333333333333333"}
  ]
}`

func TestParseManifestAndRewrite(t *testing.T) {
	mt := DetectMediaType("application/octet-stream", []byte(dockerManifest))
	if mt != MediaTypeDockerManifest {
		t.Fatalf("detected %q", mt)
	}
	m, err := ParseManifest(mt, []byte(dockerManifest))
	if err != nil {
		t.Fatal(err)
	}
	m.Annotations = map[string]string{"org.opencontainers.image.source": "x"}
	m.Subject = &ocispec.Descriptor{MediaType: MediaTypeOCIManifest, Digest: digest.FromString("s"), Size: 1}
	cfg := Descriptor(MediaTypeDockerConfig, []byte(`{}`))
	newLayers := []ocispec.Descriptor{
		{MediaType: MediaTypeOCILayerGzip, Digest: digest.FromString("a"), Size: 1, Annotations: map[string]string{"k": "v"}},
		{MediaType: MediaTypeDockerLayer, Digest: digest.FromString("b"), Size: 2},
	}
	out, err := Rewrite(m, cfg, newLayers)
	if err != nil {
		t.Fatal(err)
	}
	if out.MediaType != MediaTypeOCIManifest || out.SchemaVersion != 2 {
		t.Errorf("media type %q schema %d", out.MediaType, out.SchemaVersion)
	}
	if out.Config.MediaType != MediaTypeOCIConfig || out.Config.Digest != cfg.Digest {
		t.Errorf("config %+v", out.Config)
	}
	if out.Layers[0].Annotations["k"] != "v" || out.Layers[1].MediaType != MediaTypeOCILayer {
		t.Errorf("layers %+v", out.Layers)
	}
	if out.Subject != nil || out.Annotations["org.opencontainers.image.source"] != "x" {
		t.Errorf("subject %v annotations %v", out.Subject, out.Annotations)
	}
	// The result is a valid OCI manifest of its own.
	data, _ := json.Marshal(out)
	if _, err := ParseManifest(DetectMediaType("", data), data); err != nil {
		t.Errorf("reparse: %v", err)
	}
	if _, err := Rewrite(m, cfg, newLayers[:1]); err == nil {
		t.Error("layer count mismatch: want error")
	}
}

func TestParseManifestRejects(t *testing.T) {
	for name, tc := range map[string]struct{ mt, doc string }{
		"schema1":    {MediaTypeDockerSchema1JWS, `{"schemaVersion":1}`},
		"index":      {MediaTypeOCIIndex, `{"schemaVersion":2,"manifests":[]}`},
		"version":    {MediaTypeOCIManifest, `{"schemaVersion":1}`},
		"bad digest": {MediaTypeOCIManifest, `{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:zz","size":1}}`},
		"artifact":   {MediaTypeOCIManifest, `{"schemaVersion":2,"config":{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":1}}`},
		"not layer": {MediaTypeOCIManifest, `{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":1},
			"layers":[{"mediaType":"application/json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":1}]}`},
		"mismatch": {MediaTypeOCIManifest, dockerManifest},
		"garbage":  {MediaTypeOCIManifest, `{`},
	} {
		if _, err := ParseManifest(tc.mt, []byte(tc.doc)); err == nil {
			t.Errorf("%s: want error", name)
		}
	}
	if got := DetectMediaType("", []byte(`{"schemaVersion":2,"manifests":[]}`)); got != MediaTypeOCIIndex {
		t.Errorf("detect index: %q", got)
	}
	if got := DetectMediaType("", []byte(`{"schemaVersion":1,"fsLayers":[]}`)); got != MediaTypeDockerSchema1 {
		t.Errorf("detect schema1: %q", got)
	}
	if _, err := ParseIndex(MediaTypeDockerManifestList, []byte(`{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"bad","size":1}]}`)); err == nil {
		t.Error("index with bad digest: want error")
	}
}

func TestSetDiffIDs(t *testing.T) {
	cfg := []byte(`{"architecture":"amd64","os":"linux","config":{"Env":["A=1"]},"x-unknown":{"keep":true},
		"rootfs":{"type":"layers","diff_ids":["sha256:1111111111111111111111111111111111111111111111111111111111111111","sha256:2222222222222222222222222222222222222222222222222222222222222222"]},
		"history":[{"created_by":"a"},{"created_by":"b","empty_layer":true},{"created_by":"c"}]}`)
	ids := []digest.Digest{digest.FromString("x"), digest.FromString("y")}
	out, err := SetDiffIDs(cfg, ids)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DiffIDs(out)
	if err != nil || len(got) != 2 || got[0] != ids[0] || got[1] != ids[1] {
		t.Fatalf("diff ids %v %v", got, err)
	}
	var img ocispec.Image
	if err := json.Unmarshal(out, &img); err != nil {
		t.Fatal(err)
	}
	if img.Architecture != "amd64" || len(img.History) != 3 || img.Config.Env[0] != "A=1" {
		t.Errorf("lost fields: %s", out)
	}
	if !strings.Contains(string(out), `"x-unknown":{"keep":true}`) {
		t.Errorf("unknown field dropped: %s", out)
	}
	if _, err := SetDiffIDs(cfg, ids[:1]); err == nil {
		t.Error("count mismatch: want error")
	}
	if _, err := DiffIDs([]byte(`{"rootfs":{"type":"other"}}`)); err == nil {
		t.Error("bad rootfs type: want error")
	}
}
