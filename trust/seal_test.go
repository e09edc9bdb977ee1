package trust

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

func TestSeal(t *testing.T) {
	k, err := DeriveSealKey(mustSecret(t, "admin-token-0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := DeriveSealKey(mustSecret(t, "another-admin-token-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	c := SealedContent{TaskID: "task-a", Length: 3 << 20, PieceSize: 1 << 20, ETag: `"v1"`,
		LastModified: "Mon, 01 Jan 2024 00:00:00 GMT", Digests: []string{"sha256:aa", "", "sha256:cc"}}
	seal := k.Seal(c)
	if seal == "" {
		t.Fatal("no seal with a key")
	}
	if err := k.Verify(c, seal); err != nil {
		t.Fatalf("genuine seal refused: %v", err)
	}
	with := func(f func(*SealedContent)) SealedContent {
		d := c
		d.Digests = slices.Clone(c.Digests)
		f(&d)
		return d
	}
	for _, tc := range []struct {
		name string
		key  SealKey
		c    SealedContent
		seal string
		want error
	}{
		{"wrong task", k, with(func(d *SealedContent) { d.TaskID = "task-b" }), seal, ErrBadSeal},
		{"other length", k, with(func(d *SealedContent) { d.Length++ }), seal, ErrBadSeal},
		{"other piece size", k, with(func(d *SealedContent) { d.PieceSize = 2 << 20 }), seal, ErrBadSeal},
		{"other etag", k, with(func(d *SealedContent) { d.ETag = `"v2"` }), seal, ErrBadSeal},
		{"other last-modified", k, with(func(d *SealedContent) { d.LastModified = "" }), seal, ErrBadSeal},
		{"modified digest", k, with(func(d *SealedContent) { d.Digests[0] = "sha256:ab" }), seal, ErrBadSeal},
		{"digest added", k, with(func(d *SealedContent) { d.Digests[1] = "sha256:bb" }), seal, ErrBadSeal},
		{"digest removed", k, with(func(d *SealedContent) { d.Digests[2] = "" }), seal, ErrBadSeal},
		{"list extended", k, with(func(d *SealedContent) { d.Digests = append(d.Digests, "sha256:dd") }), seal, ErrBadSeal},
		{"list shortened", k, with(func(d *SealedContent) { d.Digests = d.Digests[:2] }), seal, ErrBadSeal},
		{"fields shifted", k, with(func(d *SealedContent) { d.Digests[0], d.Digests[1] = "", "sha256:aa" }), seal, ErrBadSeal},
		{"other key", other, c, seal, ErrBadSeal},
		{"forged", k, c, prefixSeal + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", ErrBadSeal},
		{"flipped", k, c, flip(seal, len(seal)-3), ErrBadSeal},
		{"no prefix", k, c, seal[len(prefixSeal)+1:], ErrBadSeal},
		{"empty", k, c, "", ErrBadSeal},
		{"too long", k, c, seal + fmt.Sprintf("%0200d", 0), ErrBadSeal},
		{"no key", SealKey{}, c, seal, ErrNoSealKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.key.Verify(tc.c, tc.seal); !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
	if s := (SealKey{}).Seal(c); s != "" {
		t.Errorf("the absent key sealed: %q", s)
	}
	if _, err := DeriveSealKey(Secret{}); !errors.Is(err, ErrNoSecret) {
		t.Errorf("DeriveSealKey(absent) = %v, want ErrNoSecret", err)
	}
	if got := fmt.Sprintf("%v %+v %#v %s", k, k, k, k); got != "REDACTED REDACTED REDACTED REDACTED" {
		t.Errorf("seal key printed as %q", got)
	}
}

func TestSealPiece(t *testing.T) {
	k, err := DeriveSealKey(mustSecret(t, "admin-token-0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	c := SealedContent{TaskID: "task-a", Length: 3 << 20, PieceSize: 1 << 20, ETag: `"v1"`}
	seal := k.SealPiece(c, 2, "sha256:cc")
	if err := k.VerifyPiece(c, 2, "sha256:cc", seal); err != nil {
		t.Fatalf("genuine piece seal refused: %v", err)
	}
	other := c
	other.TaskID = "task-b"
	list := c
	list.Digests = []string{"", "", "sha256:cc"}
	for _, tc := range []struct {
		name   string
		key    SealKey
		c      SealedContent
		i      int
		digest string
		seal   string
		want   error
	}{
		{"other piece", k, c, 1, "sha256:cc", seal, ErrBadSeal},
		{"other digest", k, c, 2, "sha256:cd", seal, ErrBadSeal},
		{"other task", k, other, 2, "sha256:cc", seal, ErrBadSeal},
		{"a list's seal", k, c, 2, "sha256:cc", k.Seal(list), ErrBadSeal},
		{"forged", k, c, 2, "sha256:cc", "dfs1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", ErrBadSeal},
		{"no key", SealKey{}, c, 2, "sha256:cc", seal, ErrNoSealKey},
	} {
		if err := tc.key.VerifyPiece(tc.c, tc.i, tc.digest, tc.seal); !errors.Is(err, tc.want) {
			t.Errorf("%s: VerifyPiece = %v, want %v", tc.name, err, tc.want)
		}
	}
	// Nor does a piece's seal verify as a list's.
	if err := k.Verify(list, seal); !errors.Is(err, ErrBadSeal) {
		t.Errorf("a piece's seal verified as a list's: %v", err)
	}
}
