package dashboard

import (
	"net/url"
	"path"
	"strings"

	"github.com/damselfly-p2p/damselfly/manifest"
)

// TaskName is a short label for a task's URL: "repo@sha256:abcdef123456"
// for an OCI blob (/v2/REPO/blobs/DIGEST), else "host/…/last" of the
// redacted URL. It never shows credentials or query values.
func TaskName(rawURL string) string {
	red := manifest.RedactURL(rawURL)
	u, err := url.Parse(red)
	if err != nil {
		return red
	}
	if d, ok := manifest.BlobDigest(red); ok {
		repo := strings.TrimPrefix(u.Path, "/v2/")
		if i := strings.Index(repo, "/blobs/"); i >= 0 {
			repo = repo[:i]
		}
		ds := d.String()
		if i := strings.IndexByte(ds, ':'); i >= 0 && len(ds) > i+13 {
			ds = ds[:i+13]
		}
		return repo + "@" + ds
	}
	base := path.Base(u.Path)
	if base == "/" || base == "." {
		return u.Host
	}
	if strings.Count(strings.Trim(u.Path, "/"), "/") > 0 {
		return u.Host + "/…/" + base
	}
	return u.Host + "/" + base
}
