package snapshotter

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/reference/docker"
	"golang.org/x/sync/singleflight"
)

// Registry locates layer blobs and authorizes requests for them: plain
// HTTP or HTTPS per host, mirrors, basic credentials and the bearer-token
// challenge flow. Tokens are cached until shortly before they expire, and
// concurrent requests for one token share one round trip to the token
// server. Credentials are only ever sent to the registry and its token
// server.
type Registry struct {
	// PlainHTTP lists hosts (host or host:port) reached over plain HTTP;
	// localhost and 127.0.0.0/8 always are.
	PlainHTTP []string
	// Mirrors maps a registry host to hosts tried instead of it.
	Mirrors map[string][]string
	// Credentials returns basic credentials for a host ("" when none).
	Credentials func(host string) (user, secret string)
	// HTTP is the client for auth round trips (default: 10s timeout).
	HTTP *http.Client

	flight singleflight.Group
	mu     sync.Mutex
	tokens map[string]token
}

type token struct {
	value   string
	expires time.Time
}

// BlobURL returns the URL of a layer blob of ref and the headers that
// authorize fetching it.
func (r *Registry) BlobURL(ctx context.Context, ref, dgst string) (string, http.Header, error) {
	named, err := docker.ParseDockerRef(ref)
	if err != nil {
		return "", nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	host, repo := docker.Domain(named), docker.Path(named)
	if host == "docker.io" {
		host = "registry-1.docker.io"
	}
	if ms := r.Mirrors[host]; len(ms) > 0 {
		host = ms[0]
	}
	scheme := "https"
	if r.plain(host) {
		scheme = "http"
	}
	u := fmt.Sprintf("%s://%s/v2/%s/blobs/%s", scheme, host, repo, dgst)
	h, err := r.authorize(ctx, host, repo, u)
	if err != nil {
		return "", nil, err
	}
	return u, h, nil
}

func (r *Registry) plain(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	if h == "localhost" {
		return true
	}
	if ip := net.ParseIP(h); ip != nil && ip.IsLoopback() {
		return true
	}
	for _, p := range r.PlainHTTP {
		if p == host || p == h {
			return true
		}
	}
	return false
}

func (r *Registry) client() *http.Client {
	if r.HTTP != nil {
		return r.HTTP
	}
	return &http.Client{Timeout: 10 * time.Second}
}

// authorize probes the blob without credentials and answers the
// registry's challenge, if any.
func (r *Registry) authorize(ctx context.Context, host, repo, blobURL string) (http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, blobURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := r.client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("reach registry %s: %w", host, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		return http.Header{}, nil
	}
	user, secret := "", ""
	if r.Credentials != nil {
		user, secret = r.Credentials(host)
	}
	scheme, params := parseChallenge(resp.Header.Get("WWW-Authenticate"))
	switch strings.ToLower(scheme) {
	case "basic":
		if user == "" {
			return nil, fmt.Errorf("registry %s wants basic credentials and none are configured", host)
		}
		return http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+secret))}}, nil
	case "bearer":
		scope := params["scope"]
		if scope == "" {
			scope = "repository:" + repo + ":pull"
		}
		tok, err := r.token(ctx, params["realm"], params["service"], scope, user, secret)
		if err != nil {
			return nil, err
		}
		return http.Header{"Authorization": {"Bearer " + tok}}, nil
	default:
		return nil, fmt.Errorf("registry %s: unsupported auth challenge %q", host, scheme)
	}
}

// token fetches (or reuses) a bearer token.
func (r *Registry) token(ctx context.Context, realm, service, scope, user, secret string) (string, error) {
	if realm == "" {
		return "", fmt.Errorf("bearer challenge without a realm")
	}
	key := realm + "\x00" + service + "\x00" + scope + "\x00" + user
	r.mu.Lock()
	if t, ok := r.tokens[key]; ok && time.Now().Before(t.expires) {
		r.mu.Unlock()
		return t.value, nil
	}
	r.mu.Unlock()
	v, err, _ := r.flight.Do(key, func() (any, error) {
		u, err := url.Parse(realm)
		if err != nil {
			return nil, fmt.Errorf("token realm %q: %w", realm, err)
		}
		q := u.Query()
		if service != "" {
			q.Set("service", service)
		}
		q.Set("scope", scope)
		u.RawQuery = q.Encode()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, err
		}
		if user != "" {
			req.SetBasicAuth(user, secret)
		}
		resp, err := r.client().Do(req)
		if err != nil {
			return nil, fmt.Errorf("token server %s: %w", u.Host, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("token server %s answered %s", u.Host, resp.Status)
		}
		var body struct {
			Token       string `json:"token"`
			AccessToken string `json:"access_token"`
			ExpiresIn   int    `json:"expires_in"`
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
			return nil, fmt.Errorf("token server %s: %w", u.Host, err)
		}
		tok := body.Token
		if tok == "" {
			tok = body.AccessToken
		}
		if tok == "" {
			return nil, fmt.Errorf("token server %s sent no token", u.Host)
		}
		life := time.Duration(body.ExpiresIn) * time.Second
		if life <= 0 {
			life = 60 * time.Second
		}
		r.mu.Lock()
		if r.tokens == nil {
			r.tokens = map[string]token{}
		}
		r.tokens[key] = token{tok, time.Now().Add(life * 9 / 10)}
		r.mu.Unlock()
		return tok, nil
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

// parseChallenge splits `Bearer realm="…",service="…",scope="…"`.
func parseChallenge(h string) (string, map[string]string) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	params := map[string]string{}
	for rest != "" {
		var kv string
		// Values are quoted and may contain commas.
		k, after, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		k = strings.TrimSpace(strings.TrimLeft(k, ", "))
		after = strings.TrimSpace(after)
		if strings.HasPrefix(after, `"`) {
			end := strings.Index(after[1:], `"`)
			if end < 0 {
				kv, rest = after[1:], ""
			} else {
				kv, rest = after[1:end+1], after[end+2:]
			}
		} else {
			kv, rest, _ = strings.Cut(after, ",")
		}
		params[strings.ToLower(k)] = kv
	}
	return scheme, params
}

// DockerConfigCredentials reads basic credentials from a docker-style
// config file (~/.docker/config.json "auths"). A missing file means none.
func DockerConfigCredentials(path string) (func(host string) (string, string), error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return func(string) (string, string) { return "", "" }, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read docker config: %w", err)
	}
	var cfg struct {
		Auths map[string]struct {
			Auth     string `json:"auth"`
			Username string `json:"username"`
			Password string `json:"password"`
		} `json:"auths"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("parse docker config %s: %w", path, err)
	}
	creds := map[string][2]string{}
	for host, a := range cfg.Auths {
		h := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(host, "https://"), "http://"), "/")
		h, _, _ = strings.Cut(h, "/")
		user, pass := a.Username, a.Password
		if a.Auth != "" {
			if dec, err := base64.StdEncoding.DecodeString(a.Auth); err == nil {
				user, pass, _ = strings.Cut(string(dec), ":")
			}
		}
		creds[h] = [2]string{user, pass}
	}
	return func(host string) (string, string) {
		c, ok := creds[host]
		if !ok && host == "registry-1.docker.io" {
			c = creds["index.docker.io"]
		}
		return c[0], c[1]
	}, nil
}
