package manifest

import (
	"strings"
	"testing"
)

func TestTaskID(t *testing.T) {
	id := func(u, tag string, f ...string) string {
		t.Helper()
		s, err := TaskID(u, tag, f)
		if err != nil {
			t.Fatalf("TaskID(%q): %v", u, err)
		}
		return s
	}
	base := id("http://o/a.bin?x=1&y=2", "")
	tests := []struct {
		name string
		got  string
		same bool
	}{
		{"query order does not matter", id("http://o/a.bin?y=2&x=1", ""), true},
		{"filtered param ignored", id("http://o/a.bin?x=1&y=2&sig=abc", "", "sig"), true},
		{"unfiltered param counts", id("http://o/a.bin?x=1&y=2&sig=abc", ""), false},
		{"tag separates", id("http://o/a.bin?x=1&y=2", "v2"), false},
		{"fragment ignored", id("http://o/a.bin?x=1&y=2#frag", ""), true},
	}
	for _, tt := range tests {
		if (tt.got == base) != tt.same {
			t.Errorf("%s: same=%v, want %v", tt.name, tt.got == base, tt.same)
		}
	}
	d := "sha256:" + strings.Repeat("ab", 32)
	a := id("http://reg1/v2/library/busybox/blobs/"+d, "")
	b := id("https://mirror:5000/v2/other/name/blobs/"+d+"?ns=docker.io", "")
	if a != b {
		t.Errorf("blob task IDs differ across registries: %s vs %s", a, b)
	}
}

func TestTaskIDRejectsBadURLs(t *testing.T) {
	for _, u := range []string{"", "ftp://x/y", "http://", "not a url", "/relative/path", "http://[::1"} {
		if _, err := TaskID(u, "", nil); err == nil {
			t.Errorf("TaskID(%q) succeeded, want error", u)
		}
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://user:pw@h/p?token=secret&a=b", "https://h/p?a=REDACTED&token=REDACTED"},
		{"https://h/p#access_token=secret", "https://h/p"},
		{"https://h/p?x=1#frag", "https://h/p?x=REDACTED"},
		{"http://h/plain", "http://h/plain"},
		{"http://user:pw@h:%zz/p", "<invalid URL>"},
	}
	for _, tc := range tests {
		if got := RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// Errors about a URL never echo its password, query or fragment.
func TestParseURLErrorsAreRedacted(t *testing.T) {
	for _, raw := range []string{
		"ftp://user:s3cr3t@h/p?sig=s3cr3t#s3cr3t",
		"http://user:s3cr3t@h:%zz/p",
		"http://user:s3cr3t@/p?sig=s3cr3t",
		"http://user:s3cr3t@h/p\x7f?sig=s3cr3t\x00",
	} {
		_, err := ParseURL(raw)
		if err == nil {
			continue
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("ParseURL(%q) error echoes a secret: %v", raw, err)
		}
	}
}
