package trust

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"strings"
)

// A seal lets a supernode vouch, toward another supernode, for the piece
// digests of a task it handed to peers: after a failover a peer presents
// the last digest list it got, with its seal, to the task's new owner,
// which adopts the digests without fetching the pieces itself. The seal
// is an HMAC-SHA256 under a key that only supernodes hold (never one
// derived from the cluster token, which every peer has): a peer can
// replay a list a supernode sealed for that task and content version,
// but it cannot forge, extend or alter one.

// labelSeal is the HKDF info label of the seal key.
const labelSeal = "damselfly seal v1: piece digests"

// prefixSeal is the version prefix of a seal; it is covered by the MAC.
const prefixSeal = "dfs1"

// MaxSealedDigests bounds the digest list a seal covers (and a verifier
// reads): more pieces than any layout has.
const MaxSealedDigests = 1 << 20

// Errors of sealing and seal verification (wrapped; test with errors.Is).
var (
	ErrNoSealKey = errors.New("no seal key configured")
	ErrBadSeal   = errors.New("seal does not verify")
)

// SealKey signs and verifies digest seals. Its zero value is the absent
// key: it seals nothing and verifies nothing. Like Secret it never prints
// itself.
type SealKey struct {
	v *[]byte
}

// DeriveSealKey derives the seal key from a secret only supernodes hold
// (the admin token when it differs from the cluster token) with
// HKDF-SHA256, under its own label: it is independent of the credential
// keys derived from the same secret.
func DeriveSealKey(secret Secret) (SealKey, error) {
	if secret.IsZero() {
		return SealKey{}, fmt.Errorf("derive seal key: %w", ErrNoSecret)
	}
	k, err := hkdf.Key(sha256.New, secret.bytes(), nil, labelSeal, sha256.Size)
	if err != nil {
		return SealKey{}, fmt.Errorf("derive seal key: %w", err)
	}
	return SealKey{v: &k}, nil
}

// IsZero reports whether k is the absent key.
func (k SealKey) IsZero() bool { return k.v == nil }

// SealedContent is what a seal covers: one task's content version (its
// layout and the origin's validators) and its piece digests, "" for a
// piece whose digest the sealer did not know.
type SealedContent struct {
	TaskID       string
	Length       int64
	PieceSize    int64
	ETag         string
	LastModified string
	Digests      []string
}

// Seal returns the seal of c, or "" when k is the absent key or c is too
// large to seal.
func (k SealKey) Seal(c SealedContent) string {
	if k.v == nil || len(c.Digests) > MaxSealedDigests {
		return ""
	}
	return prefixSeal + "." + b64.EncodeToString(k.mac(c))
}

// Verify checks seal against c in constant time. It fails with
// ErrNoSealKey when k is the absent key (no seal is then accepted) and
// with ErrBadSeal for anything else that does not verify.
func (k SealKey) Verify(c SealedContent, seal string) error {
	if k.v == nil {
		return fmt.Errorf("verify seal: %w", ErrNoSealKey)
	}
	if len(c.Digests) > MaxSealedDigests || len(seal) > 128 {
		return fmt.Errorf("verify seal: %w", ErrBadSeal)
	}
	mac, ok := strings.CutPrefix(seal, prefixSeal+".")
	if !ok {
		return fmt.Errorf("verify seal: %w", ErrBadSeal)
	}
	got, err := b64.DecodeString(mac)
	if err != nil || !hmac.Equal(got, k.mac(c)) {
		return fmt.Errorf("verify seal: %w", ErrBadSeal)
	}
	return nil
}

// SealPiece returns the seal of piece i's digest alone in c's content
// version (c.Digests is ignored): the seed sends it with the piece, so
// that a child that got the digest with the piece, before the next
// sealed list, can present it too. "" when k is the absent key.
func (k SealKey) SealPiece(c SealedContent, i int, digest string) string {
	if k.v == nil {
		return ""
	}
	return prefixSeal + "." + b64.EncodeToString(k.macPiece(c, i, digest))
}

// VerifyPiece checks a seal from SealPiece, as Verify does.
func (k SealKey) VerifyPiece(c SealedContent, i int, digest, seal string) error {
	if k.v == nil {
		return fmt.Errorf("verify piece seal: %w", ErrNoSealKey)
	}
	mac, ok := strings.CutPrefix(seal, prefixSeal+".")
	if !ok || len(seal) > 128 {
		return fmt.Errorf("verify piece seal: %w", ErrBadSeal)
	}
	got, err := b64.DecodeString(mac)
	if err != nil || !hmac.Equal(got, k.macPiece(c, i, digest)) {
		return fmt.Errorf("verify piece seal: %w", ErrBadSeal)
	}
	return nil
}

// macPiece is mac's counterpart for one piece: its own domain label
// first, so that a list's seal never verifies as a piece's or back.
func (k SealKey) macPiece(c SealedContent, i int, digest string) []byte {
	e := k.encoder(prefixSeal+" piece", c)
	e.num(int64(i))
	e.str(digest)
	return e.Sum(nil)
}

// mac is the HMAC of c's unambiguous encoding: the prefix, then every
// field length-prefixed (strings) or fixed-size (integers), big-endian.
func (k SealKey) mac(c SealedContent) []byte {
	e := k.encoder(prefixSeal, c)
	e.num(int64(len(c.Digests)))
	for _, d := range c.Digests {
		e.str(d)
	}
	return e.Sum(nil)
}

// sealEncoder writes the unambiguous encoding mac and macPiece share into
// an HMAC.
type sealEncoder struct{ hash.Hash }

// encoder starts the HMAC of a seal: label, then c's identity and layout.
func (k SealKey) encoder(label string, c SealedContent) sealEncoder {
	e := sealEncoder{hmac.New(sha256.New, *k.v)}
	e.str(label)
	e.str(c.TaskID)
	e.num(c.Length)
	e.num(c.PieceSize)
	e.str(c.ETag)
	e.str(c.LastModified)
	return e
}

func (e sealEncoder) str(s string) {
	e.num(int64(len(s)))
	io.WriteString(e, s)
}

func (e sealEncoder) num(v int64) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(v))
	e.Write(n[:])
}

// String returns "REDACTED".
func (SealKey) String() string { return redacted }

// GoString returns "REDACTED".
func (SealKey) GoString() string { return redacted }

// Format prints "REDACTED" for every verb and flag.
func (SealKey) Format(f fmt.State, _ rune) { io.WriteString(f, redacted) }

// MarshalJSON encodes the key as the JSON string "REDACTED".
func (SealKey) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// LogValue makes log/slog print "REDACTED".
func (SealKey) LogValue() slog.Value { return slog.StringValue(redacted) }
