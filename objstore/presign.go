package objstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// PresignExpiry is how long a presigned GET URL handed to a supernode
// stays valid: long enough for the seed to fetch a large object, short
// enough that a leaked one is soon worthless.
const PresignExpiry = 15 * time.Minute

// maxPresignExpiry is the longest validity SigV4 allows (7 days).
const maxPresignExpiry = 7 * 24 * time.Hour

// Presigned is a presigned GET URL for one object version: a short-lived
// capability to read that object, signed with the presigner's credentials.
// It is a secret: String (and %v, %+v, %#v) redact it; only URL holds it.
type Presigned struct {
	URL     string
	Expires time.Time
}

// String is the URL with its query (signature, credential scope, token)
// redacted.
func (p Presigned) String() string { return RedactPresigned(p.URL) }

// GoString redacts for %#v too.
func (p Presigned) GoString() string { return "objstore.Presigned{" + p.String() + "}" }

// PresignGet signs a GET URL for the object version oi names (pinned by
// version ID when there is one), valid for expiry (PresignExpiry when <=
// 0). No request is sent; the credentials never leave this process, only
// the signature over this one request does.
func (c *Client) PresignGet(ctx context.Context, oi ObjectInfo, expiry time.Duration) (Presigned, error) {
	if expiry <= 0 {
		expiry = PresignExpiry
	}
	if expiry > maxPresignExpiry {
		expiry = maxPresignExpiry
	}
	in := &s3.GetObjectInput{Bucket: aws.String(oi.Bucket), Key: aws.String(oi.Key)}
	if v := normalizeVersion(oi.VersionID); v != "" {
		in.VersionId = aws.String(v)
	}
	start := time.Now()
	req, err := s3.NewPresignClient(c.s3).PresignGetObject(ctx, in, s3.WithPresignExpires(expiry))
	if err != nil {
		return Presigned{}, wrapErr("presign", oi.Bucket, oi.Key, err)
	}
	return Presigned{URL: req.URL, Expires: start.Add(expiry)}, nil
}

// RedactPresigned is a presigned URL without its query, for logs and
// errors: scheme://host/path?REDACTED. An unparsable URL is "<invalid URL>".
func RedactPresigned(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<invalid URL>"
	}
	u.User = nil
	u.Fragment, u.RawFragment = "", ""
	if u.RawQuery != "" || u.ForceQuery {
		u.RawQuery, u.ForceQuery = "REDACTED", false
	}
	return u.String()
}

// Endpoint is a store endpoint an operator allows presigned URLs for:
// path-style URLs at Host:Port, and virtual-hosted ones at
// BUCKET.Host:Port.
type Endpoint struct {
	Scheme string // "http" or "https"
	Host   string // lower case, no port
	Port   string // always set (the scheme's default when not given)
}

func (e Endpoint) String() string { return e.Scheme + "://" + net.JoinHostPort(e.Host, e.Port) }

// ParseEndpoint parses http://HOST[:PORT], https://HOST[:PORT] or
// HOST[:PORT] (https). Paths, queries and user info are refused.
func ParseEndpoint(s string) (Endpoint, error) {
	raw := s
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return Endpoint{}, fmt.Errorf("s3 endpoint %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return Endpoint{}, fmt.Errorf("s3 endpoint %q: scheme must be http or https", raw)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Hostname() == "" {
		return Endpoint{}, fmt.Errorf("s3 endpoint %q: want SCHEME://HOST[:PORT] and nothing else", raw)
	}
	e := Endpoint{Scheme: u.Scheme, Host: strings.ToLower(u.Hostname()), Port: u.Port()}
	if e.Port == "" {
		e.Port = defaultPort(u.Scheme)
	}
	if n, err := strconv.Atoi(e.Port); err != nil || n <= 0 || n > 65535 {
		return Endpoint{}, fmt.Errorf("s3 endpoint %q: bad port", raw)
	}
	return e, nil
}

func defaultPort(scheme string) string {
	if scheme == "http" {
		return "80"
	}
	return "443"
}

// ErrPresignRefused is wrapped by CheckPresigned's errors.
var ErrPresignRefused = errors.New("presigned URL refused")

// presignParams are the only query parameters a presigned GET URL may
// carry: anything else (partNumber, response-* overrides, a second
// versionId) could make the store answer other bytes than the object's.
var presignParams = map[string]bool{
	"X-Amz-Algorithm": true, "X-Amz-Credential": true, "X-Amz-Date": true, "X-Amz-Expires": true,
	"X-Amz-SignedHeaders": true, "X-Amz-Signature": true, "X-Amz-Security-Token": true,
	"x-id": true, "versionId": true,
}

// CheckedPresign is what CheckPresigned learnt from a presigned URL.
type CheckedPresign struct {
	// VersionID is the version the URL is pinned to ("" for none).
	VersionID string
	// Expires is when the signature stops being valid.
	Expires time.Time
	// AccessKeyID is the signer's access key ID (not a secret: it names
	// whose credentials signed, for logs).
	AccessKeyID string
}

// CheckPresigned checks that raw is a SigV4 presigned GET URL for exactly
// the object want names, at one of the allowed endpoints (path-style, or
// virtual-hosted under the endpoint's host), not expired at now. Errors
// wrap ErrPresignRefused and never contain the URL's query.
func CheckPresigned(raw string, want URL, allowed []Endpoint, now time.Time) (CheckedPresign, error) {
	var out CheckedPresign
	refuse := func(format string, args ...any) (CheckedPresign, error) {
		return CheckedPresign{}, fmt.Errorf("%w for %s: %s", ErrPresignRefused, want, fmt.Sprintf(format, args...))
	}
	if want.Bucket == "" || want.IsPrefix() {
		return refuse("not one object")
	}
	if len(allowed) == 0 {
		return refuse("no s3 endpoint is allowed")
	}
	if strings.ContainsAny(raw, "#\\ \t\r\n") {
		return refuse("malformed URL")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return refuse("malformed URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Opaque != "" || u.User != nil || u.Host == "" {
		return refuse("not an http(s) URL without user info")
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if port == "" {
		port = defaultPort(u.Scheme)
	}
	var path string
	matched := false
	for _, e := range allowed {
		if e.Scheme != u.Scheme || e.Port != port {
			continue
		}
		switch host {
		case e.Host:
			path, matched = "/"+want.Bucket+"/"+want.Key, true
		case want.Bucket + "." + e.Host: // virtual-hosted: lower-case buckets only
			path, matched = "/"+want.Key, true
		}
		if matched {
			break
		}
	}
	if !matched {
		return refuse("host %s is not an allowed s3 endpoint for this bucket", u.Host)
	}
	// The store decodes the path as Go does; compare decoded paths, and
	// refuse dot segments, which a proxy or the store may resolve.
	if u.Path != path {
		return refuse("it names another object than %s", want)
	}
	for _, seg := range strings.Split(strings.TrimPrefix(u.Path, "/"), "/") {
		if seg == "." || seg == ".." {
			return refuse("dot segments in the path")
		}
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return refuse("malformed query")
	}
	for k, vs := range q {
		if !presignParams[k] {
			return refuse("query parameter %q not allowed", k)
		}
		if len(vs) != 1 {
			return refuse("query parameter %q repeated", k)
		}
	}
	if q.Get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256" || q.Get("X-Amz-Signature") == "" || q.Get("X-Amz-Credential") == "" {
		return refuse("not a SigV4 presigned URL")
	}
	if id := q.Get("x-id"); id != "" && id != "GetObject" {
		return refuse("not a GetObject URL")
	}
	if !strings.EqualFold(q.Get("X-Amz-SignedHeaders"), "host") {
		return refuse("it signs headers other than host")
	}
	signed, err := time.Parse("20060102T150405Z", q.Get("X-Amz-Date"))
	if err != nil {
		return refuse("bad X-Amz-Date")
	}
	secs, err := strconv.Atoi(q.Get("X-Amz-Expires"))
	if err != nil || secs <= 0 || time.Duration(secs)*time.Second > maxPresignExpiry {
		return refuse("bad X-Amz-Expires")
	}
	out.Expires = signed.Add(time.Duration(secs) * time.Second)
	if !now.Before(out.Expires) {
		return refuse("expired")
	}
	if signed.After(now.Add(15 * time.Minute)) {
		return refuse("signed in the future")
	}
	out.VersionID = normalizeVersion(q.Get("versionId"))
	out.AccessKeyID, _, _ = strings.Cut(q.Get("X-Amz-Credential"), "/")
	return out, nil
}

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
