package objstore

import (
	"strconv"
	"strings"
	"time"
)

// ObjectInfo is what a HEAD (or a listing) says about one object.
type ObjectInfo struct {
	Bucket string
	Key    string
	// Size is the object's length in bytes.
	Size int64
	// ETag is the entity tag without its surrounding quotes.
	ETag string
	// VersionID is the version the HEAD saw, empty when the bucket is not
	// versioned (the store's "null" version is reported as empty).
	VersionID    string
	LastModified time.Time
}

// URL returns the object's s3:// URL.
func (o ObjectInfo) URL() URL { return URL{Bucket: o.Bucket, Key: o.Key} }

// Identity returns the string that names this version of the object's
// content, from which a task ID derives: the bucket, the key, the ETag and,
// when the bucket is versioned, the version ID. It never holds a signature,
// a credential or the endpoint, so every peer that sees the same object
// version gets the same identity however it reaches the store, and a new
// version (new ETag or version ID) gets a new one. Each part is quoted, so
// two different objects can never share an identity by the way their parts
// join.
func Identity(o ObjectInfo) string {
	var b strings.Builder
	b.WriteString("s3 bucket=")
	b.WriteString(strconv.Quote(o.Bucket))
	b.WriteString(" key=")
	b.WriteString(strconv.Quote(o.Key))
	b.WriteString(" etag=")
	b.WriteString(strconv.Quote(normalizeETag(o.ETag)))
	if v := normalizeVersion(o.VersionID); v != "" {
		b.WriteString(" version=")
		b.WriteString(strconv.Quote(v))
	}
	return b.String()
}

// normalizeETag drops the quotes S3 puts around ETags, which some listings
// and stores omit, so HEAD and LIST agree.
func normalizeETag(etag string) string {
	etag = strings.TrimPrefix(etag, "W/")
	return strings.Trim(etag, `"`)
}

// normalizeVersion maps the store's "null" version (unversioned objects in a
// bucket whose versioning was suspended) to no version.
func normalizeVersion(v string) string {
	if v == "null" {
		return ""
	}
	return v
}
