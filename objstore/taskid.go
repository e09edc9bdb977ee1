package objstore

import (
	"crypto/sha256"
	"encoding/hex"
)

// TaskID is the task ID of one version of an object: a sha256 of its
// Identity (and the tag, when there is one). Peers and the supernode derive
// it alike, so the supernode can check a peer's claim against what the
// store answers.
func TaskID(oi ObjectInfo, tag string) string {
	key := Identity(oi)
	if tag != "" {
		key += "\x00tag=" + tag
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}
