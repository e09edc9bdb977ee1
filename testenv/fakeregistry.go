package testenv

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/damselfly-p2p/damselfly/meter"
)

// FakeAuth is how a FakeRegistry authenticates /v2/ requests.
type FakeAuth struct {
	// Scheme is "" (no auth), "bearer" (tokens from the registry's own
	// /token endpoint) or "basic".
	Scheme string
	// Users are the basic credentials (user -> password) accepted by basic
	// auth or by the token endpoint.
	Users map[string]string
	// Anonymous lets the token endpoint hand out tokens without
	// credentials.
	Anonymous bool
	// Token is the bearer token handed out and accepted (default
	// "fake-token-1"); RotateToken replaces it.
	Token string
	// ExpiresIn is the tokens' lifetime in seconds (default 300).
	ExpiresIn int
	// Scope names the repository's pull scope in challenges.
	Scope bool
	// TokenDelay holds each token request, so that concurrent requests
	// overlap.
	TokenDelay time.Duration
}

// FakeRegistry is an in-process OCI registry (httptest): manifests and
// blobs, optional basic or bearer auth with a token endpoint at /token
// (GET with Basic credentials or anonymous; OAuth POST), and counters of
// what it served. Blobs are shared by all repositories.
type FakeRegistry struct {
	// URL is http://Host.
	URL, Host string
	srv       *httptest.Server

	mu        sync.Mutex
	auth      FakeAuth
	manifests map[string]fakeDoc // "repo:ref" -> document
	blobs     map[digest.Digest][]byte
	requests  []string
	auths     []string
	blobAuth  []string
	blobGets  map[digest.Digest]int
	scopes    []string

	tokenRequests atomic.Int64
	blobBytes     atomic.Int64
}

type fakeDoc struct {
	mediaType string
	body      []byte
}

var fakeV2Path = regexp.MustCompile(`^/v2/(.+)/(manifests|blobs)/([^/]+)$`)

// NewFakeRegistry starts a fake registry, closed at the end of the test.
func NewFakeRegistry(t TB, auth FakeAuth) *FakeRegistry {
	t.Helper()
	if auth.Token == "" {
		auth.Token = "fake-token-1"
	}
	if auth.ExpiresIn == 0 {
		auth.ExpiresIn = 300
	}
	f := &FakeRegistry{auth: auth, manifests: map[string]fakeDoc{}, blobs: map[digest.Digest][]byte{},
		blobGets: map[digest.Digest]int{}}
	f.srv = httptest.NewServer(f)
	t.Cleanup(f.srv.Close)
	f.URL = f.srv.URL
	f.Host = strings.TrimPrefix(f.srv.URL, "http://")
	return f
}

// Client is an HTTP client for the registry.
func (f *FakeRegistry) Client() *http.Client { return f.srv.Client() }

// AddBlob stores data and returns its digest.
func (f *FakeRegistry) AddBlob(data []byte) digest.Digest {
	d := digest.FromBytes(data)
	f.mu.Lock()
	f.blobs[d] = data
	f.mu.Unlock()
	return d
}

// AddRandomBlob stores size random bytes.
func (f *FakeRegistry) AddRandomBlob(size int) (digest.Digest, []byte) {
	b := make([]byte, size)
	rand.Read(b)
	return f.AddBlob(b), b
}

// PutBlobAt stores data under digest d even if it does not match.
func (f *FakeRegistry) PutBlobAt(d digest.Digest, data []byte) {
	f.mu.Lock()
	f.blobs[d] = data
	f.mu.Unlock()
}

// AddManifest stores a manifest or index document of media type mt in
// repo under its digest and each of tags, and returns its descriptor
// (media type, digest, size).
func (f *FakeRegistry) AddManifest(repo, mt string, doc any, tags ...string) FakeDescriptor {
	body, ok := doc.([]byte)
	if !ok {
		var err error
		if body, err = json.Marshal(doc); err != nil {
			panic(fmt.Sprintf("fake registry: marshal manifest: %v", err))
		}
	}
	d := digest.FromBytes(body)
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ref := range append([]string{d.String()}, tags...) {
		f.manifests[repo+":"+ref] = fakeDoc{mt, body}
	}
	return FakeDescriptor{MediaType: mt, Digest: d, Size: int64(len(body))}
}

// FakeDescriptor is a descriptor as manifests carry it.
type FakeDescriptor struct {
	MediaType string            `json:"mediaType"`
	Digest    digest.Digest     `json:"digest"`
	Size      int64             `json:"size"`
	Platform  map[string]string `json:"platform,omitempty"`
}

// AddImage stores a one-layer OCI image (random config and layer) under
// repo:tag and returns the layer and the manifest's digest.
func (f *FakeRegistry) AddImage(repo, tag string, layerSize int) (layer digest.Digest, data []byte, manifest digest.Digest) {
	layer, data = f.AddRandomBlob(layerSize)
	cfg, _ := f.AddRandomBlob(200)
	m := map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": FakeDescriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: cfg, Size: 200},
		"layers": []FakeDescriptor{{MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", Digest: layer, Size: int64(layerSize)}}}
	return layer, data, f.AddManifest(repo, "application/vnd.oci.image.manifest.v1+json", m, tag).Digest
}

// RotateToken makes the registry hand out and accept only tok.
func (f *FakeRegistry) RotateToken(tok string) {
	f.mu.Lock()
	f.auth.Token = tok
	f.mu.Unlock()
}

// Token is the bearer token the registry accepts.
func (f *FakeRegistry) Token() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.auth.Token
}

// TokenRequests counts requests to the token endpoint.
func (f *FakeRegistry) TokenRequests() int64 { return f.tokenRequests.Load() }

// TokenScopes are the scopes token requests asked for, in order.
func (f *FakeRegistry) TokenScopes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.scopes...)
}

// BlobBytes counts blob body bytes sent.
func (f *FakeRegistry) BlobBytes() int64 { return f.blobBytes.Load() }

// BlobGets counts GETs of blob d (all blobs when d is "").
func (f *FakeRegistry) BlobGets(d digest.Digest) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d != "" {
		return f.blobGets[d]
	}
	n := 0
	for _, c := range f.blobGets {
		n += c
	}
	return n
}

// BlobAuth is the Authorization of each blob GET that was served.
func (f *FakeRegistry) BlobAuth() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.blobAuth...)
}

// Authorizations are the Authorization of every /v2/ request, in order
// (never log them).
func (f *FakeRegistry) Authorizations() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.auths...)
}

// Requests are "METHOD /request-uri" of every /v2/ request, in order.
func (f *FakeRegistry) Requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

func (f *FakeRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/token" {
		f.serveToken(w, r)
		return
	}
	f.mu.Lock()
	f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
	f.auths = append(f.auths, r.Header.Get("Authorization"))
	a := f.auth
	f.mu.Unlock()
	m := fakeV2Path.FindStringSubmatch(r.URL.Path)
	if !f.authorized(a, r) {
		f.challenge(w, a, m)
		return
	}
	w.Header().Set("Docker-Distribution-Api-Version", "registry/2.0")
	if r.URL.Path == "/v2/" {
		io.WriteString(w, "{}")
		return
	}
	if m == nil {
		http.NotFound(w, r)
		return
	}
	repo, kind, ref := m[1], m[2], m[3]
	f.mu.Lock()
	doc, haveDoc := f.manifests[repo+":"+ref]
	blob, haveBlob := f.blobs[digest.Digest(ref)]
	if kind == "blobs" && haveBlob && r.Method == http.MethodGet {
		f.blobGets[digest.Digest(ref)]++
		f.blobAuth = append(f.blobAuth, r.Header.Get("Authorization"))
	}
	f.mu.Unlock()
	switch {
	case kind == "manifests" && haveDoc:
		w.Header().Set("Content-Type", doc.mediaType)
		w.Header().Set("Docker-Content-Digest", digest.FromBytes(doc.body).String())
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(doc.body))
	case kind == "manifests":
		http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN"}]}`, http.StatusNotFound)
	case haveBlob:
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Docker-Content-Digest", ref)
		w.Header().Set("Etag", `"`+ref+`"`)
		http.ServeContent(countingResponse{w, meter.NewWriter(w, &f.blobBytes)}, r, "", time.Time{}, bytes.NewReader(blob))
	default:
		http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN"}]}`, http.StatusNotFound)
	}
}

type countingResponse struct {
	http.ResponseWriter
	w io.Writer
}

func (c countingResponse) Write(b []byte) (int, error) { return c.w.Write(b) }

func (f *FakeRegistry) authorized(a FakeAuth, r *http.Request) bool {
	switch a.Scheme {
	case "bearer":
		return r.Header.Get("Authorization") == "Bearer "+a.Token
	case "basic":
		u, p, ok := r.BasicAuth()
		return ok && a.Users[u] == p && p != ""
	}
	return true
}

func (f *FakeRegistry) challenge(w http.ResponseWriter, a FakeAuth, m []string) {
	if a.Scheme == "basic" {
		w.Header().Set("WWW-Authenticate", `Basic realm="fake"`)
	} else {
		v := fmt.Sprintf(`Bearer realm="%s/token",service="fake"`, f.URL)
		if a.Scope && m != nil {
			v += fmt.Sprintf(`,scope="repository:%s:pull"`, m[1])
		}
		w.Header().Set("WWW-Authenticate", v)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
}

// serveToken is the token endpoint: GET (Basic credentials or anonymous)
// and OAuth POST (grant_type=password).
func (f *FakeRegistry) serveToken(w http.ResponseWriter, r *http.Request) {
	f.tokenRequests.Add(1)
	f.mu.Lock()
	a := f.auth
	f.mu.Unlock()
	if a.TokenDelay > 0 {
		time.Sleep(a.TokenDelay)
	}
	var user, pass, scope string
	var has bool
	switch r.Method {
	case http.MethodGet:
		user, pass, has = r.BasicAuth()
		scope = strings.Join(r.URL.Query()["scope"], " ")
	case http.MethodPost:
		if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "password" {
			http.Error(w, "unsupported grant", http.StatusBadRequest)
			return
		}
		user, pass, has = r.PostForm.Get("username"), r.PostForm.Get("password"), true
		scope = r.PostForm.Get("scope")
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	f.mu.Lock()
	f.scopes = append(f.scopes, scope)
	f.mu.Unlock()
	ok := a.Anonymous && !has
	if has {
		ok = pass != "" && a.Users[user] == pass
	}
	if !ok {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"token": a.Token, "access_token": a.Token, "expires_in": a.ExpiresIn})
}
