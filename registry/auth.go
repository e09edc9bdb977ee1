// Package registry owns everything of ours that talks to OCI registries
// (the distribution API): image references (github.com/distribution/reference),
// plain HTTP or HTTPS per host, credentials from docker config files,
// authentication challenges and bearer tokens (containerd's docker
// authorizer: one token request per registry, repository and credential
// at a time, cached until it expires), resolving a tag to the blobs of one
// platform's image, and a containerd resolver for tools that push and
// pull. The registry mirror (package proxy), the supernode's preheat, the
// snapshotter and dfctl all use it; no other package reads a
// WWW-Authenticate header. It stores nothing on disk, serves nothing, and
// never logs credentials or tokens.
package registry

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/containerd/containerd/remotes"
	"github.com/containerd/containerd/remotes/docker"
	"github.com/containerd/containerd/remotes/docker/auth"
	remoteerrors "github.com/containerd/containerd/remotes/errors"
)

// Credentials returns the basic credentials for a registry host ("", ""
// for none).
type Credentials func(host string) (user, secret string)

// NoCredentials is anonymous access everywhere.
func NoCredentials(string) (string, string) { return "", "" }

// DockerConfigCredentials reads basic credentials from a docker-style
// config file (~/.docker/config.json "auths"). A missing file means none.
func DockerConfigCredentials(path string) (Credentials, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return NoCredentials, nil
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
		if !ok && host == DockerHubHost {
			c = creds["index.docker.io"]
		}
		return c[0], c[1]
	}, nil
}

// ErrTokenDenied means the token server refused the credentials (or
// anonymous access).
var ErrTokenDenied = errors.New("token server refused the request")

// ErrNoChallenge means a 401 answer carried no challenge that can be
// answered (no bearer challenge, and no basic one with credentials).
var ErrNoChallenge = errors.New("no challenge that can be answered")

// PullScope is the token scope for pulling from repository repo.
func PullScope(repo string) string { return "repository:" + repo + ":pull" }

// Authorizer answers registries' authentication challenges with one set of
// credentials (or anonymously). It is containerd's docker authorizer, one
// per registry host: the first 401 of a host tells it the realm and
// service, and from then on every request for a repository carries a
// bearer token for that repository, fetched once for concurrent callers
// and reused until it expires. It never logs credentials or tokens.
type Authorizer struct {
	hc    *http.Client
	creds Credentials

	mu    sync.Mutex
	hosts map[string]docker.Authorizer
}

// serialAuthorizer runs one call at a time into containerd's authorizer:
// its token cache (containerd 1.7) reads a token's expiry while the
// goroutine fetching it still writes it, a data race. Token fetches are
// rare and cached tokens are returned at once, so the lock costs little,
// and concurrent callers still share one token request.
type serialAuthorizer struct {
	mu sync.Mutex
	a  docker.Authorizer
}

func (s *serialAuthorizer) Authorize(ctx context.Context, req *http.Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.a.Authorize(ctx, req)
}

func (s *serialAuthorizer) AddResponses(ctx context.Context, resps []*http.Response) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.a.AddResponses(ctx, resps)
}

// NewAuthorizer returns an authorizer that talks to token servers through
// hc (nil: http.DefaultClient) and presents creds (nil: anonymous).
func NewAuthorizer(hc *http.Client, creds Credentials) *Authorizer {
	if hc == nil {
		hc = http.DefaultClient
	}
	if creds == nil {
		creds = NoCredentials
	}
	return &Authorizer{hc: hc, creds: creds, hosts: map[string]docker.Authorizer{}}
}

func (a *Authorizer) host(host string, create bool) docker.Authorizer {
	a.mu.Lock()
	defer a.mu.Unlock()
	h, ok := a.hosts[host]
	if !ok && create {
		h = &serialAuthorizer{a: docker.NewDockerAuthorizer(docker.WithAuthClient(a.hc), docker.WithAuthCreds(func(host string) (string, string, error) {
			u, s := a.creds(host)
			return u, s, nil
		}))}
		a.hosts[host] = h
	}
	return h
}

// Known reports whether host's challenge is known.
func (a *Authorizer) Known(host string) bool { return a.host(host, false) != nil }

// Reset forgets host's challenge and tokens (the registry refused a token
// before its time, or a token request failed).
func (a *Authorizer) Reset(host string) {
	a.mu.Lock()
	delete(a.hosts, host)
	a.mu.Unlock()
}

// Authorize sets req's Authorization for pulling from repo ("" for
// requests of no repository) when the challenge of req's host is known:
// a cached token, or one fetched now. It reports whether it set one. A
// token server's refusal is ErrTokenDenied.
func (a *Authorizer) Authorize(ctx context.Context, req *http.Request, repo string) (bool, error) {
	h := a.host(req.URL.Host, false)
	if h == nil {
		return false, nil
	}
	if repo != "" {
		ctx = docker.WithScope(ctx, PullScope(repo))
	}
	req.Header.Del("Authorization")
	if err := h.Authorize(ctx, req); err != nil {
		// containerd keeps a failed token request as the answer for that
		// scope: start over next time.
		a.Reset(req.URL.Host)
		var st remoteerrors.ErrUnexpectedStatus
		if errors.As(err, &st) && (st.StatusCode == http.StatusUnauthorized || st.StatusCode == http.StatusForbidden) {
			return false, fmt.Errorf("authorize for %s: %w: %s", req.URL.Host, ErrTokenDenied, st.Status)
		}
		return false, fmt.Errorf("authorize for %s: %w", req.URL.Host, err)
	}
	return req.Header.Get("Authorization") != "", nil
}

// AddChallenge learns the challenge of resp, a 401 answer. Only the realm
// and service of a bearer challenge are kept (the scope comes with each
// request), so one host's challenge serves all its repositories. It
// returns ErrNoChallenge when there is nothing to answer.
func (a *Authorizer) AddChallenge(ctx context.Context, resp *http.Response) error {
	if resp.Request == nil {
		return fmt.Errorf("add challenge: response without its request")
	}
	host := resp.Request.URL.Host
	for _, c := range auth.ParseAuthHeader(resp.Header) {
		switch {
		case c.Scheme == auth.BearerAuth && c.Parameters["realm"] != "":
			if a.Known(host) {
				return nil
			}
			v := fmt.Sprintf("Bearer realm=%q", c.Parameters["realm"])
			if s := c.Parameters["service"]; s != "" {
				v += fmt.Sprintf(",service=%q", s)
			}
			r := &http.Response{StatusCode: resp.StatusCode, Header: http.Header{"Www-Authenticate": {v}}, Request: resp.Request}
			if err := a.host(host, true).AddResponses(ctx, []*http.Response{r}); err != nil {
				a.Reset(host)
				return fmt.Errorf("challenge of %s: %w", host, err)
			}
			return nil
		case c.Scheme == auth.BasicAuth:
			if u, s := a.creds(host); u == "" || s == "" {
				continue
			}
			if err := a.host(host, true).AddResponses(ctx, []*http.Response{resp}); err != nil {
				a.Reset(host)
				return fmt.Errorf("challenge of %s: %w", host, err)
			}
			return nil
		}
	}
	return fmt.Errorf("%s answered 401: %w", host, ErrNoChallenge)
}

// Do sends req (a GET or HEAD of repo) through hc, answering the
// registry's challenge: a known challenge's token goes with the first
// attempt, and a 401 is answered (once) and the request sent again. A
// Bearer Authorization already on req is sent as it is. It returns the
// response and the Authorization that went with it.
func (a *Authorizer) Do(ctx context.Context, hc *http.Client, req *http.Request, repo string) (*http.Response, string, error) {
	if strings.HasPrefix(strings.ToLower(req.Header.Get("Authorization")), "bearer ") {
		resp, err := hc.Do(req)
		return resp, req.Header.Get("Authorization"), err
	}
	orig := req.Header.Get("Authorization")
	authorized, err := a.Authorize(ctx, req, repo)
	if err != nil {
		return nil, "", err
	}
	if !authorized && orig != "" {
		req.Header.Set("Authorization", orig)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != http.StatusUnauthorized {
		return resp, req.Header.Get("Authorization"), nil
	}
	if authorized {
		// Refused before its time (registry restarted, key rotated).
		a.Reset(req.URL.Host)
	}
	if err := a.AddChallenge(ctx, resp); err != nil {
		if errors.Is(err, ErrNoChallenge) {
			return resp, req.Header.Get("Authorization"), nil
		}
		drain(resp)
		return nil, "", err
	}
	drain(resp)
	retry := req.Clone(ctx)
	if _, err := a.Authorize(ctx, retry, repo); err != nil {
		return nil, "", err
	}
	resp, err = hc.Do(retry)
	if err != nil {
		return nil, "", err
	}
	return resp, retry.Header.Get("Authorization"), nil
}

// Resolver returns a containerd resolver (for pulling and pushing with
// containerd's remotes) that reaches hosts over plain HTTP per
// IsPlainHTTP(host, plainHTTP) and answers challenges with creds.
func Resolver(hc *http.Client, plainHTTP []string, creds Credentials) remotes.Resolver {
	if creds == nil {
		creds = NoCredentials
	}
	authz := docker.NewDockerAuthorizer(docker.WithAuthClient(hc), docker.WithAuthCreds(func(host string) (string, string, error) {
		u, p := creds(host)
		return u, p, nil
	}))
	hosts := docker.ConfigureDefaultRegistries(
		docker.WithClient(hc),
		docker.WithAuthorizer(authz),
		docker.WithPlainHTTP(func(host string) (bool, error) { return IsPlainHTTP(host, plainHTTP), nil }),
	)
	return docker.NewResolver(docker.ResolverOptions{Hosts: hosts})
}

func base64Decode(s string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	return string(b), err
}
