// Package registry owns the client side of the OCI distribution API that
// the registry mirror (package proxy) and the supernode's preheat share:
// WWW-Authenticate challenges, bearer tokens (one token request per realm,
// service, scope and credential at a time, cached until it expires), image
// references, and resolving a tag to the blobs of one platform's image. It
// stores nothing on disk, serves nothing, and never logs credentials or
// tokens.
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
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sync/singleflight"
)

// Challenge is one WWW-Authenticate challenge, e.g.
// Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull".
type Challenge struct {
	// Scheme is lower-cased ("bearer", "basic").
	Scheme string
	// Params has lower-cased keys.
	Params map[string]string
}

// Realm, Service and Scope are the bearer parameters.
func (c Challenge) Realm() string   { return c.Params["realm"] }
func (c Challenge) Service() string { return c.Params["service"] }
func (c Challenge) Scope() string   { return c.Params["scope"] }

// IsBearer reports whether c is a bearer challenge with a realm.
func (c Challenge) IsBearer() bool { return c.Scheme == "bearer" && c.Realm() != "" }

// WithScope returns a copy of c asking for scope.
func (c Challenge) WithScope(scope string) Challenge {
	p := make(map[string]string, len(c.Params)+1)
	for k, v := range c.Params {
		p[k] = v
	}
	p["scope"] = scope
	delete(p, "error")
	return Challenge{Scheme: c.Scheme, Params: p}
}

// ParseChallenges parses every WWW-Authenticate header of h. Malformed
// parts are skipped.
func ParseChallenges(h http.Header) []Challenge {
	var out []Challenge
	for _, v := range h.Values("WWW-Authenticate") {
		out = append(out, parseChallengeList(v)...)
	}
	return out
}

// BearerChallenge returns the first bearer challenge of h.
func BearerChallenge(h http.Header) (Challenge, bool) {
	for _, c := range ParseChallenges(h) {
		if c.IsBearer() {
			return c, true
		}
	}
	return Challenge{}, false
}

// parseChallengeList parses `Scheme k=v, k="v", Scheme2 ...` (RFC 7235).
func parseChallengeList(s string) []Challenge {
	var out []Challenge
	var cur *Challenge
	for {
		s = strings.TrimLeft(s, " \t,")
		if s == "" {
			break
		}
		tok, rest := cutToken(s)
		if tok == "" {
			break // garbage: stop
		}
		r := strings.TrimLeft(rest, " \t")
		if strings.HasPrefix(r, "=") && cur != nil {
			// auth-param
			r = strings.TrimLeft(r[1:], " \t")
			var val string
			if strings.HasPrefix(r, `"`) {
				val, r = cutQuoted(r)
			} else {
				val, r = cutToken(r)
			}
			cur.Params[strings.ToLower(tok)] = val
			s = r
			continue
		}
		out = append(out, Challenge{Scheme: strings.ToLower(tok), Params: map[string]string{}})
		cur = &out[len(out)-1]
		s = rest
	}
	return out
}

func cutToken(s string) (tok, rest string) {
	i := 0
	for i < len(s) && !strings.ContainsRune(" \t,=\"", rune(s[i])) {
		i++
	}
	return s[:i], s[i:]
}

func cutQuoted(s string) (val, rest string) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case '"':
			return b.String(), s[i+1:]
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String(), ""
}

// ErrTokenDenied means the token server refused the credentials (or
// anonymous access).
var ErrTokenDenied = errors.New("token server refused the request")

// Tokens fetches and caches bearer tokens. Concurrent requests for the
// same realm, service, scope and credential share one token request, and
// a token is reused until shortly before it expires: a thousand layers
// pulled at once cost the token server one request.
type Tokens struct {
	hc  *http.Client
	log logrus.FieldLogger
	now func() time.Time

	flights singleflight.Group
	fetches atomic.Int64

	mu    sync.Mutex
	cache map[string]cachedToken
}

type cachedToken struct {
	token   string
	expires time.Time
}

// maxCachedTokens bounds the cache; expired entries go first.
const maxCachedTokens = 4096

// NewTokens returns a token cache that talks to token servers through hc
// (nil: a client with a 30s timeout).
func NewTokens(hc *http.Client, log logrus.FieldLogger) *Tokens {
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	if log == nil {
		log = logrus.StandardLogger()
	}
	return &Tokens{hc: hc, log: log, now: time.Now, cache: map[string]cachedToken{}}
}

// Fetches is how many token requests went to token servers.
func (t *Tokens) Fetches() int64 { return t.fetches.Load() }

// key identifies a token: the credential takes part only as a hash, so
// two users never share a token and the map holds no secret.
func tokenKey(c Challenge, credential string) string {
	h := sha256.Sum256([]byte(credential))
	return strings.Join([]string{c.Realm(), c.Service(), c.Scope(), hex.EncodeToString(h[:8])}, "\x00")
}

// Cached returns a cached, unexpired token for c and credential.
func (t *Tokens) Cached(c Challenge, credential string) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ct, ok := t.cache[tokenKey(c, credential)]
	if !ok || !t.now().Before(ct.expires) {
		return "", false
	}
	return ct.token, true
}

// Forget drops the cached token for c and credential (the registry
// refused it before its time).
func (t *Tokens) Forget(c Challenge, credential string) {
	t.mu.Lock()
	delete(t.cache, tokenKey(c, credential))
	t.mu.Unlock()
}

// Token returns a bearer token for challenge c, fetching one if none is
// cached. credential is an Authorization value to present to the token
// server ("Basic ..."), or "" for anonymous access.
func (t *Tokens) Token(ctx context.Context, c Challenge, credential string) (string, error) {
	if !c.IsBearer() {
		return "", fmt.Errorf("not a bearer challenge (scheme %q)", c.Scheme)
	}
	if tok, ok := t.Cached(c, credential); ok {
		return tok, nil
	}
	key := tokenKey(c, credential)
	ch := t.flights.DoChan(key, func() (any, error) {
		if tok, ok := t.Cached(c, credential); ok {
			return tok, nil
		}
		// Detached from the first caller: others share this request.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		tok, ttl, err := t.fetch(fctx, c, credential)
		if err != nil {
			return "", err
		}
		t.store(key, tok, ttl)
		return tok, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return "", r.Err
		}
		return r.Val.(string), nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (t *Tokens) store(key, tok string, ttl time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if len(t.cache) >= maxCachedTokens {
		for k, v := range t.cache {
			if !now.Before(v.expires) {
				delete(t.cache, k)
			}
		}
		for k := range t.cache {
			if len(t.cache) < maxCachedTokens {
				break
			}
			delete(t.cache, k)
		}
	}
	// Renew a little early so that a request never carries a token that
	// expires on its way.
	margin := min(ttl/10, 30*time.Second)
	t.cache[key] = cachedToken{token: tok, expires: now.Add(ttl - margin)}
}

type tokenResponse struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
}

// fetch asks the token server (GET realm?service=&scope=) for a token.
func (t *Tokens) fetch(ctx context.Context, c Challenge, credential string) (string, time.Duration, error) {
	u, err := url.Parse(c.Realm())
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", 0, fmt.Errorf("token realm %q is not an http(s) URL", c.Realm())
	}
	q := u.Query()
	if s := c.Service(); s != "" {
		q.Set("service", s)
	}
	scopes := strings.Fields(c.Scope())
	sort.Strings(scopes)
	for _, s := range scopes {
		q.Add("scope", s)
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", 0, fmt.Errorf("token request: %w", err)
	}
	if credential != "" {
		req.Header.Set("Authorization", credential)
	}
	t.fetches.Add(1)
	log := t.log.WithFields(logrus.Fields{"realm": u.Host + u.Path, "service": c.Service(), "scope": c.Scope(),
		"anonymous": credential == ""})
	start := time.Now()
	resp, err := t.hc.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("token server %s: %w", u.Host, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", 0, fmt.Errorf("token server %s: read answer: %w", u.Host, err)
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		log.WithField("status", resp.StatusCode).Info("registry auth: token server refused")
		return "", 0, fmt.Errorf("%w: %s answered %s", ErrTokenDenied, u.Host, resp.Status)
	}
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("token server %s answered %s", u.Host, resp.Status)
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		return "", 0, fmt.Errorf("token server %s: bad JSON answer: %w", u.Host, err)
	}
	tok := tr.Token
	if tok == "" {
		tok = tr.AccessToken
	}
	if tok == "" {
		return "", 0, fmt.Errorf("token server %s answered without a token", u.Host)
	}
	// The distribution spec: at least 60s when the server does not say.
	ttl := 60 * time.Second
	if tr.ExpiresIn > 0 {
		ttl = time.Duration(tr.ExpiresIn) * time.Second
	}
	log.WithFields(logrus.Fields{"expiresIn": ttl, "took": time.Since(start).Round(time.Millisecond)}).Debug("registry auth: got token")
	return tok, ttl, nil
}
