package trust

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// CodeUnauthorized is the error code of every 401 answer written here.
const CodeUnauthorized = "unauthorized"

// unauthorizedMessage is the one message of every refusal: it does not say
// whether the credential was missing, expired, forged or for something else.
const unauthorizedMessage = "missing or invalid credentials"

// BearerToken returns the token of the request's "Authorization: Bearer"
// header. It reports false when there is no such header, when there are
// several Authorization headers, or when the token is empty.
func BearerToken(r *http.Request) (string, bool) {
	vals := r.Header.Values("Authorization")
	if len(vals) != 1 {
		return "", false
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return "", false
	}
	return token, true
}

// Unauthorized writes the 401 answer used by every middleware here:
// "WWW-Authenticate: Bearer" and the JSON body
// {"code":"unauthorized","message":"missing or invalid credentials"}. Handlers
// that refuse a request after their own checks (e.g. a body naming another
// peer than the credential) should answer with it too.
func Unauthorized(w http.ResponseWriter) {
	h := w.Header()
	h.Set("WWW-Authenticate", "Bearer")
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusUnauthorized)
	json.NewEncoder(w).Encode(struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{CodeUnauthorized, unauthorizedMessage})
}

// Require returns middleware that passes a request on only when it carries a
// bearer token and check accepts it; otherwise it answers with Unauthorized.
// The reason check gives is not sent to the client.
func Require(check func(r *http.Request, token string) error) func(http.Handler) http.Handler {
	return requireCtx(func(r *http.Request, token string) (context.Context, error) {
		return r.Context(), check(r, token)
	})
}

// RequireSecret returns middleware that admits only requests bearing s itself
// (the admin token, a webhook's token). An absent s admits nothing.
func RequireSecret(s Secret) func(http.Handler) http.Handler {
	return Require(func(_ *http.Request, token string) error {
		if !s.Matches(token) {
			return ErrBadSignature
		}
		return nil
	})
}

// RequirePeer returns middleware that admits only requests bearing a valid
// KindPeer credential and puts its Claims in the request context (see
// ClaimsFromContext). The handler must still check that the peer the request
// names is Claims.PeerID, and answer Unauthorized if not.
func RequirePeer(v Issuer) func(http.Handler) http.Handler {
	return requireCtx(func(r *http.Request, token string) (context.Context, error) {
		c, err := v.Verify(token)
		if err != nil {
			return nil, err
		}
		if c.Kind != KindPeer {
			return nil, ErrWrongKind
		}
		return context.WithValue(r.Context(), claimsKey{}, c), nil
	})
}

// RequireTask returns middleware for upload servers: it admits only requests
// bearing a valid KindTask credential for the task taskID extracts from the
// request (e.g. from its path), and puts its Claims in the request context.
// A request for which taskID returns "" is refused.
func RequireTask(v Issuer, taskID func(*http.Request) string) func(http.Handler) http.Handler {
	return requireCtx(func(r *http.Request, token string) (context.Context, error) {
		id := taskID(r)
		if id == "" {
			return nil, ErrWrongTask
		}
		c, err := v.VerifyTask(token, id)
		if err != nil {
			return nil, err
		}
		return context.WithValue(r.Context(), claimsKey{}, c), nil
	})
}

type claimsKey struct{}

// ClaimsFromContext returns the Claims RequirePeer or RequireTask verified.
func ClaimsFromContext(ctx context.Context) (Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(Claims)
	return c, ok
}

func requireCtx(check func(r *http.Request, token string) (context.Context, error)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			token, ok := BearerToken(r)
			if !ok {
				Unauthorized(w)
				return
			}
			ctx, err := check(r, token)
			if err != nil {
				Unauthorized(w)
				return
			}
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// WithBearer wraps base (nil means http.DefaultTransport) so that requests
// carry "Authorization: Bearer <s>". See WithBearerFunc for when the header is
// added.
func WithBearer(base http.RoundTripper, s Secret) http.RoundTripper {
	return WithBearerFunc(base, func() (string, error) {
		if s.IsZero() {
			return "", fmt.Errorf("bearer token: %w", ErrNoSecret)
		}
		return s.Reveal(), nil
	})
}

// WithBearerFunc wraps base (nil means http.DefaultTransport) so that
// requests carry "Authorization: Bearer <token()>", token being called per
// request (so a refreshed peer credential is picked up). The header is added
// only to requests the caller made and to redirects that stay on the same
// scheme and host as the caller's request, never to a redirect elsewhere.
// A request that already has an Authorization header is sent unchanged.
func WithBearerFunc(base http.RoundTripper, token func() (string, error)) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &bearerTransport{base: base, token: token}
}

type bearerTransport struct {
	base  http.RoundTripper
	token func() (string, error)
}

func (t *bearerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("Authorization") != "" || !sameOriginAsFirst(req) {
		return t.base.RoundTrip(req)
	}
	tok, err := t.token()
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("attach credential to %s %s: %w", req.Method, req.URL.Redacted(), err)
	}
	r2 := req.Clone(req.Context())
	r2.Header.Set("Authorization", "Bearer "+tok)
	return t.base.RoundTrip(r2)
}

// CloseIdleConnections forwards to the wrapped transport.
func (t *bearerTransport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// sameOriginAsFirst reports whether req is the caller's own request or a
// redirect that kept the scheme and host of the caller's request.
func sameOriginAsFirst(req *http.Request) bool {
	first := req
	for first.Response != nil && first.Response.Request != nil {
		first = first.Response.Request
	}
	if first == req {
		return true
	}
	return first.URL.Scheme == req.URL.Scheme && strings.EqualFold(first.URL.Host, req.URL.Host)
}
