package objstore

import (
	"strconv"
	"strings"
	"time"
)

// ObjectInfo is what a HEAD says about one object (or, from a listing,
// EntryInfo).
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
// content, from which a task ID derives: the bucket, the key and the ETag,
// or the version ID when the store gave no ETag. An ETag is derived from the
// content and changes with every upload, so it is enough; and listings carry
// ETags but no version IDs, so an object found by listing a prefix and the
// same object found by HEAD get the same identity. It never holds a
// signature, a credential or the endpoint, so every peer that sees the same
// object version gets the same identity however it reaches the store. Each
// part is quoted, so two different objects can never share an identity by
// the way their parts join.
func Identity(o ObjectInfo) string {
	var b strings.Builder
	b.WriteString("s3 bucket=")
	b.WriteString(strconv.Quote(o.Bucket))
	b.WriteString(" key=")
	b.WriteString(strconv.Quote(o.Key))
	if etag := normalizeETag(o.ETag); etag != "" || normalizeVersion(o.VersionID) == "" {
		b.WriteString(" etag=")
		b.WriteString(strconv.Quote(etag))
	} else {
		b.WriteString(" version=")
		b.WriteString(strconv.Quote(normalizeVersion(o.VersionID)))
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
