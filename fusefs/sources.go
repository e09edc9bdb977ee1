package fusefs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/damselfly-p2p/damselfly/manifest"
	"github.com/damselfly-p2p/damselfly/objstore"
)

// urlData reads a file that is one whole URL's content.
type urlData struct {
	lc   *lazyContent
	size int64
}

// URLData returns FileData for a URL's content, opened with open at first
// read (or already opened when c is non-nil).
func URLData(rawURL string, size int64, open Opener, c Content) FileData {
	return &urlData{lc: &lazyContent{url: rawURL, open: open, c: c}, size: size}
}

func (u *urlData) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	c, err := u.lc.get(ctx)
	if err != nil {
		return 0, err
	}
	if c.Size() != u.size {
		return 0, fmt.Errorf("%s: content is %d bytes, metadata says %d", sourceOf(u.lc.url), c.Size(), u.size)
	}
	return c.ReadAtContext(ctx, p, off)
}

func (u *urlData) Progress() (int64, int64) {
	if c := u.lc.peek(); c != nil {
		return c.Present(), u.size
	}
	return 0, u.size
}

// Mode is the opened content's fetch mode, "" before it is opened or when
// the content does not say.
func (u *urlData) Mode() string {
	if m, ok := u.lc.peek().(Moder); ok {
		return m.Mode()
	}
	return ""
}

func (u *urlData) PassthroughPath() string {
	if c := u.lc.peek(); c != nil && c.Complete() {
		return c.DataPath()
	}
	return ""
}

// FileName is the name a plain URL's file gets in the mount: the last
// element of its path, or "download" when there is none.
func FileName(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "download"
	}
	name := path.Base(u.Path)
	if name == "/" || name == "." || name == "" || name == ".." {
		return "download"
	}
	return name
}

// SingleFile is the tree of a plain URL mount: one file.
func SingleFile(rawURL string, c Content, digest string, modTime time.Time) []Entry {
	return []Entry{{Path: FileName(rawURL), Mode: 0o444, Size: c.Size(), ModTime: modTime,
		Digest: digest, Source: manifest.RedactURL(rawURL), Data: URLData(rawURL, c.Size(), nil, c)}}
}

// Dataset is a dataset manifest: a JSON document listing the files (and
// symlinks) of a tree, each file with its size, digest and URL:
//
//	{
//	  "version": 1,
//	  "files": [
//	    {"path": "train/shard-000.bin", "size": 1048576,
//	     "digest": "sha256:…", "url": "shards/000.bin", "mode": "0444"}
//	  ],
//	  "symlinks": [{"path": "latest", "target": "train/shard-000.bin"}]
//	}
//
// Relative URLs resolve against the manifest's own URL. A url may also be
// s3://BUCKET/KEY, one object of the store the mounting peer's own flags
// name (never a store the manifest names). Paths must be relative and must
// not contain "..". Mode is optional (default 0444).
type Dataset struct {
	Version  int              `json:"version"`
	Files    []DatasetFile    `json:"files"`
	Symlinks []DatasetSymlink `json:"symlinks,omitempty"`
}

// DatasetFile is one file of a dataset.
type DatasetFile struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	Digest string `json:"digest,omitempty"`
	URL    string `json:"url"`
	Mode   string `json:"mode,omitempty"`
}

// DatasetSymlink is one symlink of a dataset.
type DatasetSymlink struct {
	Path   string `json:"path"`
	Target string `json:"target"`
}

// ParseDataset parses and checks a dataset manifest fetched from base.
func ParseDataset(data []byte, base string) (*Dataset, error) {
	var d Dataset
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("dataset manifest: %w", err)
	}
	if d.Version != 1 {
		return nil, fmt.Errorf("dataset manifest: version %d not supported (want 1)", d.Version)
	}
	resolve, err := datasetResolver(base)
	if err != nil {
		return nil, err
	}
	for i := range d.Files {
		f := &d.Files[i]
		if _, err := CheckPath(f.Path); err != nil {
			return nil, fmt.Errorf("dataset manifest: %w", err)
		}
		if f.Size < 0 {
			return nil, fmt.Errorf("dataset manifest: %s: negative size", f.Path)
		}
		if f.Size > MaxFileSize {
			return nil, fmt.Errorf("dataset manifest: %s: size %d is over the %d-byte (1 PiB) limit", f.Path, f.Size, int64(MaxFileSize))
		}
		if f.URL, err = resolve(f.URL); err != nil {
			return nil, fmt.Errorf("dataset manifest: %s: %w", f.Path, err)
		}
		if f.Mode != "" {
			if _, err := strconv.ParseUint(f.Mode, 8, 32); err != nil {
				return nil, fmt.Errorf("dataset manifest: %s: bad mode %q", f.Path, f.Mode)
			}
		}
	}
	for _, s := range d.Symlinks {
		p, err := CheckPath(s.Path)
		if err != nil {
			return nil, fmt.Errorf("dataset manifest: %w", err)
		}
		if !symlinkStaysInside(p, s.Target) {
			return nil, fmt.Errorf("dataset manifest: symlink %s -> %q leaves the mount", p, s.Target)
		}
	}
	if err := checkDatasetTree(&d); err != nil {
		return nil, fmt.Errorf("dataset manifest: %w", err)
	}
	return &d, nil
}

// datasetResolver returns the function that makes an entry's URL
// absolute (relative to base, the manifest's own URL) and checks it: an
// http(s) URL, or s3://BUCKET/KEY naming one object (not a prefix). An s3
// URL names a bucket and key only, never a store: the peer reads it from
// the store its own flags name, so a manifest cannot point it elsewhere.
// Relative URLs under an s3:// manifest are keys of the manifest's bucket.
func datasetResolver(base string) (func(ref string) (string, error), error) {
	checkS3 := func(raw string) (string, error) {
		u, err := objstore.ParseURL(raw)
		if err != nil {
			return "", err
		}
		if u.IsPrefix() {
			return "", fmt.Errorf("url %s is an s3 prefix, not an object", u)
		}
		return u.String(), nil
	}
	var b *url.URL
	var s3Base objstore.URL
	if objstore.IsURL(base) {
		u, err := objstore.ParseURL(base)
		if err != nil {
			return nil, fmt.Errorf("dataset manifest URL: %w", err)
		}
		s3Base = u
	} else {
		u, err := url.Parse(base)
		if err != nil {
			return nil, fmt.Errorf("dataset manifest URL: %w", err)
		}
		b = u
	}
	return func(raw string) (string, error) {
		if raw == "" {
			return "", errors.New("bad url \"\"")
		}
		if objstore.IsURL(raw) {
			return checkS3(raw) // keys are literal: never parsed as a URL
		}
		ref, err := url.Parse(raw)
		if err != nil {
			return "", fmt.Errorf("bad url %q", raw)
		}
		var abs string
		switch {
		case b != nil:
			abs = b.ResolveReference(ref).String()
		case ref.IsAbs():
			abs = ref.String()
		default:
			// A key of the manifest's bucket, resolved as a URL path
			// against the manifest's key.
			if ref.Host != "" || ref.User != nil || ref.RawQuery != "" || ref.ForceQuery || ref.Fragment != "" {
				return "", fmt.Errorf("bad url %q: relative to an s3 manifest, a url is a key path only", raw)
			}
			dir := &url.URL{Path: "/" + s3Base.Key}
			key := strings.TrimPrefix(dir.ResolveReference(&url.URL{Path: ref.Path}).Path, "/")
			return checkS3(objstore.URL{Bucket: s3Base.Bucket, Key: key}.String())
		}
		if objstore.IsURL(abs) {
			return checkS3(abs)
		}
		if _, err := manifest.ParseURL(abs); err != nil {
			return "", err
		}
		return abs, nil
	}, nil
}

// sourceOf is how a URL is shown (the user.damselfly.source xattr,
// errors): an s3:// URL as it is (its key is literal), others redacted.
func sourceOf(raw string) string {
	if objstore.IsURL(raw) {
		if u, err := objstore.ParseURL(raw); err == nil {
			return u.String()
		}
	}
	return manifest.RedactURL(raw)
}

// Entries returns the dataset's tree; each file's content is opened with
// open at its first read.
func (d *Dataset) Entries(open Opener, modTime time.Time) []Entry {
	var out []Entry
	for _, f := range d.Files {
		mode := os.FileMode(0o444)
		if f.Mode != "" {
			m, _ := strconv.ParseUint(f.Mode, 8, 32)
			mode = os.FileMode(m).Perm()
		}
		out = append(out, Entry{Path: f.Path, Mode: mode, Size: f.Size, ModTime: modTime, Digest: f.Digest,
			Source: sourceOf(f.URL), Data: URLData(f.URL, f.Size, open, nil)})
	}
	for _, s := range d.Symlinks {
		out = append(out, Entry{Path: s.Path, Mode: os.ModeSymlink | 0o777, Target: s.Target, ModTime: modTime})
	}
	return out
}

// symlinkStaysInside reports whether a symlink at p (clean, relative to
// the mount root) with target resolves inside the mount, lexically.
func symlinkStaysInside(p, target string) bool {
	if target == "" || path.IsAbs(target) {
		return false
	}
	joined := path.Join(path.Dir(p), target)
	return joined != ".." && !strings.HasPrefix(joined, "../")
}

// checkDatasetTree refuses a path given twice or used both as a file (or
// symlink) and as a directory of another path.
func checkDatasetTree(d *Dataset) error {
	kind := map[string]string{}
	var all []string
	add := func(p, k string) error {
		p = path.Clean(p)
		if prev, ok := kind[p]; ok {
			return fmt.Errorf("%s is listed twice (%s and %s)", p, prev, k)
		}
		kind[p] = k
		all = append(all, p)
		return nil
	}
	for _, f := range d.Files {
		if err := add(f.Path, "file"); err != nil {
			return err
		}
	}
	for _, s := range d.Symlinks {
		if err := add(s.Path, "symlink"); err != nil {
			return err
		}
	}
	for _, p := range all {
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			if k, ok := kind[dir]; ok {
				return fmt.Errorf("%s is a %s and also the directory of %s", dir, k, p)
			}
		}
	}
	return nil
}
