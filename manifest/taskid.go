package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
)

// ociBlobPath matches the path of an OCI distribution blob request. The task
// of a blob is keyed by its digest alone, so the same layer fetched from two
// registries or through a mirror is one task.
var ociBlobPath = regexp.MustCompile(`/v2/.+/blobs/(sha256:[a-f0-9]{64})$`)

// ParseURL checks that raw is an absolute http or https URL with a host.
func ParseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the whole URL, password included: keep only
		// its reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("invalid URL %q: %w", RedactURL(raw), err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("invalid URL %q: scheme must be http or https", RedactURL(raw))
	}
	if u.Host == "" {
		return nil, fmt.Errorf("invalid URL %q: no host", RedactURL(raw))
	}
	return u, nil
}

// TaskID derives the ID of the task that rawURL names.
//
// For an OCI blob URL the ID is derived from the blob digest alone. Otherwise it
// is derived from the URL with the query parameters named in filters removed
// (signatures, expiry times: anything that changes per request but not the
// content) and from tag, which lets a user separate two tasks for one URL.
// Request headers never take part: they are credentials, not identity.
func TaskID(rawURL, tag string, filters []string) (string, error) {
	u, err := ParseURL(rawURL)
	if err != nil {
		return "", err
	}
	if m := ociBlobPath.FindStringSubmatch(u.Path); m != nil {
		return DigestTaskID(digest.Digest(m[1])), nil
	}
	key := FilteredURL(u, filters)
	if tag != "" {
		key += "\x00tag=" + tag
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:]), nil
}

// BlobDigest returns the digest an OCI blob URL names, if it is one.
func BlobDigest(rawURL string) (digest.Digest, bool) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", false
	}
	if m := ociBlobPath.FindStringSubmatch(u.Path); m != nil {
		return digest.Digest(m[1]), true
	}
	return "", false
}

// IsBlobURL reports whether rawURL is an OCI blob URL (content-addressed).
func IsBlobURL(rawURL string) bool {
	_, ok := BlobDigest(rawURL)
	return ok
}

// DigestTaskID is the task ID of content addressed by d.
func DigestTaskID(d digest.Digest) string {
	sum := sha256.Sum256([]byte("digest\x00" + d.String()))
	return hex.EncodeToString(sum[:])
}

// FilteredURL renders u without the named query parameters, with the rest of
// the query sorted so that parameter order does not split a task.
func FilteredURL(u *url.URL, filters []string) string {
	c := *u
	c.Fragment = ""
	c.User = nil
	q := c.Query()
	for _, f := range filters {
		q.Del(strings.TrimSpace(f))
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		vs := q[k]
		sort.Strings(vs)
		for j, v := range vs {
			if i > 0 || j > 0 {
				b.WriteByte('&')
			}
			b.WriteString(url.QueryEscape(k) + "=" + url.QueryEscape(v))
		}
	}
	c.RawQuery = b.String()
	return c.String()
}

// RedactURL returns rawURL without user info, query values and fragment,
// for logs, errors and status output: query strings and fragments often
// carry signatures and tokens.
func RedactURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "<invalid URL>"
	}
	u.User = nil
	u.Fragment, u.RawFragment = "", ""
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q.Set(k, "REDACTED")
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}
