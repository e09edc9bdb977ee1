package manifest

import (
	"net/url"
	"regexp"
	"strings"
	"testing"
)

var taskIDPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// FuzzTaskID: URL parsing, task IDs and redaction never panic; an accepted
// URL has a stable 64-hex task ID, and its redacted form carries no user
// info, query value or fragment.
func FuzzTaskID(f *testing.F) {
	for _, s := range [][2]string{
		{"http://origin/f", ""},
		{"https://user:pw@h:8080/a/b?sig=x&expires=1#frag", "tag"},
		{"http://registry/v2/library/busybox/blobs/sha256:" + strings.Repeat("a", 64), ""},
		{"http://h/%zz", ""},
		{"ftp://h/f", ""},
		{"http://[::1]:1/f?a=1&a=2&b", "t"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, raw, tag string) {
		red := RedactURL(raw)
		u, err := ParseURL(raw)
		if err != nil {
			return
		}
		id, err := TaskID(raw, tag, []string{"sig", "expires"})
		if err != nil {
			return
		}
		if !taskIDPattern.MatchString(id) {
			t.Fatalf("TaskID(%q) = %q", raw, id)
		}
		if id2, _ := TaskID(raw, tag, []string{"sig", "expires"}); id2 != id {
			t.Fatalf("TaskID(%q) not stable: %s, %s", raw, id, id2)
		}
		r, err := url.Parse(red)
		if err != nil {
			t.Fatalf("RedactURL(%q) = %q does not parse: %v", raw, red, err)
		}
		if r.User != nil || r.Fragment != "" {
			t.Fatalf("RedactURL(%q) = %q keeps user info or a fragment", raw, red)
		}
		for k, vs := range r.Query() {
			for _, v := range vs {
				if v != "REDACTED" {
					t.Fatalf("RedactURL(%q) = %q keeps query value %s=%q", raw, red, k, v)
				}
			}
		}
		if p, ok := u.User.Password(); ok && len(p) >= 6 && strings.Contains(red, p) && !strings.Contains(u.Host+u.Path, p) {
			t.Fatalf("RedactURL(%q) = %q shows the password", raw, red)
		}
	})
}

// FuzzParseDigest: digests are parsed without panics, and an accepted one
// names a valid task.
func FuzzParseDigest(f *testing.F) {
	for _, s := range []string{"sha256:" + strings.Repeat("0", 64), "sha256:abc", "sha512:" + strings.Repeat("f", 128), "", ":"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDigest(s)
		if err != nil {
			return
		}
		if id := DigestTaskID(d); !taskIDPattern.MatchString(id) {
			t.Fatalf("DigestTaskID(%q) = %q", s, id)
		}
	})
}
