package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
)

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(h[:])
}

func TestParseDigest(t *testing.T) {
	tests := []struct {
		in, want string
		err      string
	}{
		{in: sha("x"), want: sha("x")},
		{in: strings.ToUpper(sha("x")), want: sha("x")},
		{in: "sha256:abc", err: "invalid digest"},
		{in: "md5:" + strings.Repeat("0", 32), err: "invalid digest"},
		{in: "sha512:" + strings.Repeat("0", 128), err: "invalid digest"},
		{in: "", err: "invalid digest"},
	}
	for _, tt := range tests {
		d, err := ParseDigest(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseDigest(%q) = %v, %v; want an error with %q", tt.in, d, err, tt.err)
			}
			continue
		}
		if err != nil || d.String() != tt.want {
			t.Errorf("ParseDigest(%q) = %v, %v; want %s", tt.in, d, err, tt.want)
		}
	}
}

func TestDigestVerifier(t *testing.T) {
	tests := []struct {
		name    string
		want    string
		content []string // written in these chunks
		match   bool
	}{
		{"one write", sha("hello world"), []string{"hello world"}, true},
		{"chunks", sha("hello world"), []string{"hel", "", "lo wor", "ld"}, true},
		{"empty", sha(""), nil, true},
		{"upper-case digest", strings.ToUpper(sha("abc")), []string{"abc"}, true},
		{"different content", sha("hello world"), []string{"hello world!"}, false},
		{"short content", sha("hello world"), []string{"hello"}, false},
		{"nothing written", sha("a"), nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewDigestVerifier(tt.want)
			if err != nil {
				t.Fatal(err)
			}
			var all string
			for _, c := range tt.content {
				n, err := v.Write([]byte(c))
				if n != len(c) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
				all += c
			}
			if v.Written() != int64(len(all)) {
				t.Errorf("Written = %d, want %d", v.Written(), len(all))
			}
			err = v.Verify()
			if tt.match {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			var me *DigestMismatchError
			if !errors.As(err, &me) {
				t.Fatalf("Verify = %v, want a *DigestMismatchError", err)
			}
			if me.Got.String() != sha(all) || me.Want.String() != strings.ToLower(tt.want) || me.Size != int64(len(all)) {
				t.Errorf("mismatch = %+v, want got %s want %s size %d", me, sha(all), tt.want, len(all))
			}
			for _, s := range []string{sha(all), strings.ToLower(tt.want), "does not match"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}

func TestDigestVerifierInvalid(t *testing.T) {
	for _, d := range []string{"", "sha256:zz", "sha512:" + strings.Repeat("0", 128)} {
		if _, err := NewDigestVerifier(d); err == nil {
			t.Errorf("NewDigestVerifier(%q) accepted", d)
		}
	}
}

// The verifier is a plain io.Writer: io.Copy into it checks a stream.
func TestDigestVerifierCopy(t *testing.T) {
	v, err := NewDigestVerifier(sha(strings.Repeat("z", 1<<20)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(v, strings.NewReader(strings.Repeat("z", 1<<20))); err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(); err != nil {
		t.Fatal(err)
	}
}
