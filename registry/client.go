package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"

	"github.com/damselfly-p2p/damselfly/manifest/oci"
)

// ManifestAccept is the Accept header for manifest requests: indexes and
// manifests, OCI and docker.
var ManifestAccept = strings.Join([]string{oci.MediaTypeOCIIndex, oci.MediaTypeDockerManifestList,
	oci.MediaTypeOCIManifest, oci.MediaTypeDockerManifest}, ", ")

// IsManifestMediaType reports whether mt is a manifest or an index.
func IsManifestMediaType(mt string) bool {
	return oci.IsIndex(mt) || oci.IsManifest(mt) || mt == oci.MediaTypeDockerSchema1 || mt == oci.MediaTypeDockerSchema1JWS
}

// maxManifest bounds a manifest body (the distribution spec's 4 MiB).
const maxManifest = 4 << 20

// DefaultPlatform is the platform picked from an index when none is named.
const DefaultPlatform = "linux/amd64"

// ParsePlatform parses os/arch[/variant] (containerd's platforms syntax);
// "" is DefaultPlatform.
func ParsePlatform(s string) (ocispec.Platform, error) {
	if s == "" {
		s = DefaultPlatform
	}
	p, err := platforms.Parse(s)
	if err == nil && !strings.Contains(s, "/") {
		err = errors.New("no architecture")
	}
	if err != nil {
		return p, fmt.Errorf("platform %q: want os/arch[/variant], e.g. linux/amd64: %w", s, err)
	}
	return p, nil
}

// Image is one platform's image: its manifest and the blobs it names.
type Image struct {
	Ref      Reference
	Manifest ocispec.Descriptor
	Config   ocispec.Descriptor
	Layers   []ocispec.Descriptor
	// Authorization is what the registry accepted for the manifest (the
	// caller's, or a bearer token exchanged for it), for fetching the
	// blobs. Never log it.
	Authorization string
}

// Blobs are the config followed by the layers, without duplicates.
func (im *Image) Blobs() []ocispec.Descriptor {
	seen := map[digest.Digest]bool{}
	var out []ocispec.Descriptor
	for _, d := range append([]ocispec.Descriptor{im.Config}, im.Layers...) {
		if d.Digest == "" || seen[d.Digest] {
			continue
		}
		seen[d.Digest] = true
		out = append(out, d)
	}
	return out
}

// Client fetches manifests for callers that bring their own credentials
// (an Authorization header): a Basic one is exchanged for bearer tokens
// when the registry asks for them, through an Authorizer per credential
// (anonymous callers share one), so tokens are fetched once and reused.
type Client struct {
	HTTP *http.Client
	Log  logrus.FieldLogger

	mu          sync.Mutex
	authorizers map[string]*Authorizer
}

// maxAuthorizers bounds the credentials a Client remembers.
const maxAuthorizers = 1024

// NewClient returns a client sending requests (and token requests)
// through hc.
func NewClient(hc *http.Client, log logrus.FieldLogger) *Client {
	if log == nil {
		log = logrus.StandardLogger()
	}
	return &Client{HTTP: hc, Log: log}
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

// IsStatus reports whether err is a registry StatusError with code.
func IsStatus(err error, code int) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == code
}

// authorizer returns the Authorizer for credential (an Authorization
// value, "" for anonymous). The map holds only a hash of it.
func (c *Client) authorizer(credential string) *Authorizer {
	var creds Credentials
	if v, ok := strings.CutPrefix(credential, "Basic "); ok {
		if dec, err := base64Decode(v); err == nil {
			user, secret, _ := strings.Cut(dec, ":")
			creds = func(string) (string, string) { return user, secret }
		}
	}
	h := sha256.Sum256([]byte(credential))
	key := hex.EncodeToString(h[:])
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.authorizers == nil {
		c.authorizers = map[string]*Authorizer{}
	}
	a, ok := c.authorizers[key]
	if !ok {
		if len(c.authorizers) >= maxAuthorizers {
			for k := range c.authorizers {
				delete(c.authorizers, k)
				break
			}
		}
		a = NewAuthorizer(c.HTTP, creds)
		c.authorizers[key] = a
	}
	return a
}

// Get sends GET rawURL for repository repo with header (the caller's
// credentials) and accept, answering the registry's challenge. It returns
// the response and the Authorization value that was used.
func (c *Client) Get(ctx context.Context, rawURL string, header http.Header, accept, repo string) (*http.Response, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, "", fmt.Errorf("build request for %s: %w", redactedHostPath(rawURL), err)
	}
	for k, vs := range header {
		req.Header[k] = append([]string(nil), vs...)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, auth, err := c.authorizer(header.Get("Authorization")).Do(ctx, c.HTTP, req, repo)
	if err != nil {
		return nil, "", fmt.Errorf("GET %s: %w", redactedHostPath(rawURL), err)
	}
	return resp, auth, nil
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
// known. It returns the body, its descriptor and the Authorization used.
func (c *Client) fetchManifest(ctx context.Context, ref Reference, header http.Header) ([]byte, ocispec.Descriptor, string, error) {
	what := "GET manifest " + ref.String()
	resp, auth, err := c.Get(ctx, ref.ManifestURL(), header, ManifestAccept, ref.Repository)
	if err != nil {
		return nil, ocispec.Descriptor{}, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxManifest+1))
	if err != nil {
		return nil, ocispec.Descriptor{}, "", fmt.Errorf("%s: read body: %w", what, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, ocispec.Descriptor{}, "", &StatusError{Code: resp.StatusCode, What: what, Body: strings.TrimSpace(string(body[:min(len(body), 300)]))}
	}
	if len(body) > maxManifest {
		return nil, ocispec.Descriptor{}, "", fmt.Errorf("%s: manifest larger than %d bytes", what, maxManifest)
	}
	got := digest.FromBytes(body)
	if ref.Digest != "" && got.String() != ref.Digest {
		return nil, ocispec.Descriptor{}, "", fmt.Errorf("%s: manifest has digest %s, want %s", what, got, ref.Digest)
	}
	mt := resp.Header.Get("Content-Type")
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = strings.TrimSpace(mt[:i])
	}
	mt = oci.DetectMediaType(mt, body)
	return body, ocispec.Descriptor{MediaType: mt, Digest: got, Size: int64(len(body))}, auth, nil
}

// Resolve fetches the manifest ref names; for an index (or docker
// manifest list) it picks the entry for platform (containerd's platform
// matching) and fetches that manifest. header carries the caller's
// credentials (Basic or Bearer).
func (c *Client) Resolve(ctx context.Context, ref Reference, header http.Header, platform ocispec.Platform) (*Image, error) {
	if header == nil {
		header = http.Header{}
	}
	header = header.Clone()
	body, desc, auth, err := c.fetchManifest(ctx, ref, header)
	if err != nil {
		return nil, err
	}
	if auth != "" {
		header.Set("Authorization", auth)
	}
	if oci.IsIndex(desc.MediaType) {
		idx, err := oci.ParseIndex(desc.MediaType, body)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
		pick, err := oci.SelectManifest(idx, platform)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
		child := ref
		child.Digest, child.Tag = pick.Digest.String(), ""
		body, desc, auth, err = c.fetchManifest(ctx, child, header)
		if err != nil {
			return nil, err
		}
		if auth != "" {
			header.Set("Authorization", auth)
		}
		if oci.IsIndex(desc.MediaType) {
			return nil, fmt.Errorf("%s: index entry %s is itself an index", ref, pick.Digest)
		}
	}
	if desc.MediaType == oci.MediaTypeDockerSchema1 || desc.MediaType == oci.MediaTypeDockerSchema1JWS {
		return nil, fmt.Errorf("%s: docker schema 1 manifests are not supported", ref)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("%s: manifest is not JSON: %w", ref, err)
	}
	if m.SchemaVersion == 1 {
		return nil, fmt.Errorf("%s: docker schema 1 manifests are not supported", ref)
	}
	if m.Config.Digest == "" {
		return nil, fmt.Errorf("%s: manifest (%s) has no config", ref, desc.MediaType)
	}
	im := &Image{Ref: ref, Manifest: desc, Config: m.Config, Layers: m.Layers, Authorization: header.Get("Authorization")}
	for _, d := range im.Blobs() {
		if err := d.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("%s: bad blob digest %q: %w", ref, d.Digest, err)
		}
	}
	return im, nil
}
