package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/containerd/containerd/images"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/damselfly-p2p/damselfly/manifest/oci"
	"github.com/damselfly-p2p/damselfly/snapshotter/labels"
)

func TestRemoteLabelsWrapper(t *testing.T) {
	const ref = "127.0.0.1:5000/test/busybox:esgz"
	toc := map[string]string{labels.TOCDigest: "sha256:toc"}
	cfg := ocispec.Descriptor{MediaType: oci.MediaTypeOCIConfig, Digest: digest.FromString("cfg")}
	l1 := ocispec.Descriptor{MediaType: oci.MediaTypeOCILayerGzip, Digest: digest.FromString("l1"), Annotations: toc}
	l2 := ocispec.Descriptor{MediaType: oci.MediaTypeDockerLayerGzip, Digest: digest.FromString("l2")}
	m1 := ocispec.Descriptor{MediaType: oci.MediaTypeOCIManifest, Digest: digest.FromString("m1")}
	children := map[digest.Digest][]ocispec.Descriptor{
		digest.FromString("index"): {m1},
		m1.Digest:                  {cfg, l1, l2},
	}
	inner := images.HandlerFunc(func(_ context.Context, d ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		if d.Digest == digest.FromString("fail") {
			return nil, errors.New("boom")
		}
		return append([]ocispec.Descriptor(nil), children[d.Digest]...), nil
	})
	h := remoteLabelsWrapper(ref)(inner)

	// Index children (manifests) are not layers: untouched.
	got, err := h.Handle(context.Background(), ocispec.Descriptor{MediaType: oci.MediaTypeOCIIndex, Digest: digest.FromString("index")})
	if err != nil || len(got) != 1 || got[0].Annotations != nil {
		t.Fatalf("index children: %+v %v", got, err)
	}
	for _, mt := range []string{oci.MediaTypeOCIManifest, oci.MediaTypeDockerManifest} {
		got, err = h.Handle(context.Background(), ocispec.Descriptor{MediaType: mt, Digest: m1.Digest})
		if err != nil || len(got) != 3 {
			t.Fatalf("%s children: %+v %v", mt, got, err)
		}
		if got[0].Annotations != nil {
			t.Errorf("config annotated: %v", got[0].Annotations)
		}
		for _, l := range got[1:] {
			for _, k := range []struct{ ref, digest string }{
				{labels.ImageRef, labels.LayerDigest},
				{labels.CRIImageRef, labels.CRILayerDigest}, // what stargz-snapshotter reads
			} {
				if l.Annotations[k.ref] != ref || l.Annotations[k.digest] != l.Digest.String() {
					t.Errorf("layer %s: %s / %s not set: %v", l.Digest, k.ref, k.digest, l.Annotations)
				}
			}
		}
		if got[1].Annotations[labels.TOCDigest] != "sha256:toc" {
			t.Errorf("existing annotation lost: %v", got[1].Annotations)
		}
	}
	// The source descriptors' maps are not modified (they may be shared).
	if len(toc) != 1 {
		t.Errorf("wrapper mutated the original annotation map: %v", toc)
	}
	// Every annotation the snapshotter needs passes containerd's
	// inherited-label filter (the "containerd.io/snapshot/" prefix).
	for _, k := range []string{labels.ImageRef, labels.LayerDigest, labels.CRIImageRef, labels.CRILayerDigest, labels.TOCDigest} {
		if len(k) < len("containerd.io/snapshot/") || k[:len("containerd.io/snapshot/")] != "containerd.io/snapshot/" {
			t.Errorf("label %s is not passed to Prepare by containerd", k)
		}
	}
	// Errors pass through.
	if _, err := h.Handle(context.Background(), ocispec.Descriptor{MediaType: oci.MediaTypeOCIManifest, Digest: digest.FromString("fail")}); err == nil {
		t.Error("want inner error")
	}
}

func TestPullFlagErrors(t *testing.T) {
	o := &pullOptions{downloads: 1}
	if err := runPull(context.Background(), nil, "bad ref:::", o); err == nil || !strings.Contains(err.Error(), "image reference") {
		t.Error("bad reference: want error")
	}
	if err := runPull(context.Background(), nil, "busybox", &pullOptions{downloads: 1, platform: "linux/amd64/v2/x"}); err == nil || !strings.Contains(err.Error(), "--platform") {
		t.Error("bad platform: want error")
	}
	if err := runPull(context.Background(), nil, "busybox", &pullOptions{downloads: 0}); err == nil || !strings.Contains(err.Error(), "downloads") {
		t.Error("--max-concurrent-downloads 0: want error")
	}
}
