package wire

import (
	"context"
	"net"
	"net/http"
	"slices"
	"time"
)

// member is one supernode address a configured entry stands for.
type member struct {
	addr    string
	tlsName string // the DNS name it was resolved from ("" for a literal)
}

// isLiteral reports whether a configured host is used as given: an IP
// address, or localhost (one machine, whatever its addresses).
func isLiteral(host string) bool {
	return net.ParseIP(host) != nil || host == "localhost"
}

// literalMembers takes every entry as one supernode (before resolution).
func literalMembers(entries []string) []member {
	out := make([]member, len(entries))
	for i, e := range entries {
		out[i] = member{addr: e}
	}
	return out
}

// setMembers replaces the member list, keeping what is known of addresses
// that stay. Caller must not hold c.mu.
func (c *Client) setMembers(ms []member) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.members = c.members[:0:0]
	for _, m := range ms {
		if slices.Contains(c.members, m.addr) {
			continue
		}
		c.members = append(c.members, m.addr)
		if n, ok := c.nodes[m.addr]; !ok {
			c.nodes[m.addr] = &node{tlsName: m.tlsName}
		} else if n.tlsName != m.tlsName {
			n.tlsName, n.hc = m.tlsName, nil
		}
	}
	slices.Sort(c.members)
}

// refresh resolves DNS entries: synchronously the first time, then in the
// background every resolve interval.
func (c *Client) refresh(ctx context.Context) {
	named := false
	for _, e := range c.entries {
		host, _, _ := net.SplitHostPort(e)
		named = named || !isLiteral(host)
	}
	if !named {
		return
	}
	c.mu.Lock()
	first, due := c.resolvedAt.IsZero(), time.Since(c.resolvedAt) >= c.resolveEvery
	if c.resolving || (!first && !due) {
		c.mu.Unlock()
		return
	}
	c.resolving = true
	c.mu.Unlock()
	if first {
		c.resolve(ctx)
		return
	}
	go c.resolve(context.Background())
}

// resolve looks every DNS entry up and makes its addresses the members. A
// name that does not resolve keeps the members it had (or stands for
// itself before it ever resolved).
func (c *Client) resolve(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c.mu.Lock()
	prev := map[string][]member{} // entry -> its members so far
	for _, e := range c.entries {
		host, port, _ := net.SplitHostPort(e)
		for _, addr := range c.members {
			if n := c.nodes[addr]; n != nil && n.tlsName == host {
				if _, p, _ := net.SplitHostPort(addr); p == port {
					prev[e] = append(prev[e], member{addr: addr, tlsName: host})
				}
			}
		}
	}
	c.mu.Unlock()
	var ms []member
	for _, e := range c.entries {
		host, port, _ := net.SplitHostPort(e)
		if isLiteral(host) {
			ms = append(ms, member{addr: e})
			continue
		}
		ips, err := c.lookup(ctx, host)
		switch {
		case err == nil && len(ips) > 0:
			for _, ip := range ips {
				ms = append(ms, member{addr: net.JoinHostPort(ip, port), tlsName: host})
			}
		case len(prev[e]) > 0:
			ms = append(ms, prev[e]...)
		default:
			ms = append(ms, member{addr: e})
		}
	}
	c.setMembers(ms)
	c.mu.Lock()
	c.resolvedAt, c.resolving = time.Now(), false
	c.mu.Unlock()
}

// order returns the members in key's HRW order, live ones first; it starts
// a health probe of each down member whose probe is due.
func (c *Client) order(ctx context.Context, key string) []string {
	c.refresh(ctx)
	c.mu.Lock()
	full := HRWOrder(key, c.members)
	live := make([]string, 0, len(full))
	var down []string
	for _, addr := range full {
		n := c.nodes[addr]
		if !n.down {
			live = append(live, addr)
			continue
		}
		down = append(down, addr)
		if !n.probing && time.Since(n.checked) >= c.probeEvery {
			n.probing = true
			go c.probe(addr)
		}
	}
	c.mu.Unlock()
	return append(live, down...)
}

// probe checks a down supernode's GET /healthz (which needs no token) and
// marks it up when it answers 200.
func (c *Client) probe(addr string) {
	ctx, cancel := context.WithTimeout(context.Background(), c.probeTimeout)
	defer cancel()
	ok := false
	if req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.scheme+"://"+addr+"/healthz", nil); err == nil {
		if resp, err := c.httpFor(addr).Do(req); err == nil {
			ok = resp.StatusCode == http.StatusOK
			resp.Body.Close()
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[addr]
	n.probing, n.checked = false, time.Now()
	if ok {
		n.down = false
	}
}

func (c *Client) markDown(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.nodes[addr]; n != nil {
		n.down, n.checked = true, time.Now()
	}
}

func (c *Client) anyLive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, addr := range c.members {
		if !c.nodes[addr].down {
			return true
		}
	}
	return false
}

// talkedLive returns the live members a peer call was answered at.
func (c *Client) talkedLive(ctx context.Context) []string {
	c.refresh(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, addr := range c.members {
		if n := c.nodes[addr]; n.talked && !n.down {
			out = append(out, addr)
		}
	}
	return out
}

func (c *Client) placeTask(taskID, addr string) {
	if taskID == "" || addr == "" {
		return
	}
	c.mu.Lock()
	c.places[taskID] = place{addr: addr, at: time.Now()}
	c.mu.Unlock()
}

// prunePlaces forgets tasks not in held that were not used lately (the
// peer dropped them).
func (c *Client) prunePlaces(held []AnnouncedTask) {
	keep := make(map[string]bool, len(held))
	for _, t := range held {
		keep[t.TaskID] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, p := range c.places {
		if !keep[id] && time.Since(p.at) > c.taskPlaceKeep {
			delete(c.places, id)
		}
	}
}

// movedTask returns a task whose owner is no longer the supernode the
// peer last reported it to, "" when none moved.
func (c *Client) movedTask(ctx context.Context) string {
	c.mu.Lock()
	places := make(map[string]string, len(c.places))
	for id, p := range c.places {
		places[id] = p.addr
	}
	c.mu.Unlock()
	for id, addr := range places {
		if c.Owner(ctx, id) != addr {
			return id
		}
	}
	return ""
}

// httpFor returns the HTTP client for addr: the shared one, or for an
// address resolved from a DNS name under TLS one that verifies the name.
func (c *Client) httpFor(addr string) *http.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[addr]
	if n == nil || n.tlsName == "" || c.scheme != "https" {
		return c.http
	}
	if n.hc == nil {
		tr := c.http.Transport.(*http.Transport).Clone()
		cfg := tr.TLSClientConfig.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = n.tlsName
		}
		tr.TLSClientConfig = cfg
		n.hc = &http.Client{Transport: tr}
	}
	return n.hc
}
