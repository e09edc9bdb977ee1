package supernode

import (
	"fmt"
	"io"

	"github.com/damselfly-p2p/damselfly/cache"
	"github.com/damselfly-p2p/damselfly/manifest"
)

// parseDigest is manifest.ParseDigest; preheat.go still calls it by this name.
var parseDigest = manifest.ParseDigest

// verifyWhole checks the whole content of t against its expected digest.
func verifyWhole(t *cache.Task, want string) error {
	v, err := manifest.NewDigestVerifier(want)
	if err != nil {
		return err
	}
	if _, err := io.Copy(v, io.NewSectionReader(t, 0, t.Meta().Length)); err != nil {
		return fmt.Errorf("hash the seed's copy: %w", err)
	}
	return v.Verify()
}
