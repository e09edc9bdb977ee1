package snapshotter

import "github.com/containerd/stargz-snapshotter/estargz"

// Labels that tell the snapshotter a layer can be mounted remotely. The
// containerd unpacker passes a layer descriptor's annotations that start
// with "containerd.io/snapshot/" to Prepare as snapshot labels, so a pull
// tool (dfctl image pull) only has to annotate layer descriptors; the
// Kubernetes CRI plugin sets the cri.* labels itself.
const (
	// LabelImageRef is the image reference the layer belongs to (its
	// registry host and repository locate the blob).
	LabelImageRef = "containerd.io/snapshot/damselfly.image-ref"
	// LabelLayerDigest is the layer's blob digest (its P2P task ID).
	LabelLayerDigest = "containerd.io/snapshot/damselfly.layer-digest"
	// LabelCRIImageRef and LabelCRILayerDigest are the CRI plugin's
	// equivalents.
	LabelCRIImageRef    = "containerd.io/snapshot/cri.image-ref"
	LabelCRILayerDigest = "containerd.io/snapshot/cri.layer-digest"
	// LabelTOCDigest is eStargz's TOC digest annotation; a layer without it
	// is not eStargz and is unpacked normally.
	LabelTOCDigest = estargz.TOCJSONDigestAnnotation
	// LabelSnapshotRef is containerd's target name for an unpacked layer.
	LabelSnapshotRef = "containerd.io/snapshot.ref"
	// labelRemote marks committed snapshots that are remote mounts.
	labelRemote = "containerd.io/snapshot/damselfly.remote"
)

// DefaultName is the snapshotter's name in containerd's proxy_plugins.
const DefaultName = "damselfly"
