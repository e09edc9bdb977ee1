package snapshotter

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/damselfly-p2p/damselfly/registry"
)

// Registry locates layer blobs and authorizes requests for them: plain
// HTTP or HTTPS per host, mirrors, and the registry's challenge (basic
// credentials, or bearer tokens cached until they expire, one token
// request for concurrent callers), all through package registry.
// Credentials are only ever sent to the registry and its token server.
type Registry struct {
	// PlainHTTP lists hosts (host or host:port) reached over plain HTTP;
	// localhost and 127.0.0.0/8 always are.
	PlainHTTP []string
	// Mirrors maps a registry host to hosts tried instead of it.
	Mirrors map[string][]string
	// Credentials returns basic credentials for a host ("" when none).
	Credentials func(host string) (user, secret string)
	// HTTP is the client for registry and token requests (default: 10s
	// timeout).
	HTTP *http.Client

	once sync.Once
	auth *registry.Authorizer
}

// BlobURL returns the URL of a layer blob of ref and the headers that
// authorize fetching it.
func (r *Registry) BlobURL(ctx context.Context, ref, dgst string) (string, http.Header, error) {
	named, err := registry.ParseReference(ref, false)
	if err != nil {
		return "", nil, err
	}
	host := named.Host
	if ms := r.Mirrors[host]; len(ms) > 0 {
		host = ms[0]
	} else if ms := r.Mirrors[registry.DockerHub]; host == registry.DockerHubHost && len(ms) > 0 {
		host = ms[0]
	}
	scheme := "https"
	if r.plain(host) {
		scheme = "http"
	}
	u := fmt.Sprintf("%s://%s/v2/%s/blobs/%s", scheme, host, named.Repository, dgst)
	h, err := r.authorize(ctx, host, named.Repository, u)
	if err != nil {
		return "", nil, err
	}
	return u, h, nil
}

func (r *Registry) plain(host string) bool { return registry.IsPlainHTTP(host, r.PlainHTTP) }

func (r *Registry) client() *http.Client {
	if r.HTTP != nil {
		return r.HTTP
	}
	return &http.Client{Timeout: 10 * time.Second}
}

// authorize probes the blob and answers the registry's challenge, if any.
func (r *Registry) authorize(ctx context.Context, host, repo, blobURL string) (http.Header, error) {
	r.once.Do(func() { r.auth = registry.NewAuthorizer(r.client(), r.Credentials) })
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, blobURL, nil)
	if err != nil {
		return nil, fmt.Errorf("probe blob at %s: %w", host, err)
	}
	resp, auth, err := r.auth.Do(ctx, r.client(), req, repo)
	if err != nil {
		return nil, fmt.Errorf("authorize at registry %s: %w", host, err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized {
		return nil, fmt.Errorf("registry %s refused the blob probe (401) and no configured credentials answer its challenge", host)
	}
	if auth == "" {
		return http.Header{}, nil
	}
	return http.Header{"Authorization": {auth}}, nil
}
