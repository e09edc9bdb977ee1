// Package objstore owns talking to S3-compatible object stores: parsing
// s3://BUCKET/KEY and s3://BUCKET/PREFIX/ URLs, signing requests with
// aws-sdk-go-v2 using credentials from the standard AWS chain (environment,
// shared config and credentials files, web identity) or given ones, with
// endpoint, region and path-style options for stores other than AWS; HEAD
// (size, ETag, version ID), ranged GET pinned to the version a HEAD saw, and
// lazy listing of a prefix one directory level at a time; and the identity of
// an object (bucket, key, ETag and version ID, never a signature) from which
// task IDs derive.
//
// Credentials never appear in logs or errors; errors say what was being done
// and name the bucket and key. A refused signature or unknown access key is
// reported as ErrAccessDenied with a message telling to check the
// credentials.
package objstore

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Scheme is the URL scheme of object store URLs.
const Scheme = "s3"

// maxKeyLen is the longest object key S3 accepts, in bytes.
const maxKeyLen = 1024

// URL is a parsed s3://BUCKET/KEY URL. A Key that is empty or ends in "/"
// names a prefix (a directory tree) rather than one object.
type URL struct {
	Bucket string
	Key    string
}

// ErrNotS3URL is returned by ParseURL for a URL of another scheme.
var ErrNotS3URL = errors.New("not an s3:// URL")

// IsURL reports whether s has the s3:// scheme (in any letter case). It does
// not validate the rest; ParseURL does.
func IsURL(s string) bool {
	return len(s) >= len(Scheme)+3 && strings.EqualFold(s[:len(Scheme)+3], Scheme+"://")
}

// ParseURL parses s3://BUCKET, s3://BUCKET/ (the whole bucket),
// s3://BUCKET/KEY (one object) or s3://BUCKET/PREFIX/ (a tree). The key is
// taken literally, as the AWS CLI does: no percent-decoding, and "?" or "#"
// are part of it. The bucket must be 3 to 255 characters of letters, digits,
// ".", "-" and "_" (the legacy rule; new AWS buckets are a subset), starting
// and ending with a letter or digit.
func ParseURL(s string) (URL, error) {
	if !IsURL(s) {
		return URL{}, fmt.Errorf("parse %q: %w", s, ErrNotS3URL)
	}
	rest := s[len(Scheme)+3:]
	bucket, key, _ := strings.Cut(rest, "/")
	if err := checkBucket(bucket); err != nil {
		return URL{}, fmt.Errorf("parse %q: %w", s, err)
	}
	if err := checkKey(key); err != nil {
		return URL{}, fmt.Errorf("parse %q: %w", s, err)
	}
	return URL{Bucket: bucket, Key: key}, nil
}

// IsPrefix reports whether u names a prefix (the key is empty or ends in
// "/") rather than one object.
func (u URL) IsPrefix() bool { return u.Key == "" || strings.HasSuffix(u.Key, "/") }

// String returns the URL as s3://BUCKET/KEY.
func (u URL) String() string { return Scheme + "://" + u.Bucket + "/" + u.Key }

func checkBucket(b string) error {
	if b == "" {
		return errors.New("no bucket name")
	}
	if len(b) < 3 || len(b) > 255 {
		return fmt.Errorf("bucket name %q: must be 3 to 255 characters", b)
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && c != '.' && c != '-' && c != '_' {
			return fmt.Errorf("bucket name %q: character %q not allowed", b, c)
		}
		if !alnum && (i == 0 || i == len(b)-1) {
			return fmt.Errorf("bucket name %q: must start and end with a letter or digit", b)
		}
	}
	return nil
}

func checkKey(k string) error {
	if len(k) > maxKeyLen {
		return fmt.Errorf("key of %d bytes: longer than %d", len(k), maxKeyLen)
	}
	if !utf8.ValidString(k) {
		return errors.New("key is not valid UTF-8")
	}
	return nil
}
