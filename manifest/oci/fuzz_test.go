package oci

import (
	"testing"
)

// mediaTypes are the types the fuzzers pick from (by index), so that the
// fuzzer reaches past the media-type check.
var mediaTypes = []string{MediaTypeOCIManifest, MediaTypeDockerManifest, MediaTypeOCIIndex, MediaTypeDockerManifestList,
	MediaTypeDockerSchema1, "application/json", ""}

const seedManifest = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},
"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}]}`

const seedIndex = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"platform":{"os":"linux","architecture":"amd64"}},
{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":-1,"platform":{"os":"linux","architecture":"arm","variant":"v7"}}]}`

// FuzzParseManifest: a registry's manifest bytes never crash the parser;
// an accepted manifest is a container image's.
func FuzzParseManifest(f *testing.F) {
	f.Add(uint8(0), []byte(seedManifest))
	f.Add(uint8(1), []byte(seedManifest))
	f.Add(uint8(4), []byte(`{"schemaVersion":1}`))
	f.Add(uint8(0), []byte(`{"schemaVersion":2,"layers":null}`))
	f.Add(uint8(6), []byte(`[]`))
	f.Fuzz(func(t *testing.T, k uint8, data []byte) {
		mt := mediaTypes[int(k)%len(mediaTypes)]
		DetectMediaType(mt, data)
		m, err := ParseManifest(mt, data)
		if err != nil {
			return
		}
		if m.SchemaVersion != 2 || !IsConfig(m.Config.MediaType) {
			t.Fatalf("accepted manifest %+v", m)
		}
		for _, l := range m.Layers {
			if !IsLayer(l.MediaType) || l.Size < 0 {
				t.Fatalf("accepted layer %+v", l)
			}
		}
		if _, err := Rewrite(m, m.Config, m.Layers); err != nil {
			t.Logf("rewrite: %v", err)
		}
	})
}

// FuzzParseIndex: index bytes never crash the parser nor platform
// selection.
func FuzzParseIndex(f *testing.F) {
	f.Add(uint8(2), []byte(seedIndex), "linux/amd64")
	f.Add(uint8(3), []byte(seedIndex), "linux/arm/v7")
	f.Add(uint8(2), []byte(`{"schemaVersion":2,"manifests":[{}]}`), "")
	f.Add(uint8(0), []byte(seedIndex), "windows")
	f.Fuzz(func(t *testing.T, k uint8, data []byte, platform string) {
		mt := mediaTypes[int(k)%len(mediaTypes)]
		idx, err := ParseIndex(mt, data)
		if err != nil {
			return
		}
		p, err := ParsePlatform(platform)
		if err != nil {
			return
		}
		if d, err := SelectManifest(idx, p); err == nil && !IsManifest(d.MediaType) && d.MediaType != "" {
			t.Logf("selected %s", d.MediaType)
		}
	})
}

// FuzzDiffIDs: image configs are read without panics, and diff IDs written
// back read back.
func FuzzDiffIDs(f *testing.F) {
	f.Add([]byte(`{"rootfs":{"type":"layers","diff_ids":["sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"]}}`))
	f.Add([]byte(`{"rootfs":null}`))
	f.Fuzz(func(t *testing.T, config []byte) {
		ids, err := DiffIDs(config)
		if err != nil {
			return
		}
		out, err := SetDiffIDs(config, ids)
		if err != nil {
			return
		}
		again, err := DiffIDs(out)
		if err != nil || len(again) != len(ids) {
			t.Fatalf("diff IDs do not read back: %v, %v", again, err)
		}
	})
}
