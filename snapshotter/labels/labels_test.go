package labels_test

import (
	"strings"
	"testing"

	"github.com/containerd/stargz-snapshotter/estargz"

	"github.com/damselfly-p2p/damselfly/snapshotter/labels"
)

func TestLabels(t *testing.T) {
	tests := []struct{ name, got, want string }{
		{"TOC digest is eStargz's annotation", labels.TOCDigest, estargz.TOCJSONDigestAnnotation},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, tc.got, tc.want)
		}
	}
	// containerd's unpacker passes only annotations with this prefix to
	// the snapshotter as labels.
	for _, l := range []string{labels.ImageRef, labels.LayerDigest, labels.TOCDigest, labels.CRIImageRef, labels.CRILayerDigest} {
		if !strings.HasPrefix(l, "containerd.io/snapshot/") {
			t.Errorf("label %q would not reach the snapshotter", l)
		}
	}
}
