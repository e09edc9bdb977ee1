package objstore

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		in       string
		want     URL
		isPrefix bool
		err      string // substring of the error; "" means success
	}{
		{in: "s3://bucket/key.bin", want: URL{"bucket", "key.bin"}},
		{in: "S3://Bucket_1/a/b/c.txt", want: URL{"Bucket_1", "a/b/c.txt"}},
		{in: "s3://bucket", want: URL{"bucket", ""}, isPrefix: true},
		{in: "s3://bucket/", want: URL{"bucket", ""}, isPrefix: true},
		{in: "s3://bucket/data/train/", want: URL{"bucket", "data/train/"}, isPrefix: true},
		{in: "s3://my.bucket-2/with space?and#hash%20", want: URL{"my.bucket-2", "with space?and#hash%20"}},
		{in: "s3://bucket//double", want: URL{"bucket", "/double"}},
		{in: "http://bucket/key", err: "not an s3:// URL"},
		{in: "s3:/bucket/key", err: "not an s3:// URL"},
		{in: "s3://", err: "no bucket name"},
		{in: "s3:///key", err: "no bucket name"},
		{in: "s3://ab/key", err: "3 to 255"},
		{in: "s3://-bucket/key", err: "start and end"},
		{in: "s3://bucket./key", err: "start and end"},
		{in: "s3://buc:ket/key", err: "not allowed"},
		{in: "s3://user:pw@bucket/key", err: "not allowed"},
		{in: "s3://bucket/" + strings.Repeat("k", 1025), err: "longer than 1024"},
		{in: "s3://bucket/\xff", err: "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.in[:min(len(tt.in), 40)], func(t *testing.T) {
			got, err := ParseURL(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseURL(%q) = %+v, %v; want error containing %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseURL(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseURL(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if got.IsPrefix() != tt.isPrefix {
				t.Errorf("IsPrefix() = %t, want %t", got.IsPrefix(), tt.isPrefix)
			}
			again, err := ParseURL(got.String())
			if err != nil || again != got {
				t.Errorf("ParseURL(String()) = %+v, %v; want %+v", again, err, got)
			}
		})
	}
	if _, err := ParseURL("https://x/y"); !errors.Is(err, ErrNotS3URL) {
		t.Errorf("ParseURL(https) error %v is not ErrNotS3URL", err)
	}
}

func TestIdentity(t *testing.T) {
	base := ObjectInfo{Bucket: "b1", Key: "dir/file", Size: 10, ETag: "abc"}
	with := func(f func(*ObjectInfo)) ObjectInfo { o := base; f(&o); return o }
	tests := []struct {
		name string
		a, b ObjectInfo
		same bool
	}{
		{"quoted and bare ETag agree", with(func(o *ObjectInfo) { o.ETag = `"abc"` }), base, true},
		{"size and time do not count", with(func(o *ObjectInfo) { o.Size = 99 }), base, true},
		{"null version is no version", with(func(o *ObjectInfo) { o.VersionID = "null" }), base, true},
		{"another ETag", with(func(o *ObjectInfo) { o.ETag = "abd" }), base, false},
		{"version does not count beside an ETag", with(func(o *ObjectInfo) { o.VersionID = "v2" }), base, true},
		{"version without ETag", ObjectInfo{Bucket: "b1", Key: "k", VersionID: "v2"}, ObjectInfo{Bucket: "b1", Key: "k", VersionID: "v1"}, false},
		{"version is not an ETag", ObjectInfo{Bucket: "b1", Key: "k", VersionID: "x"}, ObjectInfo{Bucket: "b1", Key: "k", ETag: "x"}, false},
		{"another key", with(func(o *ObjectInfo) { o.Key = "dir/file2" }), base, false},
		{"another bucket", with(func(o *ObjectInfo) { o.Bucket = "b2" }), base, false},
		{"parts cannot slide", ObjectInfo{Bucket: "b1", Key: `x" etag="y`, ETag: "z"}, ObjectInfo{Bucket: "b1", Key: "x", ETag: `y" etag="z`}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ia, ib := Identity(tt.a), Identity(tt.b)
			if (ia == ib) != tt.same {
				t.Fatalf("Identity(%+v) = %q\nIdentity(%+v) = %q\nsame = %t, want %t", tt.a, ia, tt.b, ib, ia == ib, tt.same)
			}
		})
	}
	if got, want := Identity(with(func(o *ObjectInfo) { o.VersionID = "v7" })), `s3 bucket="b1" key="dir/file" etag="abc"`; got != want {
		t.Errorf("Identity = %q, want %q", got, want)
	}
}

func TestOptionsNeverPrintSecrets(t *testing.T) {
	o := Options{Endpoint: "http://e", AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "sekrit-value", SessionToken: "tok-value"}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		s := fmt.Sprintf(verb, o)
		if strings.Contains(s, "sekrit-value") || strings.Contains(s, "tok-value") {
			t.Errorf("Sprintf(%s) leaks a secret: %s", verb, s)
		}
		if !strings.Contains(s, "AKIDEXAMPLE") || !strings.Contains(s, "http://e") {
			t.Errorf("Sprintf(%s) = %s, want the access key ID and endpoint shown", verb, s)
		}
	}
}

func TestEntryName(t *testing.T) {
	tests := []struct {
		prefix, key string
		dir         bool
		name, why   string
	}{
		{"a/", "a/b", false, "b", ""},
		{"", "top", false, "top", ""},
		{"a/", "a/b/", true, "b", ""},
		{"a/", "a/", false, "", reasonMarker},
		{"a/", "a//", true, "", "an empty path element"},
		{"a/", "a/./", true, "", `a "." path element`},
		{"a/", "a/.", false, "", `a "." path element`},
		{"a/", "a/..", false, "", `a ".." path element`},
		{"a/", "a/../", true, "", `a ".." path element`},
		{"a/", "a/b/c", false, "", `a "/" inside the name`},
		{"a/", "b/c", false, "", "not under the listed prefix"},
		{"a/", "a/x\x00y", false, "", "a NUL byte in the name"},
	}
	for _, tt := range tests {
		name, why := entryName(tt.prefix, tt.key, tt.dir)
		if name != tt.name || why != tt.why {
			t.Errorf("entryName(%q, %q, %t) = %q, %q; want %q, %q", tt.prefix, tt.key, tt.dir, name, why, tt.name, tt.why)
		}
	}
}

// TestErrorsFromStore checks how answers of a store map to errors, with a
// canned HTTP server standing in for the store's error replies.
func TestErrorsFromStore(t *testing.T) {
	const secret = "the-secret-key"
	tests := []struct {
		name    string
		status  int
		code    string // XML error code; "" sends no body
		sentry  error
		message string
	}{
		{"wrong secret", 403, "SignatureDoesNotMatch", ErrAccessDenied, "s3: access denied for bucket bkt: check the credentials"},
		{"unknown key", 403, "InvalidAccessKeyId", ErrAccessDenied, "s3: access denied for bucket bkt: check the credentials"},
		{"bodiless 403", 403, "", ErrAccessDenied, "s3: access denied for bucket bkt: check the credentials"},
		{"missing key", 404, "NoSuchKey", ErrNotFound, "not found"},
		{"bodiless 404", 404, "", ErrNotFound, "not found"},
		{"changed", 412, "PreconditionFailed", ErrObjectChanged, "changed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.code != "" {
					w.Header().Set("Content-Type", "application/xml")
					w.WriteHeader(tt.status)
					fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>m</Message></Error>`, tt.code)
					return
				}
				w.WriteHeader(tt.status)
			}))
			t.Cleanup(srv.Close)
			// A CA bundle in the environment must not stop a caller's own
			// HTTP client from being used.
			bundle := filepath.Join(t.TempDir(), "ca.pem")
			pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
			if err := os.WriteFile(bundle, pemCert, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Setenv("AWS_CA_BUNDLE", bundle)
			c, err := New(context.Background(), Options{Endpoint: srv.URL, PathStyle: true, Region: "us-east-1",
				AccessKeyID: "AKID", SecretAccessKey: secret, HTTPClient: srv.Client()})
			if err != nil {
				t.Fatal(err)
			}
			obj := ObjectInfo{Bucket: "bkt", Key: "dir/obj", Size: 100, ETag: "e"}
			_, err = c.GetRange(context.Background(), obj, 0, 10)
			if !errors.Is(err, tt.sentry) {
				t.Fatalf("GetRange error %v; want one wrapping %v", err, tt.sentry)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.message) || !strings.Contains(msg, "s3://bkt/dir/obj") {
				t.Errorf("error %q does not say %q and name s3://bkt/dir/obj", msg, tt.message)
			}
			if strings.Contains(msg, secret) {
				t.Errorf("error %q leaks the secret", msg)
			}
		})
	}
}

func TestNoCredentials(t *testing.T) {
	for _, env := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"} {
		t.Setenv(env, "")
	}
	dir := t.TempDir()
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", dir+"/credentials")
	t.Setenv("AWS_CONFIG_FILE", dir+"/config")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	requests := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { requests++ }))
	t.Cleanup(srv.Close)
	c, err := New(context.Background(), Options{Endpoint: srv.URL, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Head(context.Background(), "bkt", "k")
	if !errors.Is(err, ErrNoCredentials) || !strings.Contains(err.Error(), "no credentials for bucket bkt") {
		t.Fatalf("Head error %v; want ErrNoCredentials naming the bucket", err)
	}
	if requests != 0 {
		t.Errorf("the store got %d unsigned requests", requests)
	}
}
