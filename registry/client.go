package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"
)

// Media types of manifests and indexes.
const (
	MediaTypeOCIIndex      = "application/vnd.oci.image.index.v1+json"
	MediaTypeOCIManifest   = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeDockerList    = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerV2      = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerV1      = "application/vnd.docker.distribution.manifest.v1+json"
	mediaTypeDockerV1Signd = "application/vnd.docker.distribution.manifest.v1+prettyjws"
)

// ManifestAccept is the Accept header for manifest requests: indexes and
// manifests, OCI and docker.
var ManifestAccept = strings.Join([]string{MediaTypeOCIIndex, MediaTypeDockerList, MediaTypeOCIManifest, MediaTypeDockerV2}, ", ")

// IsManifestMediaType reports whether mt is a manifest or an index.
func IsManifestMediaType(mt string) bool {
	switch mt {
	case MediaTypeOCIIndex, MediaTypeOCIManifest, MediaTypeDockerList, MediaTypeDockerV2,
		mediaTypeDockerV1, mediaTypeDockerV1Signd:
		return true
	}
	return false
}

// maxManifest bounds a manifest body (the distribution spec's 4 MiB).
const maxManifest = 4 << 20

// Platform selects one image of an index.
type Platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant,omitempty"`
}

func (p Platform) String() string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// ParsePlatform parses os/arch[/variant]; "" is linux/amd64.
func ParsePlatform(s string) (Platform, error) {
	if s == "" {
		return Platform{OS: "linux", Architecture: "amd64"}, nil
	}
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return Platform{}, fmt.Errorf("platform %q: want os/arch[/variant], e.g. linux/amd64", s)
	}
	p := Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

// matches reports whether an index entry's platform q fits p: OS and
// architecture equal, and the variant equal when p names one.
func (p Platform) matches(q *Platform) bool {
	if q == nil {
		return false
	}
	return q.OS == p.OS && q.Architecture == p.Architecture && (p.Variant == "" || q.Variant == p.Variant)
}

// Descriptor points at a blob or a manifest.
type Descriptor struct {
	MediaType string    `json:"mediaType"`
	Digest    string    `json:"digest"`
	Size      int64     `json:"size"`
	Platform  *Platform `json:"platform,omitempty"`
}

type manifestDoc struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []Descriptor `json:"manifests"`
	Config        *Descriptor  `json:"config"`
	Layers        []Descriptor `json:"layers"`
}

// Image is one platform's image: its manifest and the blobs it names.
type Image struct {
	Ref      Reference
	Manifest Descriptor
	Config   Descriptor
	Layers   []Descriptor
	// Authorization is what the registry accepted for the manifest (the
	// caller's, or a bearer token exchanged for it), for fetching the
	// blobs. Never log it.
	Authorization string
}

// Blobs are the config followed by the layers, without duplicates.
func (im *Image) Blobs() []Descriptor {
	seen := map[string]bool{}
	var out []Descriptor
	for _, d := range append([]Descriptor{im.Config}, im.Layers...) {
		if d.Digest == "" || seen[d.Digest] {
			continue
		}
		seen[d.Digest] = true
		out = append(out, d)
	}
	return out
}

// Client talks to registries for manifests, handling bearer challenges.
type Client struct {
	HTTP   *http.Client
	Tokens *Tokens
	Log    logrus.FieldLogger
}

// StatusError is a registry's non-success answer.
type StatusError struct {
	Code int
	What string // e.g. "GET manifest host/name:tag"
	Body string // the start of the registry's error JSON
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("%s: registry answered %d %s", e.What, e.Code, http.StatusText(e.Code))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// Get sends GET rawURL with header (the caller's credentials) and accept.
// On 401 with a bearer challenge, it exchanges the caller's Basic
// credential (or nothing, for anonymous access) for a token at the
// challenge's realm and sends the request again. scope is asked for when
// the challenge names none. It returns the response and the Authorization
// value that was used.
func (c *Client) Get(ctx context.Context, rawURL string, header http.Header, accept, scope string) (*http.Response, string, error) {
	auth := header.Get("Authorization")
	resp, err := c.send(ctx, rawURL, header, accept, auth)
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != http.StatusUnauthorized || strings.HasPrefix(strings.ToLower(auth), "bearer ") {
		return resp, auth, nil
	}
	ch, ok := BearerChallenge(resp.Header)
	if !ok {
		return resp, auth, nil
	}
	drain(resp)
	if ch.Scope() == "" && scope != "" {
		ch = ch.WithScope(scope)
	}
	tok, err := c.Tokens.Token(ctx, ch, auth)
	if err != nil {
		return nil, "", fmt.Errorf("registry auth for %s: %w", redactedHostPath(rawURL), err)
	}
	auth = "Bearer " + tok
	resp, err = c.send(ctx, rawURL, header, accept, auth)
	return resp, auth, err
}

func (c *Client) send(ctx context.Context, rawURL string, header http.Header, accept, auth string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, fmt.Errorf("build request for %s: %w", redactedHostPath(rawURL), err)
	}
	for k, vs := range header {
		req.Header[k] = append([]string(nil), vs...)
	}
	req.Header.Del("Authorization")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", redactedHostPath(rawURL), err)
	}
	return resp, nil
}

func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

func redactedHostPath(raw string) string {
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		return raw[:i]
	}
	return raw
}

// fetchManifest GETs one manifest or index, checking its digest when
// known.
func (c *Client) fetchManifest(ctx context.Context, ref Reference, header http.Header) (*manifestDoc, Descriptor, string, error) {
	what := "GET manifest " + ref.String()
	resp, auth, err := c.Get(ctx, ref.ManifestURL(), header, ManifestAccept, ref.PullScope())
	if err != nil {
		return nil, Descriptor{}, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxManifest+1))
	if err != nil {
		return nil, Descriptor{}, "", fmt.Errorf("%s: read body: %w", what, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, Descriptor{}, "", &StatusError{Code: resp.StatusCode, What: what, Body: strings.TrimSpace(string(body[:min(len(body), 300)]))}
	}
	if len(body) > maxManifest {
		return nil, Descriptor{}, "", fmt.Errorf("%s: manifest larger than %d bytes", what, maxManifest)
	}
	got := digest.FromBytes(body)
	if ref.Digest != "" && got.String() != ref.Digest {
		return nil, Descriptor{}, "", fmt.Errorf("%s: manifest has digest %s, want %s", what, got, ref.Digest)
	}
	var doc manifestDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, Descriptor{}, "", fmt.Errorf("%s: manifest is not JSON: %w", what, err)
	}
	mt := resp.Header.Get("Content-Type")
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = strings.TrimSpace(mt[:i])
	}
	if doc.MediaType != "" {
		mt = doc.MediaType
	}
	return &doc, Descriptor{MediaType: mt, Digest: got.String(), Size: int64(len(body))}, auth, nil
}

// Resolve fetches the manifest ref names; for an index (or docker
// manifest list) it picks the entry for platform and fetches that
// manifest. header carries the caller's credentials (Basic or Bearer).
func (c *Client) Resolve(ctx context.Context, ref Reference, header http.Header, platform Platform) (*Image, error) {
	if header == nil {
		header = http.Header{}
	}
	doc, desc, auth, err := c.fetchManifest(ctx, ref, header)
	if err != nil {
		return nil, err
	}
	if auth != "" {
		header = header.Clone()
		header.Set("Authorization", auth)
	}
	if isIndex(desc.MediaType, doc) {
		var pick *Descriptor
		var have []string
		for i := range doc.Manifests {
			m := &doc.Manifests[i]
			if m.Platform != nil {
				have = append(have, m.Platform.String())
			}
			if platform.matches(m.Platform) {
				pick = m
				break
			}
		}
		if pick == nil {
			return nil, fmt.Errorf("%s: no image for platform %s in the index (it has %s)", ref, platform, strings.Join(have, ", "))
		}
		child := ref
		child.Digest, child.Tag = pick.Digest, ""
		doc, desc, auth, err = c.fetchManifest(ctx, child, header)
		if err != nil {
			return nil, err
		}
		if auth != "" {
			header.Set("Authorization", auth)
		}
		if isIndex(desc.MediaType, doc) {
			return nil, fmt.Errorf("%s: index entry %s is itself an index", ref, pick.Digest)
		}
	}
	switch {
	case desc.MediaType == mediaTypeDockerV1 || desc.MediaType == mediaTypeDockerV1Signd || doc.SchemaVersion == 1:
		return nil, fmt.Errorf("%s: docker schema 1 manifests are not supported", ref)
	case doc.Config == nil:
		return nil, fmt.Errorf("%s: manifest (%s) has no config", ref, desc.MediaType)
	}
	im := &Image{Ref: ref, Manifest: desc, Config: *doc.Config, Layers: doc.Layers, Authorization: header.Get("Authorization")}
	for _, d := range im.Blobs() {
		if _, err := digest.Parse(d.Digest); err != nil {
			return nil, fmt.Errorf("%s: bad blob digest %q: %w", ref, d.Digest, err)
		}
	}
	return im, nil
}

func isIndex(mt string, doc *manifestDoc) bool {
	switch mt {
	case MediaTypeOCIIndex, MediaTypeDockerList:
		return true
	case MediaTypeOCIManifest, MediaTypeDockerV2:
		return false
	}
	return len(doc.Manifests) > 0 && doc.Config == nil
}

// IsStatus reports whether err is a registry StatusError with code.
func IsStatus(err error, code int) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == code
}
