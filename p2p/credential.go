package p2p

import (
	"net/http"
	"sync"
	"time"

	"github.com/damselfly-p2p/damselfly/trust"
)

// credentialRefreshFallback is how long a task credential is used before a
// refresh is asked for when the peer cannot read its lifetime (it has no
// cluster key, so it cannot verify the credential): half of the
// supernode's default credential lifetime, minus a margin.
const credentialRefreshFallback = 25 * time.Minute

// taskCredential is a download's task credential: issued at registration,
// sent as "Authorization: Bearer" on every piece and piece-map request to
// its parents, and renewed through the next sync (RefreshTaskCredential)
// once half its lifetime passed or as soon as a parent refused it (401).
type taskCredential struct {
	keys trust.Issuer // zero Key: lifetime unknown, use the fallback
	now  func() time.Time

	mu        sync.Mutex
	token     string
	refreshAt time.Time
	refused   bool // a parent answered 401
}

func newTaskCredential(keys trust.Issuer, now func() time.Time) *taskCredential {
	if now == nil {
		now = time.Now
	}
	return &taskCredential{keys: keys, now: now}
}

// set takes a credential from the supernode ("" keeps the current one:
// a supernode without a cluster token issues none).
func (c *taskCredential) set(token string) {
	if token == "" {
		return
	}
	now := c.now()
	refreshAt := now.Add(credentialRefreshFallback)
	if !c.keys.Key.IsZero() {
		if cl, err := c.keys.Verify(token); err == nil {
			refreshAt = cl.IssuedAt.Add(cl.ExpiresAt.Sub(cl.IssuedAt) / 2)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.token, c.refreshAt, c.refused = token, refreshAt, false
}

// wantRefresh reports whether the next sync should ask for a new
// credential.
func (c *taskCredential) wantRefresh() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token != "" && (c.refused || !c.now().Before(c.refreshAt))
}

// refusedBy records that a parent answered 401 to the credential.
func (c *taskCredential) refusedBy() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refused = true
}

// authorize adds the credential to a request to a parent.
func (c *taskCredential) authorize(r *http.Request) {
	c.mu.Lock()
	tok := c.token
	c.mu.Unlock()
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
}
