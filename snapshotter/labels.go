package snapshotter

import "github.com/damselfly-p2p/damselfly/snapshotter/labels"

// The snapshot labels the snapshotter reads and writes; package
// snapshotter/labels defines them (and documents each) so that tools can
// use them without linking the snapshotter.
const (
	LabelImageRef       = labels.ImageRef
	LabelLayerDigest    = labels.LayerDigest
	LabelCRIImageRef    = labels.CRIImageRef
	LabelCRILayerDigest = labels.CRILayerDigest
	LabelTOCDigest      = labels.TOCDigest
	LabelSnapshotRef    = labels.SnapshotRef
	labelRemote         = labels.Remote
)

// DefaultName is the snapshotter's name in containerd's proxy_plugins.
const DefaultName = labels.DefaultName
