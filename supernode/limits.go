package supernode

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/damselfly-p2p/damselfly/wire"
)

// Registration rate limits. Each client may register DefaultRegisterRate
// tasks a second with bursts of DefaultRegisterBurst; beyond, it is answered
// 429 with a Retry-After. A client is the peer its credential names, or,
// without one (cluster token, authentication off), its remote IP address.
//
// A dfmount of an object store prefix registers each directory's pack (and
// again when its prefetch starts): a tree of 1,000 directories is 2,000
// registrations from one client at once, which the burst admits; at 20/s
// (the earlier default) such a mount waited more than a minute in 429s.
// The scheduler takes about 17,000 registrations/s on 2 cores, so one
// client at the sustained rate holds about 1% of it.
const (
	DefaultRegisterRate  = 200.0
	DefaultRegisterBurst = 2000
	// maxClients bounds the limiter table; idle entries are pruned first.
	maxClients = 100_000
)

// clientLimits holds one token bucket per client.
type clientLimits struct {
	limit rate.Limit
	burst int
	mu    sync.Mutex
	m     map[string]*clientBucket
}

type clientBucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// newClientLimits returns limits of perSecond with burst, or nil (no limit)
// for a negative rate.
func newClientLimits(perSecond float64, burst int) *clientLimits {
	if perSecond < 0 {
		return nil
	}
	if perSecond == 0 {
		perSecond = DefaultRegisterRate
	}
	if burst <= 0 {
		burst = DefaultRegisterBurst
	}
	return &clientLimits{limit: rate.Limit(perSecond), burst: burst, m: map[string]*clientBucket{}}
}

// allow takes a token of key's bucket; when none is left it returns false
// and how long until one is.
func (c *clientLimits) allow(key string, now time.Time) (bool, time.Duration) {
	if c == nil {
		return true, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.m[key]
	if b == nil {
		if len(c.m) >= maxClients {
			c.pruneLocked(now)
		}
		b = &clientBucket{lim: rate.NewLimiter(c.limit, c.burst)}
		c.m[key] = b
	}
	b.seen = now
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// pruneLocked drops buckets that have refilled (idle long enough that
// forgetting them changes nothing), or, if that frees nothing, all.
func (c *clientLimits) pruneLocked(now time.Time) {
	full := time.Duration(float64(c.burst) / float64(c.limit) * float64(time.Second))
	for k, b := range c.m {
		if now.Sub(b.seen) > full {
			delete(c.m, k)
		}
	}
	if len(c.m) >= maxClients {
		clear(c.m)
	}
}

// clientKey names the caller of r for rate limiting: its peer credential's
// peer, else its remote IP.
func clientKey(r *http.Request) string {
	if c, ok := r.Context().Value(callerKey{}).(caller); ok && !c.cluster && c.claims.PeerID != "" {
		return "peer:" + c.claims.PeerID
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "ip:" + host
}

// admitRegistration applies the registration rate limit; when it refuses
// it has answered 429 with a Retry-After.
func (s *Supernode) admitRegistration(w http.ResponseWriter, r *http.Request) bool {
	ok, wait := s.regLimits.allow(clientKey(r), time.Now())
	if ok {
		return true
	}
	s.metrics.rateLimited.Inc()
	secs := int(math.Ceil(wait.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	writeError(w, http.StatusTooManyRequests, wire.CodeRateLimited,
		fmt.Sprintf("too many registrations from this client (limit %g/s, burst %d); retry later", float64(s.regLimits.limit), s.regLimits.burst), 0)
	return false
}

// Status pages. GET /api/v1/status lists at most DefaultStatusLimit tasks
// (oldest first) and as many peers unless ?limit= (up to MaxStatusLimit)
// and ?offset= say otherwise; ?limit=0 gives only the totals, which are
// always present.
const (
	DefaultStatusLimit = 500
	MaxStatusLimit     = 5000
)

type page struct{ offset, limit int }

// parsePage reads ?limit= and ?offset=.
func parsePage(r *http.Request, def, most int) (page, error) {
	if def <= 0 {
		def = DefaultStatusLimit
	}
	if most <= 0 {
		most = MaxStatusLimit
	}
	pg := page{limit: min(def, most)}
	q := r.URL.Query()
	for _, f := range []struct {
		name string
		dst  *int
	}{{"limit", &pg.limit}, {"offset", &pg.offset}} {
		v := q.Get(f.name)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return page{}, fmt.Errorf("%s=%q: want a number >= 0", f.name, v)
		}
		*f.dst = n
	}
	if pg.limit > most {
		return page{}, fmt.Errorf("limit=%d: at most %d", pg.limit, most)
	}
	return pg, nil
}

// pageOf returns the page pg of items.
func pageOf[T any](items []T, pg page) []T {
	if pg.offset >= len(items) {
		return nil
	}
	return items[pg.offset:min(len(items), pg.offset+pg.limit)]
}
