// Package oci owns the registry-side shapes of a container image: OCI and
// Docker schema2 media types, manifests and indexes (parsing and the
// checks a tool needs before trusting them), choosing a platform's
// manifest from an index, and rewriting an image for new layers (the
// config's rootfs.diff_ids and an OCI manifest that points at the new
// blobs). It performs no I/O and must not know about registries' HTTP
// APIs, authentication, containerd or the P2P network.
package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types of OCI and Docker schema2 images.
const (
	MediaTypeOCIManifest        = ocispec.MediaTypeImageManifest
	MediaTypeOCIIndex           = ocispec.MediaTypeImageIndex
	MediaTypeOCIConfig          = ocispec.MediaTypeImageConfig
	MediaTypeOCILayer           = ocispec.MediaTypeImageLayer
	MediaTypeOCILayerGzip       = ocispec.MediaTypeImageLayerGzip
	MediaTypeOCILayerZstd       = ocispec.MediaTypeImageLayerZstd
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar"
	MediaTypeDockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeDockerSchema1      = "application/vnd.docker.distribution.manifest.v1+json"
	MediaTypeDockerSchema1JWS   = "application/vnd.docker.distribution.manifest.v1+prettyjws"

	// AnnotationDockerReferenceType marks BuildKit attestation manifests
	// inside an index ("attestation-manifest"); they are not images.
	AnnotationDockerReferenceType = "vnd.docker.reference.type"
)

// IsIndex reports whether mt is an OCI index or a Docker manifest list.
func IsIndex(mt string) bool { return mt == MediaTypeOCIIndex || mt == MediaTypeDockerManifestList }

// IsManifest reports whether mt is an OCI or Docker schema2 image manifest.
func IsManifest(mt string) bool { return mt == MediaTypeOCIManifest || mt == MediaTypeDockerManifest }

// IsConfig reports whether mt is an OCI or Docker image config.
func IsConfig(mt string) bool { return mt == MediaTypeOCIConfig || mt == MediaTypeDockerConfig }

// IsLayer reports whether mt is an OCI or Docker filesystem layer
// (compressed or not, distributable or not).
func IsLayer(mt string) bool {
	return strings.HasPrefix(mt, "application/vnd.oci.image.layer.") ||
		strings.HasPrefix(mt, "application/vnd.docker.image.rootfs.")
}

// IsNonDistributable reports whether mt is a foreign/non-distributable
// layer (its blob usually lives outside the registry).
func IsNonDistributable(mt string) bool {
	return strings.HasPrefix(mt, "application/vnd.oci.image.layer.nondistributable.") ||
		strings.HasPrefix(mt, "application/vnd.docker.image.rootfs.foreign.")
}

// IsEncrypted reports whether mt is an encrypted layer (ocicrypt).
func IsEncrypted(mt string) bool { return strings.HasSuffix(mt, "+encrypted") }

// DetectMediaType returns the media type of a manifest or index document:
// the one the registry declared unless it is missing or generic, then the
// document's own mediaType field, then its shape.
func DetectMediaType(declared string, data []byte) string {
	if declared != "" && declared != "application/octet-stream" && declared != "application/json" && declared != "text/plain" {
		return declared
	}
	var probe struct {
		SchemaVersion int               `json:"schemaVersion"`
		MediaType     string            `json:"mediaType"`
		Manifests     json.RawMessage   `json:"manifests"`
		Config        json.RawMessage   `json:"config"`
		FSLayers      []json.RawMessage `json:"fsLayers"`
	}
	if json.Unmarshal(data, &probe) != nil {
		return declared
	}
	switch {
	case probe.MediaType != "":
		return probe.MediaType
	case probe.SchemaVersion == 1 || probe.FSLayers != nil:
		return MediaTypeDockerSchema1
	case probe.Manifests != nil:
		return MediaTypeOCIIndex
	case probe.Config != nil:
		return MediaTypeOCIManifest
	}
	return declared
}

// ParseManifest decodes an OCI or Docker schema2 image manifest of media
// type mt and checks that it is one: schema version 2, a config
// descriptor, layers that are layers.
func ParseManifest(mt string, data []byte) (ocispec.Manifest, error) {
	var m ocispec.Manifest
	if mt == MediaTypeDockerSchema1 || mt == MediaTypeDockerSchema1JWS {
		return m, errors.New("docker schema1 manifests are not supported (re-push the image with a current client)")
	}
	if !IsManifest(mt) {
		return m, fmt.Errorf("media type %q is not an image manifest", mt)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("parse manifest: %w", err)
	}
	if m.SchemaVersion != 2 {
		return m, fmt.Errorf("manifest schemaVersion %d, want 2", m.SchemaVersion)
	}
	if m.MediaType != "" && m.MediaType != mt {
		return m, fmt.Errorf("manifest declares media type %q but was served as %q", m.MediaType, mt)
	}
	if err := checkDescriptor(m.Config); err != nil {
		return m, fmt.Errorf("manifest config: %w", err)
	}
	if !IsConfig(m.Config.MediaType) {
		return m, fmt.Errorf("manifest config has media type %q: not a container image (artifact?)", m.Config.MediaType)
	}
	for i, l := range m.Layers {
		if err := checkDescriptor(l); err != nil {
			return m, fmt.Errorf("manifest layer %d: %w", i, err)
		}
		if !IsLayer(l.MediaType) {
			return m, fmt.Errorf("manifest layer %d has media type %q: not a filesystem layer", i, l.MediaType)
		}
	}
	return m, nil
}

// ParseIndex decodes an OCI index or Docker manifest list of media type mt.
func ParseIndex(mt string, data []byte) (ocispec.Index, error) {
	var idx ocispec.Index
	if !IsIndex(mt) {
		return idx, fmt.Errorf("media type %q is not an image index", mt)
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		return idx, fmt.Errorf("parse index: %w", err)
	}
	if idx.SchemaVersion != 2 {
		return idx, fmt.Errorf("index schemaVersion %d, want 2", idx.SchemaVersion)
	}
	for i, d := range idx.Manifests {
		if err := checkDescriptor(d); err != nil {
			return idx, fmt.Errorf("index entry %d: %w", i, err)
		}
	}
	return idx, nil
}

func checkDescriptor(d ocispec.Descriptor) error {
	if err := d.Digest.Validate(); err != nil {
		return fmt.Errorf("digest %q: %w", d.Digest, err)
	}
	if d.Size < 0 {
		return fmt.Errorf("negative size %d", d.Size)
	}
	if d.MediaType == "" {
		return errors.New("missing mediaType")
	}
	return nil
}

// ParsePlatform parses "os/arch[/variant]" ("linux/arm64/v8"); an empty
// string means the platform this program runs on.
func ParsePlatform(s string) (ocispec.Platform, error) {
	if s == "" {
		return platforms.DefaultSpec(), nil
	}
	p, err := platforms.Parse(s)
	if err != nil {
		return p, fmt.Errorf("platform %q: %w", s, err)
	}
	return p, nil
}

// SelectManifest picks the entry of idx for platform p: among entries
// whose platform p can run (same OS and architecture, a compatible
// variant), the best one; attestation manifests and entries of unknown
// platform are never chosen, except that an index whose entries carry no
// platform at all yields its single entry. The chosen entry may itself
// be an index (nested indexes); the caller resolves it again.
func SelectManifest(idx ocispec.Index, p ocispec.Platform) (ocispec.Descriptor, error) {
	m := platforms.Only(p)
	var matches, unplatformed []ocispec.Descriptor
	var avail []string
	for _, d := range idx.Manifests {
		if !IsManifest(d.MediaType) && !IsIndex(d.MediaType) {
			continue
		}
		if d.Annotations[AnnotationDockerReferenceType] == "attestation-manifest" {
			continue
		}
		if d.Platform == nil {
			unplatformed = append(unplatformed, d)
			continue
		}
		avail = append(avail, platforms.Format(*d.Platform))
		if m.Match(*d.Platform) {
			matches = append(matches, d)
		}
	}
	if len(matches) > 0 {
		sort.SliceStable(matches, func(i, j int) bool { return m.Less(*matches[i].Platform, *matches[j].Platform) })
		return matches[0], nil
	}
	if len(avail) == 0 && len(unplatformed) == 1 {
		return unplatformed[0], nil
	}
	if len(avail) == 0 {
		return ocispec.Descriptor{}, fmt.Errorf("index has no image for platform %s (it lists %d images without platform)", platforms.Format(p), len(unplatformed))
	}
	return ocispec.Descriptor{}, fmt.Errorf("index has no image for platform %s (available: %s)", platforms.Format(p), strings.Join(avail, ", "))
}

// DiffIDs returns the rootfs.diff_ids of an image config.
func DiffIDs(config []byte) ([]digest.Digest, error) {
	var c struct {
		RootFS struct {
			Type    string          `json:"type"`
			DiffIDs []digest.Digest `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(config, &c); err != nil {
		return nil, fmt.Errorf("parse image config: %w", err)
	}
	if c.RootFS.Type != "layers" {
		return nil, fmt.Errorf("image config rootfs.type %q, want \"layers\"", c.RootFS.Type)
	}
	for i, d := range c.RootFS.DiffIDs {
		if err := d.Validate(); err != nil {
			return nil, fmt.Errorf("image config diff_id %d: %w", i, err)
		}
	}
	return c.RootFS.DiffIDs, nil
}

// SetDiffIDs returns config with rootfs.diff_ids replaced by ids; every
// other field (history, labels, fields this package does not know) is
// kept. The number of diff IDs must not change.
func SetDiffIDs(config []byte, ids []digest.Digest) ([]byte, error) {
	old, err := DiffIDs(config)
	if err != nil {
		return nil, err
	}
	if len(old) != len(ids) {
		return nil, fmt.Errorf("image config has %d diff_ids, got %d new ones", len(old), len(ids))
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(config, &top); err != nil {
		return nil, fmt.Errorf("parse image config: %w", err)
	}
	var rootfs map[string]json.RawMessage
	if err := json.Unmarshal(top["rootfs"], &rootfs); err != nil {
		return nil, fmt.Errorf("parse image config rootfs: %w", err)
	}
	if ids == nil {
		ids = []digest.Digest{}
	}
	if rootfs["diff_ids"], err = json.Marshal(ids); err != nil {
		return nil, err
	}
	if top["rootfs"], err = json.Marshal(rootfs); err != nil {
		return nil, err
	}
	return json.Marshal(top)
}

// Rewrite returns an OCI image manifest for src with a new config and new
// layers (one per layer of src, in order). Docker media types are mapped
// to their OCI equivalents; src's annotations are kept, its subject is
// dropped (the new manifest is a different image, not an artifact about
// the old one).
func Rewrite(src ocispec.Manifest, config ocispec.Descriptor, layers []ocispec.Descriptor) (ocispec.Manifest, error) {
	if len(layers) != len(src.Layers) {
		return ocispec.Manifest{}, fmt.Errorf("manifest has %d layers, got %d new ones", len(src.Layers), len(layers))
	}
	if config.MediaType == MediaTypeDockerConfig || config.MediaType == "" {
		config.MediaType = MediaTypeOCIConfig
	}
	out := ocispec.Manifest{
		Versioned:   specs.Versioned{SchemaVersion: 2},
		MediaType:   MediaTypeOCIManifest,
		Config:      config,
		Layers:      append([]ocispec.Descriptor(nil), layers...),
		Annotations: src.Annotations,
	}
	for i, l := range out.Layers {
		switch l.MediaType {
		case MediaTypeDockerLayerGzip:
			out.Layers[i].MediaType = MediaTypeOCILayerGzip
		case MediaTypeDockerLayer:
			out.Layers[i].MediaType = MediaTypeOCILayer
		}
	}
	return out, nil
}

// Descriptor returns the descriptor of a marshalled document.
func Descriptor(mediaType string, data []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
}
