package registry

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"

	"github.com/distribution/reference"
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
	v2PathRE   = regexp.MustCompile(`^/v2/(.+)/(manifests|blobs)/([^/]+)$`)
	blobPathRE = regexp.MustCompile(`^/v2/(.+)/blobs/(sha256:[a-f0-9]{64})$`)
)

// ParseReference parses an image reference as docker and containerd do
// (github.com/distribution/reference): "busybox" is
// docker.io/library/busybox:latest; the first component is a registry when
// it has a dot or a port or is "localhost". A reference with a digest
// keeps only the digest. The scheme is https, or http when plainHTTP is
// set or the registry is on a loopback address (as docker treats
// localhost).
func ParseReference(s string, plainHTTP bool) (Reference, error) {
	if s == "" {
		return Reference{}, fmt.Errorf("empty image reference")
	}
	if strings.Contains(s, "://") {
		return Reference{}, fmt.Errorf("image reference %q: give host/name:tag, not a URL", s)
	}
	named, err := reference.ParseDockerRef(s)
	if err != nil {
		what := "bad repository name"
		switch {
		case errors.Is(err, reference.ErrTagInvalidFormat):
			what = "bad tag"
		case errors.Is(err, reference.ErrDigestInvalidFormat):
			what = "bad digest"
		}
		return Reference{}, fmt.Errorf("image reference %q: %s: %w", s, what, err)
	}
	r := Reference{Host: reference.Domain(named), Repository: reference.Path(named), Scheme: "https"}
	if t, ok := named.(reference.Tagged); ok {
		r.Tag = t.Tag()
	}
	if d, ok := named.(reference.Digested); ok {
		r.Digest = d.Digest().String()
	}
	if plainHTTP || IsLoopback(r.Host) {
		r.Scheme = "http"
	}
	if r.Host == DockerHub {
		r.Host = DockerHubHost
	}
	return r, nil
}

// Normalize returns the full form of a docker-style reference:
// "busybox" is "docker.io/library/busybox:latest".
func Normalize(s string) (string, error) {
	named, err := reference.ParseDockerRef(s)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w", s, err)
	}
	return named.String(), nil
}

// IsDigested reports whether s is a valid reference that names a digest.
func IsDigested(s string) bool {
	named, err := reference.ParseDockerRef(s)
	if err != nil {
		return false
	}
	_, ok := named.(reference.Digested)
	return ok
}

// IsLoopback reports whether host[:port] is localhost or a loopback
// address: registries there are reached over plain HTTP.
func IsLoopback(hostport string) bool {
	h := hostport
	if hh, _, err := net.SplitHostPort(hostport); err == nil {
		h = hh
	}
	h = strings.Trim(strings.ToLower(h), "[]")
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// IsPlainHTTP reports whether registry host (host[:port]) is reached over
// plain HTTP: loopback hosts always are, and hosts in list ("host:port",
// "host" for every port, or "*" for every host).
func IsPlainHTTP(host string, list []string) bool {
	if IsLoopback(host) {
		return true
	}
	hostname := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		hostname = h
	}
	hostname = strings.Trim(strings.ToLower(hostname), "[]")
	for _, e := range list {
		e = strings.ToLower(strings.TrimSpace(e))
		if e == "*" || e == strings.ToLower(host) {
			return true
		}
		if _, _, err := net.SplitHostPort(e); err != nil && strings.Trim(e, "[]") == hostname {
			return true // an entry without port matches every port
		}
	}
	return false
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
	named, err := reference.WithName(m[1])
	if err != nil {
		return Reference{}, "", fmt.Errorf("%s: bad repository name %q: %w", u.Redacted(), m[1], err)
	}
	r := Reference{Scheme: u.Scheme, Host: u.Host, Repository: m[1]}
	if d, err := digest.Parse(m[3]); err == nil {
		r.Digest = d.String()
	} else if _, err := reference.WithTag(named, m[3]); err == nil {
		r.Tag = m[3]
	} else {
		return Reference{}, "", fmt.Errorf("%s: bad tag or digest %q", u.Redacted(), m[3])
	}
	return r, m[2], nil
}

// ParseBlobPath splits a blob request path /v2/NAME/blobs/sha256:HEX.
func ParseBlobPath(path string) (repo string, dgst digest.Digest, ok bool) {
	m := blobPathRE.FindStringSubmatch(path)
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
