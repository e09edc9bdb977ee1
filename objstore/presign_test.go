package objstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
)

func presignFor(t *testing.T, endpoint string, pathStyle bool, oi ObjectInfo) Presigned {
	t.Helper()
	c, err := New(context.Background(), Options{Endpoint: endpoint, PathStyle: pathStyle, Region: "us-east-1",
		AccessKeyID: "AKIDPRESIGN", SecretAccessKey: "presign-secret-value"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.PresignGet(context.Background(), oi, 0)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPresignedNeverPrinted(t *testing.T) {
	p := presignFor(t, "http://127.0.0.1:8333", true, ObjectInfo{Bucket: "bkt", Key: "dir/obj.bin", ETag: "e"})
	if !strings.Contains(p.URL, "X-Amz-Signature=") {
		t.Fatalf("presigned URL has no signature: %s", RedactPresigned(p.URL))
	}
	if strings.Contains(p.URL, "presign-secret-value") {
		t.Fatal("presigned URL contains the secret key")
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		s := fmt.Sprintf(verb, p)
		if strings.Contains(s, "X-Amz-Signature") || strings.Contains(s, "AKIDPRESIGN") {
			t.Errorf("Sprintf(%s) leaks the signature or credential: %s", verb, s)
		}
		if !strings.Contains(s, "127.0.0.1:8333/bkt/dir/obj.bin") {
			t.Errorf("Sprintf(%s) = %s, want host and path shown", verb, s)
		}
	}
	if time.Until(p.Expires) > PresignExpiry || time.Until(p.Expires) < PresignExpiry-time.Minute {
		t.Errorf("expires in %v, want about %v", time.Until(p.Expires), PresignExpiry)
	}
}

func TestCheckPresigned(t *testing.T) {
	now := time.Now()
	local, err := ParseEndpoint("http://127.0.0.1:8333")
	if err != nil {
		t.Fatal(err)
	}
	aws, err := ParseEndpoint("s3.example.com")
	if err != nil {
		t.Fatal(err)
	}
	allowed := []Endpoint{local, aws}
	want := URL{Bucket: "bkt", Key: "dir/obj.bin"}
	path := presignFor(t, "http://127.0.0.1:8333", true, ObjectInfo{Bucket: "bkt", Key: "dir/obj.bin"}).URL
	virt := presignFor(t, "https://s3.example.com", false, ObjectInfo{Bucket: "bkt", Key: "dir/obj.bin"}).URL
	versioned := presignFor(t, "http://127.0.0.1:8333", true, ObjectInfo{Bucket: "bkt", Key: "dir/obj.bin", VersionID: "v7"}).URL
	otherBucket := presignFor(t, "http://127.0.0.1:8333", true, ObjectInfo{Bucket: "other", Key: "dir/obj.bin"}).URL
	otherKey := presignFor(t, "http://127.0.0.1:8333", true, ObjectInfo{Bucket: "bkt", Key: "dir/obj.bin2"}).URL
	otherHost := presignFor(t, "http://127.0.0.2:8333", true, ObjectInfo{Bucket: "bkt", Key: "dir/obj.bin"}).URL
	otherPort := presignFor(t, "http://127.0.0.1:8334", true, ObjectInfo{Bucket: "bkt", Key: "dir/obj.bin"}).URL
	httpsLocal := presignFor(t, "https://127.0.0.1:8333", true, ObjectInfo{Bucket: "bkt", Key: "dir/obj.bin"}).URL
	spaced := presignFor(t, "http://127.0.0.1:8333", true, ObjectInfo{Bucket: "bkt", Key: "a b/c+d?e#f"}).URL
	mod := func(raw string, f func(u *url.URL)) string {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		f(u)
		return u.String()
	}
	setQ := func(k, v string) func(u *url.URL) {
		return func(u *url.URL) { q := u.Query(); q.Set(k, v); u.RawQuery = q.Encode() }
	}
	tests := []struct {
		name string
		raw  string
		want URL
		err  string // "" means accepted
	}{
		{"path-style", path, want, ""},
		{"virtual-hosted", virt, want, ""},
		{"version pinned", versioned, want, ""},
		{"key needing escapes", spaced, URL{Bucket: "bkt", Key: "a b/c+d?e#f"}, ""},
		{"other bucket", otherBucket, want, "another object"},
		{"other key", otherKey, want, "another object"},
		{"key prefix of the wanted", path, URL{Bucket: "bkt", Key: "dir/obj.bin.x"}, "another object"},
		{"other host", otherHost, want, "not an allowed s3 endpoint"},
		{"other port", otherPort, want, "not an allowed s3 endpoint"},
		{"other scheme", httpsLocal, want, "not an allowed s3 endpoint"},
		{"subdomain of an allowed host for another bucket", mod(virt, func(u *url.URL) { u.Host = "evil.s3.example.com" }), want, "not an allowed s3 endpoint"},
		{"allowed host as a suffix", mod(virt, func(u *url.URL) { u.Host = "bkt.s3.example.com.evil.net" }), want, "not an allowed s3 endpoint"},
		{"user info", mod(path, func(u *url.URL) { u.User = url.User("127.0.0.1:8333") }), want, "user info"},
		{"user info hiding the real host", strings.Replace(path, "http://127.0.0.1:8333", "http://127.0.0.1:8333@evil.net", 1), want, "user info"},
		{"path traversal to another bucket", mod(path, func(u *url.URL) { u.Path = "/other/../bkt/dir/obj.bin" }), want, "another object"},
		{"dot segments in the key", mod(path, func(u *url.URL) { u.Path = "/bkt/dir/../obj.bin" }), URL{Bucket: "bkt", Key: "dir/../obj.bin"}, "dot segments"},
		{"encoded traversal", strings.Replace(path, "/bkt/dir/obj.bin", "/bkt/%2e%2e/dir/obj.bin", 1), want, "another object"},
		{"encoded slash", strings.Replace(path, "/bkt/dir/obj.bin", "/bkt/dir%2Fobj.bin", 1), want, ""},
		{"fragment", path + "#x", want, "malformed"},
		{"backslash", strings.Replace(path, "/bkt/", "/bkt\\", 1), want, "malformed"},
		{"part number", mod(path, setQ("partNumber", "1")), want, `"partNumber" not allowed`},
		{"response override", mod(path, setQ("response-content-type", "x")), want, "not allowed"},
		{"repeated version", path + "&versionId=a&versionId=b", want, "repeated"},
		{"semicolon query", path + ";versionId=a", want, "malformed query"},
		{"unsigned", mod(path, func(u *url.URL) { q := u.Query(); q.Del("X-Amz-Signature"); u.RawQuery = q.Encode() }), want, "not a SigV4"},
		{"no query", strings.SplitN(path, "?", 2)[0], want, "not a SigV4"},
		{"put object", mod(path, setQ("x-id", "PutObject")), want, "not a GetObject"},
		{"extra signed header", mod(path, setQ("X-Amz-SignedHeaders", "host;range")), want, "headers other than host"},
		{"expired", mod(path, setQ("X-Amz-Date", now.Add(-time.Hour).UTC().Format("20060102T150405Z"))), want, "expired"},
		{"too long", mod(path, setQ("X-Amz-Expires", "999999999")), want, "X-Amz-Expires"},
		{"ftp", strings.Replace(path, "http://", "ftp://", 1), want, "not an http"},
		{"prefix wanted", path, URL{Bucket: "bkt", Key: "dir/"}, "not one object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CheckPresigned(tt.raw, tt.want, allowed, now)
			if tt.err == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if got.Expires.Before(now) || got.AccessKeyID != "AKIDPRESIGN" {
					t.Errorf("checked = %+v", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, ErrPresignRefused) {
				t.Fatalf("error %v, want ErrPresignRefused containing %q", err, tt.err)
			}
			if strings.Contains(err.Error(), "X-Amz-Signature") || strings.Contains(err.Error(), "AKIDPRESIGN") {
				t.Errorf("error leaks the URL's query: %v", err)
			}
		})
	}
	if got, err := CheckPresigned(versioned, want, allowed, now); err != nil || got.VersionID != "v7" {
		t.Errorf("versioned: %+v, %v; want version v7", got, err)
	}
	if _, err := CheckPresigned(path, want, nil, now); err == nil {
		t.Error("accepted with no endpoint allowed")
	}
}

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "http://127.0.0.1:8333", want: "http://127.0.0.1:8333"},
		{in: "https://S3.Example.com", want: "https://s3.example.com:443"},
		{in: "s3.example.com:9000", want: "https://s3.example.com:9000"},
		{in: "http://[::1]:80", want: "http://[::1]:80"},
		{in: "ftp://x", err: "scheme"},
		{in: "http://u:p@x", err: "nothing else"},
		{in: "http://x/path", err: "nothing else"},
		{in: "http://x:99999", err: "port"},
	}
	for _, tt := range tests {
		e, err := ParseEndpoint(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseEndpoint(%q) = %v, %v; want error %q", tt.in, e, err, tt.err)
			}
			continue
		}
		if err != nil || e.String() != tt.want {
			t.Errorf("ParseEndpoint(%q) = %v, %v; want %s", tt.in, e, err, tt.want)
		}
	}
}

func TestTaskIDMatchesIdentity(t *testing.T) {
	a := ObjectInfo{Bucket: "b1", Key: "k", ETag: `"abc"`, Size: 1}
	b := ObjectInfo{Bucket: "b1", Key: "k", ETag: "abc", Size: 2}
	if TaskID(a, "") != TaskID(b, "") {
		t.Error("quoted and bare ETags give different task IDs")
	}
	if TaskID(a, "") == TaskID(a, "t") || TaskID(a, "") == TaskID(ObjectInfo{Bucket: "b1", Key: "k", ETag: "abd"}, "") {
		t.Error("task ID ignores the tag or the ETag")
	}
}
