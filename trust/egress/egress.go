// Package egress owns the origin policy: which addresses a fetch that a
// remote party can cause (the supernode's seed and preheat, registry
// notifications, dataset entries a remote manifest names) may connect to.
// It decides at dial time, after resolving the name itself, and dials only
// the address it checked, so redirects and DNS rebinding cannot get around
// it. It does not fetch anything; it hands out a DialContext, an
// http.Transport and a CheckRedirect for the callers' HTTP clients.
//
// A Policy built by New refuses, for every address a host resolves to (with
// IPv4-mapped and other IPv6 forms carrying an IPv4 address judged as that
// IPv4 address):
//   - always, whatever the allow list says: unspecified addresses (0.0.0.0/8,
//     ::), multicast and broadcast;
//   - unless allowed: loopback (127.0.0.0/8, ::1), link-local
//     (169.254.0.0/16, fe80::/10) and cloud metadata addresses
//     (169.254.169.254, fd00:ec2::254, 100.100.100.200);
//   - the process's own listeners (Options.OwnAddrs, AddOwnAddr), unless an
//     allow entry names that exact HOST:PORT (a CIDR or a port-less host
//     does not lift it);
//   - whatever a deny entry matches. An explicit deny always wins over any
//     allow entry.
//
// Private ranges (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7) are
// not refused by default: origins inside a company network are the normal
// case. Deny them with Options.Deny where they are not.
//
// Allow and deny entries (--allow-origin, --deny-origin) are HOST[:PORT] or
// CIDR. A hostname entry matches the host as written in the URL
// (case-insensitive, trailing dot ignored), whatever it resolves to; an IP
// address or CIDR entry matches the resolved address, whatever the URL's
// host was. A port restricts the entry to that port.
//
// Every refusal and every failure to reach an origin surfaces as the same
// error text (ErrUnavailable); the real reason is for the local log, through
// Reason.
//
// Which policy a process uses: every fetch a remote party can cause goes
// through a policy from New (supernode, dfdaemon serving peers or
// notifications). A process whose fetches are caused only by its local user
// (dfget without a daemon, dfctl) may use Permissive, which checks nothing.
// A nil *Policy behaves as New(Options{}), so a forgotten wiring is safe,
// not open.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// DefaultDialTimeout bounds resolving a host and connecting to it when
// Options.DialTimeout is zero.
const DefaultDialTimeout = 10 * time.Second

// MaxRedirects is how many redirects CheckRedirect follows.
const MaxRedirects = 10

// Resolver looks up a host's addresses. *net.Resolver implements it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Options configures a Policy. The zero value is the default policy.
type Options struct {
	// Allow are exceptions to the default refusals (--allow-origin):
	// HOST[:PORT] or CIDR.
	Allow []string
	// Deny are further refusals (--deny-origin): HOST[:PORT] or CIDR. A deny
	// wins over any allow.
	Deny []string
	// OwnAddrs are the host:port addresses of the process's own listeners,
	// as their Addr().String() gives them; see AddOwnAddr.
	OwnAddrs []string
	// Resolver resolves hostnames; nil means net.DefaultResolver.
	Resolver Resolver
	// DialTimeout bounds resolving and connecting together; zero means
	// DefaultDialTimeout.
	DialTimeout time.Duration
}

// Policy decides which origins may be reached. It is safe for concurrent
// use.
type Policy struct {
	permissive  bool
	allow, deny []entry
	resolver    Resolver
	dialTimeout time.Duration

	mu  sync.RWMutex
	own []ownAddr

	// Seams for tests.
	dial       func(ctx context.Context, network, addr string) (net.Conn, error)
	localAddrs func() ([]net.Addr, error)
}

// ownAddr is one of the process's listeners; wildcard is a listener on
// 0.0.0.0 or ::, reachable on every local address.
type ownAddr struct {
	ip       netip.Addr
	wildcard bool
	port     uint16
}

// New builds a policy, checking every entry of o.Allow, o.Deny and
// o.OwnAddrs; the error names the first bad one.
func New(o Options) (*Policy, error) {
	p := &Policy{resolver: o.Resolver, dialTimeout: o.DialTimeout}
	if p.resolver == nil {
		p.resolver = net.DefaultResolver
	}
	if p.dialTimeout <= 0 {
		p.dialTimeout = DefaultDialTimeout
	}
	for _, s := range o.Allow {
		e, err := parseEntry(s)
		if err != nil {
			return nil, fmt.Errorf("allow-origin %q: %w", s, err)
		}
		p.allow = append(p.allow, e)
	}
	for _, s := range o.Deny {
		e, err := parseEntry(s)
		if err != nil {
			return nil, fmt.Errorf("deny-origin %q: %w", s, err)
		}
		p.deny = append(p.deny, e)
	}
	for _, s := range o.OwnAddrs {
		if err := p.AddOwnAddr(s); err != nil {
			return nil, err
		}
	}
	p.dial = (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext
	p.localAddrs = net.InterfaceAddrs
	return p, nil
}

// Permissive returns a policy that refuses nothing and hides nothing: its
// DialContext is a plain dialer and its errors are the network's own. It is
// for processes whose fetches are caused only by the local user (dfget
// without a daemon, dfctl), never for anything a remote party can trigger.
// Its Transport keeps the base transport's proxy setting.
func Permissive() *Policy {
	return &Policy{
		permissive:  true,
		dialTimeout: DefaultDialTimeout,
		dial:        (&net.Dialer{Timeout: DefaultDialTimeout, KeepAlive: 30 * time.Second}).DialContext,
	}
}

var defaultPolicy = sync.OnceValue(func() *Policy {
	p, err := New(Options{})
	if err != nil {
		panic("egress: default policy: " + err.Error())
	}
	return p
})

// or returns p, or the default policy for a nil p.
func (p *Policy) or() *Policy {
	if p == nil {
		return defaultPolicy()
	}
	return p
}

// AddOwnAddr registers a listener of this process, as host:port with an IP
// host (pass the listener's Addr().String()). A listener on 0.0.0.0, :: or
// an empty host covers every local address (net.InterfaceAddrs, looked up at
// each dial, and all of loopback) with that port. Connections to own
// listeners are refused unless an allow entry names that exact HOST:PORT.
// It may be called while the policy is in use.
func (p *Policy) AddOwnAddr(hostport string) error {
	if p == nil {
		return errors.New("own address: nil policy (use egress.New)")
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("own address %q: %w", hostport, err)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return fmt.Errorf("own address %q: port %q is not a number from 1 to 65535", hostport, port)
	}
	o := ownAddr{port: uint16(n)}
	if host == "" {
		o.wildcard = true
	} else {
		a, err := netip.ParseAddr(host)
		if err != nil {
			return fmt.Errorf("own address %q: host must be an IP address (pass the listener's Addr().String())", hostport)
		}
		o.ip = normAddr(a)
		o.wildcard = o.ip.IsUnspecified()
	}
	p.mu.Lock()
	p.own = append(p.own, o)
	p.mu.Unlock()
	return nil
}

// CheckURL checks what can be checked before any request: the scheme is
// http or https, there is a host, and a host written as an IP address (or
// denied by name) is not refused. An address refusal is an ErrUnavailable
// error like the dialer's; a malformed URL gets a plain error naming the
// problem (it reveals nothing about the network). Names are checked against
// their addresses only when dialing.
func (p *Policy) CheckURL(u *url.URL) error {
	if u == nil {
		return errors.New("origin URL: missing")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("origin URL: scheme %q is not http or https", u.Scheme)
	}
	host := u.Hostname()
	if host == "" {
		return errors.New("origin URL: no host")
	}
	p = p.or()
	if p.permissive {
		return nil
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return fmt.Errorf("origin URL: port %q is not a number from 0 to 65535", port)
	}
	name, ip, isIP := splitHost(host)
	if !isIP {
		for _, d := range p.deny {
			if d.host != "" && d.matches(name, netip.Addr{}, uint16(n)) {
				return unavailable("%s: denied by deny-origin %q", net.JoinHostPort(host, port), d.raw)
			}
		}
		return nil
	}
	if reason := p.refuse(name, ip, uint16(n)); reason != "" {
		return unavailable("%s: %s", net.JoinHostPort(host, port), reason)
	}
	return nil
}

// splitHost normalises a URL or dial host: name is the hostname as matched
// by hostname entries; ip is set when the host is an IP literal.
func splitHost(host string) (name string, ip netip.Addr, isIP bool) {
	if a, err := netip.ParseAddr(host); err == nil {
		return "", normAddr(a), true
	}
	name, _ = normHost(host)
	if name == "" {
		name = host // still matched by nothing but shown in reasons
	}
	return name, netip.Addr{}, false
}

// refuse returns why a connection to ip:port, for a URL host written as
// name ("" for an IP literal), is refused, or "" when it is allowed.
func (p *Policy) refuse(name string, ip netip.Addr, port uint16) string {
	reason, never := builtin(ip)
	if never {
		return ip.String() + " is " + reason
	}
	for _, d := range p.deny {
		if d.matches(name, ip, port) {
			return fmt.Sprintf("%s denied by deny-origin %q", ip, d.raw)
		}
	}
	if p.isOwn(ip, port) {
		for _, a := range p.allow {
			if a.names(name, ip, port) {
				return ""
			}
		}
		return netip.AddrPortFrom(ip, port).String() + " is one of this process's listeners"
	}
	for _, a := range p.allow {
		if a.matches(name, ip, port) {
			return ""
		}
	}
	if reason != "" {
		return ip.String() + " is " + reason
	}
	return ""
}

// isOwn reports whether ip:port reaches one of the process's listeners.
func (p *Policy) isOwn(ip netip.Addr, port uint16) bool {
	p.mu.RLock()
	own := p.own
	p.mu.RUnlock()
	var local []netip.Addr
	var looked bool
	for _, o := range own {
		if o.port != port {
			continue
		}
		if !o.wildcard {
			if o.ip == ip {
				return true
			}
			continue
		}
		if ip.IsLoopback() || ip.IsUnspecified() {
			return true
		}
		if !looked {
			local, looked = p.localIPs(), true
		}
		for _, l := range local {
			if l == ip {
				return true
			}
		}
	}
	return false
}

// localIPs lists the addresses of this host's interfaces. When they cannot
// be listed, none is known to be local (loopback is still covered).
func (p *Policy) localIPs() []netip.Addr {
	addrs, err := p.localAddrs()
	if err != nil {
		return nil
	}
	ips := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		var ip net.IP
		switch a := a.(type) {
		case *net.IPNet:
			ip = a.IP
		case *net.IPAddr:
			ip = a.IP
		}
		if na, ok := netip.AddrFromSlice(ip); ok {
			ips = append(ips, normAddr(na))
		}
	}
	return ips
}

// DialContext connects to addr ("host:port") over TCP if the policy allows
// it. It resolves the host itself, refuses the host if ANY of its addresses
// is refused, and then connects to the checked addresses in turn, by IP, so
// that no second resolution can substitute another address. Resolving and
// connecting share one DialTimeout. Every failure, refusal or not, is an
// ErrUnavailable error (see Reason).
func (p *Policy) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	p = p.or()
	if p.permissive {
		return p.dial(ctx, network, addr)
	}
	var ipNet string
	switch network {
	case "tcp":
		ipNet = "ip"
	case "tcp4":
		ipNet = "ip4"
	case "tcp6":
		ipNet = "ip6"
	default:
		return nil, unavailable("%s: network %q is not tcp", addr, network)
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, unavailable("%s: %v", addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, unavailable("%s: port is not a number", addr)
	}
	if host == "" {
		return nil, unavailable("%s: no host", addr)
	}
	ctx, cancel := context.WithTimeout(ctx, p.dialTimeout)
	defer cancel()

	name, _, isIP := splitHost(host)
	var ips []netip.Addr
	if isIP {
		a, _ := netip.ParseAddr(host) // keeps a zone, needed to dial link-local
		ips = []netip.Addr{a}
	} else {
		ips, err = p.resolver.LookupNetIP(ctx, ipNet, host)
		if err != nil {
			return nil, unavailable("resolve %s: %v", host, err)
		}
		if len(ips) == 0 {
			return nil, unavailable("resolve %s: no addresses", host)
		}
	}
	for _, ip := range ips {
		if reason := p.refuse(name, normAddr(ip), uint16(port)); reason != "" {
			if isIP {
				return nil, unavailable("%s: %s", addr, reason)
			}
			return nil, unavailable("%s (resolved to %v): %s", addr, ips, reason)
		}
	}
	var errs []error
	for _, ip := range ips {
		if ip.Zone() == "" {
			ip = ip.Unmap()
		}
		if (network == "tcp4" && !ip.Is4()) || (network == "tcp6" && ip.Is4()) {
			continue
		}
		target := net.JoinHostPort(ip.String(), portStr)
		conn, err := p.dial(ctx, network, target)
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return nil, unavailable("%s: no %s address among %v", addr, network, ips)
	}
	return nil, unavailable("%s: %v", addr, errors.Join(errs...))
}

// Transport returns a clone of base (http.DefaultTransport's settings when
// nil) that dials through the policy, including for TLS (DialTLSContext is
// cleared), and uses no proxy: an HTTP proxy from the environment would
// connect on the fetch's behalf and bypass the address checks. A permissive
// policy keeps base's dialer and proxy.
func (p *Policy) Transport(base *http.Transport) *http.Transport {
	if base == nil {
		var ok bool
		if base, ok = http.DefaultTransport.(*http.Transport); !ok {
			base = &http.Transport{}
		}
	}
	t := base.Clone()
	p = p.or()
	if p.permissive {
		return t
	}
	t.Proxy = nil
	t.OnProxyConnectResponse = nil
	// Deprecated hooks would take precedence over DialContext, and TLS must
	// be dialed through DialContext too: clear them.
	t.Dial = nil    //lint:ignore SA1019 cleared so it cannot bypass the policy
	t.DialTLS = nil //lint:ignore SA1019 cleared so it cannot bypass the policy
	t.DialTLSContext = nil
	t.DialContext = p.DialContext
	return t
}

// CheckRedirect is an http.Client.CheckRedirect: it follows at most
// MaxRedirects redirects, only to http or https URLs, and applies CheckURL
// to each target. The addresses a redirect leads to are checked when the
// transport dials them. Its refusals are ErrUnavailable errors.
func (p *Policy) CheckRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= MaxRedirects {
		return unavailable("stopped after %d redirects", len(via))
	}
	if err := p.CheckURL(req.URL); err != nil {
		if errors.Is(err, ErrUnavailable) {
			return err
		}
		return unavailable("redirect: %v", err)
	}
	return nil
}
