package registry

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"

	"github.com/opencontainers/go-digest"
)

// DockerHub is the name users type for Docker Hub, and DockerHubHost the
// host that serves its registry API.
const (
	DockerHub     = "docker.io"
	DockerHubHost = "registry-1.docker.io"
)

// Reference names an image (a tag or a digest in a repository) or, with
// only Host, Scheme and Repository set, a repository.
type Reference struct {
	// Scheme is "https", or "http" for plain-HTTP registries.
	Scheme string
	// Host is host[:port] of the registry API (docker.io is
	// registry-1.docker.io).
	Host       string
	Repository string
	Tag        string
	Digest     string
}

var (
	repoPart  = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	tagRE     = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	v2PathRE  = regexp.MustCompile(`^/v2/(.+)/(manifests|blobs)/([^/]+)$`)
	blobPathR = regexp.MustCompile(`^/v2/(.+)/blobs/(sha256:[a-f0-9]{64})$`)
)

// ParseReference parses an image reference as docker and containerd do:
// "busybox" is docker.io/library/busybox:latest; the first component is a
// registry when it has a dot or a port or is "localhost". The scheme is
// https, or http when plainHTTP is set or the registry is on a loopback
// address (as docker treats localhost).
func ParseReference(s string, plainHTTP bool) (Reference, error) {
	orig := s
	if s == "" {
		return Reference{}, fmt.Errorf("empty image reference")
	}
	if strings.Contains(s, "://") {
		return Reference{}, fmt.Errorf("image reference %q: give host/name:tag, not a URL", orig)
	}
	var r Reference
	if name, dgst, ok := strings.Cut(s, "@"); ok {
		d, err := digest.Parse(dgst)
		if err != nil {
			return Reference{}, fmt.Errorf("image reference %q: bad digest: %w", orig, err)
		}
		r.Digest, s = d.String(), name
	}
	if i := strings.LastIndex(s, ":"); i > strings.LastIndex(s, "/") {
		r.Tag, s = s[i+1:], s[:i]
		if !tagRE.MatchString(r.Tag) {
			return Reference{}, fmt.Errorf("image reference %q: bad tag %q", orig, r.Tag)
		}
	}
	host, rest, found := strings.Cut(s, "/")
	if found && (strings.ContainsAny(host, ".:") || host == "localhost") {
		s = rest
	} else {
		host = DockerHub
	}
	if host == DockerHub && !strings.Contains(s, "/") {
		s = "library/" + s
	}
	for _, part := range strings.Split(s, "/") {
		if !repoPart.MatchString(part) {
			return Reference{}, fmt.Errorf("image reference %q: bad repository name %q", orig, s)
		}
	}
	r.Repository = s
	r.Host = host
	if host == DockerHub {
		r.Host = DockerHubHost
	}
	r.Scheme = "https"
	if plainHTTP || isLoopbackHost(host) {
		r.Scheme = "http"
	}
	if r.Tag == "" && r.Digest == "" {
		r.Tag = "latest"
	}
	return r, nil
}

func isLoopbackHost(hostport string) bool {
	h := hostport
	if hh, _, err := net.SplitHostPort(hostport); err == nil {
		h = hh
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// ParseManifestURL parses http(s)://HOST/v2/NAME/manifests/REF.
func ParseManifestURL(raw string) (Reference, error) {
	r, kind, err := parseV2URL(raw)
	if err != nil {
		return Reference{}, err
	}
	if kind != "manifests" {
		return Reference{}, fmt.Errorf("%s is not a manifest URL (/v2/<name>/manifests/<tag or digest>)", raw)
	}
	return r, nil
}

// IsManifestURL reports whether raw is a registry manifest URL.
func IsManifestURL(raw string) bool {
	_, err := ParseManifestURL(raw)
	return err == nil
}

func parseV2URL(raw string) (Reference, string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Reference{}, "", fmt.Errorf("%q is not an http(s) URL", raw)
	}
	m := v2PathRE.FindStringSubmatch(u.Path)
	if m == nil {
		return Reference{}, "", fmt.Errorf("%s is not a registry API URL (/v2/<name>/manifests|blobs/...)", u.Redacted())
	}
	r := Reference{Scheme: u.Scheme, Host: u.Host, Repository: m[1]}
	if d, err := digest.Parse(m[3]); err == nil {
		r.Digest = d.String()
	} else if tagRE.MatchString(m[3]) {
		r.Tag = m[3]
	} else {
		return Reference{}, "", fmt.Errorf("%s: bad tag or digest %q", u.Redacted(), m[3])
	}
	return r, m[2], nil
}

// ParseBlobPath splits a blob request path /v2/NAME/blobs/sha256:HEX.
func ParseBlobPath(path string) (repo string, dgst digest.Digest, ok bool) {
	m := blobPathR.FindStringSubmatch(path)
	if m == nil {
		return "", "", false
	}
	return m[1], digest.Digest(m[2]), true
}

// RepositoryOf returns NAME of a /v2/NAME/{manifests,blobs,tags}/... path,
// or "" for /v2/ itself and paths it does not know.
func RepositoryOf(path string) string {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return ""
	}
	best := -1
	for _, sep := range []string{"/manifests/", "/blobs/", "/tags/", "/referrers/"} {
		if i := strings.LastIndex(rest, sep); i > best {
			best = i
		}
	}
	if best <= 0 {
		return ""
	}
	if strings.HasSuffix(rest[:best], "/blobs") {
		// /v2/NAME/blobs/uploads/...
		return rest[:best-len("/blobs")]
	}
	return rest[:best]
}

// Ref is the digest if set, else the tag.
func (r Reference) Ref() string {
	if r.Digest != "" {
		return r.Digest
	}
	return r.Tag
}

// String renders host/repository[:tag][@digest].
func (r Reference) String() string {
	s := r.Host + "/" + r.Repository
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest
	}
	return s
}

// Base is SCHEME://HOST.
func (r Reference) Base() string { return r.Scheme + "://" + r.Host }

// ManifestURL is the URL of the manifest r names.
func (r Reference) ManifestURL() string {
	return r.Base() + "/v2/" + r.Repository + "/manifests/" + r.Ref()
}

// BlobURL is the URL of blob d in r's repository.
func (r Reference) BlobURL(d string) string {
	return r.Base() + "/v2/" + r.Repository + "/blobs/" + d
}

// PullScope is the token scope for pulling from r's repository.
func (r Reference) PullScope() string { return "repository:" + r.Repository + ":pull" }
