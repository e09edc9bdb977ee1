package objstore

import (
	"context"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Entry is one name in a directory level of a prefix: an object (a file) or
// a common prefix (a subdirectory).
type Entry struct {
	// Name is the last path element: no "/" in it, never "", "." or "..".
	Name string
	// Key is the full key; for a directory it is the prefix ending in "/".
	Key   string
	IsDir bool
	// Size, ETag and LastModified are those of an object; zero for a
	// directory. The ETag is without quotes.
	Size         int64
	ETag         string
	LastModified time.Time
}

// Info returns the object entry e of bucket as an ObjectInfo, for Identity
// and GetRange (it has no version ID: listings give none).
func (e Entry) Info(bucket string) ObjectInfo {
	return ObjectInfo{Bucket: bucket, Key: e.Key, Size: e.Size, ETag: e.ETag, LastModified: e.LastModified}
}

// List lists one directory level of bucket under prefix, lazily: the
// returned sequence asks the store for one page (ListObjectsV2 with
// delimiter "/") at a time, as it is consumed, so a prefix of 100,000
// objects costs nothing until its directories are opened, and a directory
// costs one request per page. A non-empty prefix not ending in "/" gets one.
// Entries come page by page: within a page its subdirectories, then its
// objects; across pages names are not merged or sorted (ReadDir does that).
// Keys that cannot be a path element (an empty element as in "a//b", ".",
// "..", a NUL byte; ListWithSkips reports them) and the directory's own
// marker object (the key equal to prefix) are
// skipped. A name may appear both as an object and as a directory ("a" and
// "a/b" both exist); the caller chooses. On error the sequence yields it
// once and stops.
func (c *Client) List(ctx context.Context, bucket, prefix string) iter.Seq2[Entry, error] {
	return c.ListWithSkips(ctx, bucket, prefix, nil)
}

// ListWithSkips is List that also reports each key it skips, with why,
// to skipped (when not nil), so that a caller showing the tree can warn
// about the objects it leaves out.
func (c *Client) ListWithSkips(ctx context.Context, bucket, prefix string, skipped func(key, reason string)) iter.Seq2[Entry, error] {
	skip := func(key, reason string) {
		if skipped != nil {
			skipped(key, reason)
		}
	}
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return func(yield func(Entry, error) bool) {
		in := &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix, Delimiter: aws.String("/")}
		if c.pageSize > 0 {
			in.MaxKeys = aws.Int32(c.pageSize)
		}
		// A store sending the same continuation token again would loop
		// forever: stop there.
		pages := s3.NewListObjectsV2Paginator(c.s3, in, func(o *s3.ListObjectsV2PaginatorOptions) { o.StopOnDuplicateToken = true })
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				yield(Entry{}, wrapErr("list", bucket, prefix, err))
				return
			}
			for _, cp := range page.CommonPrefixes {
				key := aws.ToString(cp.Prefix)
				name, why := entryName(prefix, key, true)
				if why != "" {
					skip(key, why)
					continue
				}
				if !yield(Entry{Name: name, Key: key, IsDir: true}, nil) {
					return
				}
			}
			for _, obj := range page.Contents {
				key := aws.ToString(obj.Key)
				name, why := entryName(prefix, key, false)
				if why == reasonMarker {
					continue // the directory's own marker object: not an entry
				}
				if why != "" {
					skip(key, why)
					continue
				}
				e := Entry{Name: name, Key: key, Size: aws.ToInt64(obj.Size), ETag: normalizeETag(aws.ToString(obj.ETag))}
				if obj.LastModified != nil {
					e.LastModified = *obj.LastModified
				}
				if !yield(e, nil) {
					return
				}
			}
		}
	}
}

// ReadDir lists one whole directory level of bucket under prefix (see List)
// and returns its entries sorted by name, directories before objects of the
// same name.
func (c *Client) ReadDir(ctx context.Context, bucket, prefix string) ([]Entry, error) {
	var out []Entry
	for e, err := range c.List(ctx, bucket, prefix) {
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		switch {
		case a.IsDir == b.IsDir:
			return 0
		case a.IsDir:
			return -1
		}
		return 1
	})
	return out, nil
}

// reasonMarker is entryName's reason for the directory's own marker
// object (the key equal to the prefix), which is skipped silently.
const reasonMarker = "the directory's own marker object"

// entryName returns the path element key (a common prefix ending in "/"
// when dir) adds under prefix, or, when it is not one a tree can show, why
// ("" when it is).
func entryName(prefix, key string, dir bool) (string, string) {
	name, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return "", "not under the listed prefix"
	}
	if dir {
		if name, ok = strings.CutSuffix(name, "/"); !ok {
			return "", `a common prefix not ending in "/"`
		}
	}
	switch {
	case name == "" && !dir:
		return "", reasonMarker
	case name == "":
		return "", "an empty path element"
	case name == "." || name == "..":
		return "", fmt.Sprintf("a %q path element", name)
	case strings.Contains(name, "/"):
		return "", `a "/" inside the name`
	case strings.ContainsRune(name, 0):
		return "", "a NUL byte in the name"
	}
	return name, ""
}
