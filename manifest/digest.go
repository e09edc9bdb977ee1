package manifest

import (
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
)

// ParseDigest parses the digest of a whole content, "sha256:<hex>": sha256
// is the only algorithm Damselfly checks contents with. Upper-case input is
// accepted and returned in lower case.
func ParseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(strings.ToLower(s))
	if err != nil {
		return "", fmt.Errorf("invalid digest %q: %w", s, err)
	}
	if d.Algorithm() != digest.SHA256 {
		return "", fmt.Errorf("invalid digest %q: only sha256 is supported", s)
	}
	return d, nil
}

// DigestVerifier checks a whole content against its expected digest: write
// every byte of the content to it, in order, then call Verify. Write never
// fails, so it can sit in an io.MultiWriter or io.TeeReader.
type DigestVerifier struct {
	want digest.Digest
	d    digest.Digester
	n    int64
}

// NewDigestVerifier returns a verifier of the content whose digest is want
// (see ParseDigest).
func NewDigestVerifier(want string) (*DigestVerifier, error) {
	d, err := ParseDigest(want)
	if err != nil {
		return nil, err
	}
	return &DigestVerifier{want: d, d: d.Algorithm().Digester()}, nil
}

// Write hashes p.
func (v *DigestVerifier) Write(p []byte) (int, error) {
	v.d.Hash().Write(p)
	v.n += int64(len(p))
	return len(p), nil
}

// Written is how many bytes have been hashed.
func (v *DigestVerifier) Written() int64 { return v.n }

// Want is the expected digest.
func (v *DigestVerifier) Want() digest.Digest { return v.want }

// Verify reports whether the bytes written so far have the expected digest:
// nil if they do, a *DigestMismatchError if not.
func (v *DigestVerifier) Verify() error {
	if got := v.d.Digest(); got != v.want {
		return &DigestMismatchError{Want: v.want, Got: got, Size: v.n}
	}
	return nil
}

// DigestMismatchError says a content does not have its expected digest.
type DigestMismatchError struct {
	Want, Got digest.Digest
	Size      int64 // bytes hashed
}

func (e *DigestMismatchError) Error() string {
	return fmt.Sprintf("content digest %s (%d bytes) does not match the expected %s", e.Got, e.Size, e.Want)
}
