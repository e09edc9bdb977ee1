// Package labels owns the names the damselfly snapshotter and the tools
// that prepare images for it (dfctl image pull) agree on: the snapshot
// labels that mark a layer as remotely mountable and the snapshotter's
// name in containerd's configuration. It imports nothing heavy, so a tool
// can use it without linking the snapshotter.
//
// The containerd unpacker passes a layer descriptor's annotations that
// start with "containerd.io/snapshot/" to Prepare as snapshot labels, so a
// pull tool only has to annotate layer descriptors; the Kubernetes CRI
// plugin sets the cri.* labels itself.
package labels

const (
	// ImageRef is the image reference the layer belongs to (its
	// registry host and repository locate the blob).
	ImageRef = "containerd.io/snapshot/damselfly.image-ref"
	// LayerDigest is the layer's blob digest (its P2P task ID).
	LayerDigest = "containerd.io/snapshot/damselfly.layer-digest"
	// CRIImageRef and CRILayerDigest are the CRI plugin's equivalents.
	CRIImageRef    = "containerd.io/snapshot/cri.image-ref"
	CRILayerDigest = "containerd.io/snapshot/cri.layer-digest"
	// TOCDigest is eStargz's TOC digest annotation
	// (estargz.TOCJSONDigestAnnotation); a layer without it is not eStargz
	// and is unpacked normally.
	TOCDigest = "containerd.io/snapshot/stargz/toc.digest"
	// SnapshotRef is containerd's target name for an unpacked layer.
	SnapshotRef = "containerd.io/snapshot.ref"
	// Remote marks committed snapshots that are remote mounts.
	Remote = "containerd.io/snapshot/damselfly.remote"
)

// DefaultName is the snapshotter's name in containerd's proxy_plugins.
const DefaultName = "damselfly"
