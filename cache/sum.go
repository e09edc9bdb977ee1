package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// sumPrefix is the algorithm prefix of the textual form of a Sum.
const sumPrefix = "sha256:"

// Sum is the sha256 digest of a piece.
type Sum [32]byte

// SumOf returns the digest of data.
func SumOf(data []byte) Sum { return Sum(sha256.Sum256(data)) }

// ParseSum parses the textual form "sha256:<64 hex digits>" of a Sum.
func ParseSum(s string) (Sum, error) {
	var sum Sum
	hexPart, ok := strings.CutPrefix(s, sumPrefix)
	if !ok {
		return sum, fmt.Errorf("parse piece digest %q: want prefix %q", s, sumPrefix)
	}
	if len(hexPart) != 2*len(sum) {
		return sum, fmt.Errorf("parse piece digest %q: want %d hex digits, got %d", s, 2*len(sum), len(hexPart))
	}
	if _, err := hex.Decode(sum[:], []byte(hexPart)); err != nil {
		return Sum{}, fmt.Errorf("parse piece digest %q: %w", s, err)
	}
	return sum, nil
}

// String returns "sha256:<hex>".
func (s Sum) String() string { return sumPrefix + hex.EncodeToString(s[:]) }

// IsZero reports whether s is all zeros (the record of an absent piece).
func (s Sum) IsZero() bool { return s == Sum{} }

// MarshalText encodes s as its String form, so that it appears as
// "sha256:<hex>" in JSON.
func (s Sum) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText decodes the form written by MarshalText.
func (s *Sum) UnmarshalText(text []byte) error {
	v, err := ParseSum(string(text))
	if err != nil {
		return err
	}
	*s = v
	return nil
}
