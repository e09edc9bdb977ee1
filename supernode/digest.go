package supernode

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/damselfly-p2p/damselfly/cache"
)

func parseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", fmt.Errorf("invalid digest %q: %w", s, err)
	}
	if d.Algorithm() != digest.SHA256 {
		return "", fmt.Errorf("invalid digest %q: only sha256 is supported", s)
	}
	return d, nil
}

// verifyWhole checks the whole content of t against a sha256 digest.
func verifyWhole(t *cache.Task, want string) error {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(t, 0, t.Meta().Length)); err != nil {
		return fmt.Errorf("hash content: %w", err)
	}
	got := "sha256:" + hex.EncodeToString(h.Sum(nil))
	if got != want {
		return fmt.Errorf("content digest %s does not match expected %s", got, want)
	}
	return nil
}
