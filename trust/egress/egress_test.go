package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeResolver answers from a table; a host with several answers gives them
// in turn, repeating the last (a rebinding name answers first one address,
// then another).
type fakeResolver struct {
	mu      sync.Mutex
	answers map[string][][]netip.Addr
	calls   map[string]int
}

func newResolver(answers map[string][]string) *fakeResolver {
	r := &fakeResolver{answers: map[string][][]netip.Addr{}, calls: map[string]int{}}
	for host, seq := range answers {
		for _, a := range seq {
			var ips []netip.Addr
			for _, s := range strings.Split(a, ",") {
				ips = append(ips, netip.MustParseAddr(s))
			}
			r.answers[host] = append(r.answers[host], ips)
		}
	}
	return r
}

func (r *fakeResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seq, ok := r.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	i := min(r.calls[host], len(seq)-1)
	r.calls[host]++
	return seq[i], nil
}

// testResolver knows the names the tests use.
func testResolver() *fakeResolver {
	return newResolver(map[string][]string{
		"evil.test":     {"127.0.0.1"},
		"internal.test": {"127.0.0.1"},
		"meta.test":     {"169.254.169.254"},
		"public.test":   {"203.0.113.7"},
		"mixed.test":    {"203.0.113.7,127.0.0.1"},
		"mapped.test":   {"::ffff:127.0.0.1"},
		"rebind.test":   {"203.0.113.7", "127.0.0.1"},
		"localhost":     {"127.0.0.1", "::1"},
	})
}

// dialRecorder stands in for the network dialer: it records every address
// dialed and either connects for real (real) or hands back one end of a pipe.
type dialRecorder struct {
	mu     sync.Mutex
	dialed []string
	real   bool
	fail   map[string]error // addresses that fail with this error
}

func (d *dialRecorder) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.dialed = append(d.dialed, addr)
	err := d.fail[addr]
	d.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if d.real {
		var nd net.Dialer
		return nd.DialContext(ctx, network, addr)
	}
	c1, c2 := net.Pipe()
	c2.Close()
	return c1, nil
}

func (d *dialRecorder) addrs() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.dialed...)
}

// newPolicy builds a policy with the test resolver, a short timeout and the
// recorder as its dialer.
func newPolicy(t *testing.T, o Options, rec *dialRecorder) *Policy {
	t.Helper()
	if o.Resolver == nil {
		o.Resolver = testResolver()
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 5 * time.Second
	}
	p, err := New(o)
	if err != nil {
		t.Fatalf("New(%+v): %v", o, err)
	}
	if rec != nil {
		p.dial = rec.dial
	}
	return p
}

// watchedListener is a loopback listener that can tell, exactly, whether
// anything connected to it: Connections dials a marker connection and counts
// the connections accepted before it (accepts are in arrival order).
type watchedListener struct {
	ln       net.Listener
	accepted chan net.Conn
}

func newWatchedListener(t *testing.T) *watchedListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &watchedListener{ln: ln, accepted: make(chan net.Conn, 64)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(w.accepted)
				return
			}
			w.accepted <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for c := range w.accepted {
			c.Close()
		}
	})
	return w
}

func (w *watchedListener) port() int { return w.ln.Addr().(*net.TCPAddr).Port }

func (w *watchedListener) connections(t *testing.T) int {
	t.Helper()
	marker, err := net.Dial("tcp", w.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer marker.Close()
	n := 0
	for c := range w.accepted {
		isMarker := c.RemoteAddr().String() == marker.LocalAddr().String()
		c.Close()
		if isMarker {
			return n
		}
		n++
	}
	t.Fatal("listener closed before the marker connection arrived")
	return n
}

// countingServer is an httptest server counting the requests it receives.
type countingServer struct {
	*httptest.Server
	requests atomic.Int64
}

func newCountingServer(t *testing.T, h http.HandlerFunc) *countingServer {
	t.Helper()
	s := &countingServer{}
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }
	}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		h(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *countingServer) hostport() string { return strings.TrimPrefix(s.URL, "http://") }

func (s *countingServer) port() string {
	_, p, _ := net.SplitHostPort(s.hostport())
	return p
}

func httpClient(p *Policy) *http.Client {
	tr := p.Transport(nil)
	return &http.Client{Transport: tr, CheckRedirect: p.CheckRedirect, Timeout: 10 * time.Second}
}

// assertUnavailable checks that err is the uniform refusal, with a reason
// for the log containing want.
func assertUnavailable(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatal("got no error, want origin unavailable")
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("error %v does not wrap ErrUnavailable", err)
	}
	var ue *unavailableError
	if !errors.As(err, &ue) || ue.Error() != "origin unavailable" {
		t.Fatalf("error text %q, want %q", err, "origin unavailable")
	}
	if !strings.Contains(Reason(err), want) {
		t.Fatalf("reason %q does not contain %q", Reason(err), want)
	}
}

func TestDefaultPolicyRefuses(t *testing.T) {
	w := newWatchedListener(t)
	port := strconv.Itoa(w.port())
	tests := []struct {
		addr   string
		reason string
	}{
		{"127.0.0.1:" + port, "loopback"},
		{"127.1.2.3:" + port, "loopback"},
		{"[::1]:" + port, "loopback"},
		{"169.254.169.254:80", "metadata"},
		{"169.254.1.1:80", "link-local"},
		{"[fe80::1%lo]:80", "link-local"},
		{"[fd00:ec2::254]:80", "metadata"},
		{"100.100.100.200:80", "metadata"},
		{"0.0.0.0:" + port, "unspecified"},
		{"0.1.2.3:" + port, "0.0.0.0/8"},
		{"[::]:" + port, "unspecified"},
		{"[::ffff:127.0.0.1]:" + port, "loopback"},
		{"[::ffff:169.254.169.254]:80", "metadata"},
		{"[::ffff:0:127.0.0.1]:" + port, "embeds 127.0.0.1"},
		{"[64:ff9b::7f00:1]:" + port, "embeds 127.0.0.1"},
		{"[2002:a9fe:a9fe::1]:80", "embeds 169.254.169.254"},
		{"224.0.0.1:80", "multicast"},
		{"[ff02::1]:80", "multicast"},
		{"255.255.255.255:80", "broadcast"},
		{"evil.test:" + port, "loopback"},
		{"mapped.test:" + port, "loopback"},
		{"meta.test:80", "metadata"},
		{"mixed.test:" + port, "loopback"}, // one bad address refuses the name
		{"nx.test:80", "no such host"},
		{"example.test:http", "port"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			rec := &dialRecorder{real: true}
			p := newPolicy(t, Options{}, rec)
			conn, err := p.DialContext(context.Background(), "tcp", tt.addr)
			if conn != nil {
				conn.Close()
			}
			assertUnavailable(t, err, tt.reason)
			if got := rec.addrs(); len(got) != 0 {
				t.Fatalf("dialed %v, want nothing dialed", got)
			}
		})
	}
	if n := w.connections(t); n != 0 {
		t.Fatalf("loopback listener received %d connections, want 0", n)
	}
}

func TestRebindingNeverReachesLoopback(t *testing.T) {
	w := newWatchedListener(t)
	port := strconv.Itoa(w.port())
	public := "203.0.113.7:" + port
	rec := &dialRecorder{real: true, fail: map[string]error{
		public: errors.New("connect: network is unreachable"),
	}}
	p := newPolicy(t, Options{}, rec)

	// Straight through the dialer: first answer public, second loopback.
	for i := range 3 {
		conn, err := p.DialContext(context.Background(), "tcp", "rebind.test:"+port)
		if conn != nil {
			conn.Close()
		}
		want := "loopback"
		if i == 0 {
			want = "unreachable"
		}
		assertUnavailable(t, err, want)
	}
	// And through an HTTP client, whose transport might resolve again.
	p2 := newPolicy(t, Options{Resolver: testResolver()}, rec)
	c := httpClient(p2)
	for range 3 {
		resp, err := c.Get("http://rebind.test:" + port + "/")
		if err == nil {
			resp.Body.Close()
			t.Fatal("GET through a rebinding name succeeded")
		}
		assertUnavailable(t, err, "")
	}
	for _, a := range rec.addrs() {
		if a != public {
			t.Fatalf("dialed %s; only the checked public address %s may be dialed", a, public)
		}
	}
	if n := w.connections(t); n != 0 {
		t.Fatalf("loopback listener received %d connections, want 0", n)
	}
}

func TestAllowExactPort(t *testing.T) {
	allowed := newCountingServer(t, nil)
	other := newCountingServer(t, nil)
	p := newPolicy(t, Options{Allow: []string{allowed.hostport()}}, nil)
	c := httpClient(p)

	resp, err := c.Get(allowed.URL + "/x")
	if err != nil {
		t.Fatalf("GET allowed origin: %v (%s)", err, Reason(err))
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("allowed origin answered %s", resp.Status)
	}
	if _, err := c.Get(other.URL + "/x"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("GET another loopback port: %v, want origin unavailable", err)
	}
	if got := allowed.requests.Load(); got != 1 {
		t.Fatalf("allowed origin got %d requests, want 1", got)
	}
	if got := other.requests.Load(); got != 0 {
		t.Fatalf("other loopback server got %d requests, want 0", got)
	}
}

func TestRedirectToInternalIsRefused(t *testing.T) {
	internal := newCountingServer(t, nil)
	var target atomic.Value // string: where the allowed origin redirects
	origin := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/final" {
			fmt.Fprint(w, "final")
			return
		}
		if r.URL.Path == "/loop" {
			http.Redirect(w, r, "/loop", http.StatusFound)
			return
		}
		http.Redirect(w, r, target.Load().(string), http.StatusFound)
	})
	p := newPolicy(t, Options{Allow: []string{origin.hostport()}}, nil)
	c := httpClient(p)

	// The policy follows redirects it allows, so the refusals below are
	// about where they lead.
	target.Store("/final")
	resp, err := c.Get(origin.URL + "/start")
	if err != nil {
		t.Fatalf("redirect within the allowed origin: %v (%s)", err, Reason(err))
	}
	resp.Body.Close()

	tests := []struct {
		name, to, reason string
	}{
		{"literal loopback", internal.URL + "/secret", "loopback"},
		{"mapped loopback", "http://[::ffff:127.0.0.1]:" + internal.port() + "/secret", "loopback"},
		// A name is not checked by CheckRedirect; the dialer refuses it.
		{"name resolving to loopback", "http://internal.test:" + internal.port() + "/secret", "loopback"},
		{"metadata", "http://169.254.169.254/latest/meta-data/", "metadata"},
		{"other scheme", "file:///etc/passwd", "scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target.Store(tt.to)
			resp, err := c.Get(origin.URL + "/start")
			if err == nil {
				resp.Body.Close()
				t.Fatalf("redirect to %s was followed (%s)", tt.to, resp.Status)
			}
			assertUnavailable(t, err, tt.reason)
		})
	}
	t.Run("redirect loop", func(t *testing.T) {
		_, err := c.Get(origin.URL + "/loop")
		assertUnavailable(t, err, "redirects")
	})
	if got := internal.requests.Load(); got != 0 {
		t.Fatalf("internal server got %d requests, want 0", got)
	}
}

// TestOneErrorText checks that a policy refusal, a refused connection, a
// timeout and a failed lookup read the same to the caller.
func TestOneErrorText(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	hang := func(ctx context.Context, network, addr string) (net.Conn, error) {
		<-ctx.Done()
		return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
	}
	tests := []struct {
		name   string
		opts   Options
		dial   func(ctx context.Context, network, addr string) (net.Conn, error)
		addr   string
		reason string
	}{
		{"refused by policy", Options{}, nil, closed, "loopback"},
		{"connection refused", Options{Allow: []string{closed}}, nil, closed, "connection refused"},
		{"timeout", Options{Allow: []string{closed}, DialTimeout: 50 * time.Millisecond}, hang, closed, "deadline exceeded"},
		{"lookup failed", Options{}, nil, "nx.test:80", "no such host"},
	}
	var dialTexts, clientTexts []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPolicy(t, tt.opts, nil)
			if tt.dial != nil {
				p.dial = tt.dial
			}
			conn, err := p.DialContext(context.Background(), "tcp", tt.addr)
			if conn != nil {
				conn.Close()
				t.Fatal("dial succeeded")
			}
			assertUnavailable(t, err, tt.reason)
			dialTexts = append(dialTexts, err.Error())

			_, err = httpClient(p).Get("http://" + closed + "/")
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("client error %v does not wrap ErrUnavailable", err)
			}
			if tt.addr == closed {
				clientTexts = append(clientTexts, err.Error())
			}
		})
	}
	for _, texts := range [][]string{dialTexts, clientTexts} {
		for _, s := range texts[1:] {
			if s != texts[0] {
				t.Fatalf("error texts differ: %q", texts)
			}
		}
	}
	if len(dialTexts) != len(tests) || len(clientTexts) != 3 {
		t.Fatalf("collected %d dial and %d client texts", len(dialTexts), len(clientTexts))
	}
}

// TestDecisions covers allow, deny and own-address rules without a network:
// an allowed dial reaches the recorder, a refused one does not.
func TestDecisions(t *testing.T) {
	local := func() ([]net.Addr, error) {
		return []net.Addr{
			&net.IPNet{IP: net.ParseIP("192.0.2.10"), Mask: net.CIDRMask(24, 32)},
			&net.IPNet{IP: net.ParseIP("2001:db8::10"), Mask: net.CIDRMask(64, 128)},
		}, nil
	}
	tests := []struct {
		name    string
		opts    Options
		addr    string
		allowed bool
		reason  string // for refusals
	}{
		{"public by default", Options{}, "203.0.113.7:80", true, ""},
		{"public name by default", Options{}, "public.test:443", true, ""},
		{"private range by default", Options{}, "10.1.2.3:80", true, ""},
		{"allow CIDR", Options{Allow: []string{"127.0.0.0/8"}}, "127.0.0.2:9", true, ""},
		{"allow mapped CIDR", Options{Allow: []string{"::ffff:127.0.0.0/104"}}, "127.0.0.2:9", true, ""},
		{"allow IP any port", Options{Allow: []string{"127.0.0.1"}}, "evil.test:9", true, ""},
		{"allow IPv6 bracketed", Options{Allow: []string{"[::1]:9"}}, "[::1]:9", true, ""},
		{"allow IPv6 wrong port", Options{Allow: []string{"[::1]:9"}}, "[::1]:10", false, "loopback"},
		{"allow name", Options{Allow: []string{"Evil.Test."}}, "evil.test:9", true, ""},
		{"allow name does not allow IP", Options{Allow: []string{"evil.test"}}, "127.0.0.1:9", false, "loopback"},
		{"allow name with port", Options{Allow: []string{"evil.test:9"}}, "evil.test:10", false, "loopback"},
		{"allow name all addresses", Options{Allow: []string{"localhost"}}, "localhost:9", true, ""},
		{"allow metadata explicitly", Options{Allow: []string{"169.254.169.254"}}, "meta.test:80", true, ""},
		{"allow cannot lift unspecified", Options{Allow: []string{"0.0.0.0/0"}}, "0.0.0.0:80", false, "unspecified"},
		{"allow cannot lift multicast", Options{Allow: []string{"224.0.0.0/4"}}, "224.0.0.1:80", false, "multicast"},
		{"allow cannot lift broadcast", Options{Allow: []string{"255.255.255.255"}}, "255.255.255.255:80", false, "broadcast"},
		{"deny public CIDR", Options{Deny: []string{"203.0.113.0/24"}}, "public.test:80", false, "deny-origin"},
		{"deny name", Options{Deny: []string{"public.test"}}, "public.test:80", false, "deny-origin"},
		{"deny name other port", Options{Deny: []string{"public.test:81"}}, "public.test:80", true, ""},
		{"deny wins over CIDR allow", Options{Allow: []string{"127.0.0.0/8"}, Deny: []string{"127.0.0.1:9"}}, "127.0.0.1:9", false, "deny-origin"},
		{"deny wins over exact allow", Options{Allow: []string{"127.0.0.1:9"}, Deny: []string{"127.0.0.1"}}, "127.0.0.1:9", false, "deny-origin"},
		{"deny IP wins over name allow", Options{Allow: []string{"evil.test"}, Deny: []string{"127.0.0.0/8"}}, "evil.test:9", false, "deny-origin"},
		{"deny name wins over IP allow", Options{Allow: []string{"127.0.0.1:9"}, Deny: []string{"localhost"}}, "localhost:9", false, "deny-origin"},
		{"own listener", Options{OwnAddrs: []string{"203.0.113.7:65001"}}, "public.test:65001", false, "listeners"},
		{"own listener other port", Options{OwnAddrs: []string{"203.0.113.7:65001"}}, "public.test:65002", true, ""},
		{"own listener, CIDR allow", Options{OwnAddrs: []string{"127.0.0.1:65001"}, Allow: []string{"127.0.0.0/8"}}, "127.0.0.1:65001", false, "listeners"},
		{"own listener, host allow", Options{OwnAddrs: []string{"127.0.0.1:65001"}, Allow: []string{"127.0.0.1"}}, "127.0.0.1:65001", false, "listeners"},
		{"own listener, exact allow", Options{OwnAddrs: []string{"127.0.0.1:65001"}, Allow: []string{"127.0.0.1:65001"}}, "127.0.0.1:65001", true, ""},
		{"own listener, exact name allow", Options{OwnAddrs: []string{"127.0.0.1:65001"}, Allow: []string{"evil.test:65001"}}, "evil.test:65001", true, ""},
		{"own wildcard, interface address", Options{OwnAddrs: []string{"0.0.0.0:65001"}}, "192.0.2.10:65001", false, "listeners"},
		{"own wildcard, IPv6 interface", Options{OwnAddrs: []string{"[::]:65001"}}, "[2001:db8::10]:65001", false, "listeners"},
		{"own wildcard, empty host", Options{OwnAddrs: []string{":65001"}}, "192.0.2.10:65001", false, "listeners"},
		{"own wildcard, loopback alias", Options{OwnAddrs: []string{"[::]:65001"}, Allow: []string{"127.0.0.0/8"}}, "127.0.0.5:65001", false, "listeners"},
		{"own wildcard, other host", Options{OwnAddrs: []string{"0.0.0.0:65001"}}, "192.0.2.11:65001", true, ""},
		{"own wildcard, other port", Options{OwnAddrs: []string{"0.0.0.0:65001"}}, "192.0.2.10:65002", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &dialRecorder{}
			p := newPolicy(t, tt.opts, rec)
			p.localAddrs = local
			conn, err := p.DialContext(context.Background(), "tcp", tt.addr)
			if tt.allowed {
				if err != nil {
					t.Fatalf("refused: %s", Reason(err))
				}
				conn.Close()
				if len(rec.addrs()) != 1 {
					t.Fatalf("dialed %v, want one address", rec.addrs())
				}
				return
			}
			if conn != nil {
				conn.Close()
			}
			assertUnavailable(t, err, tt.reason)
			if got := rec.addrs(); len(got) != 0 {
				t.Fatalf("dialed %v, want nothing dialed", got)
			}
		})
	}
}

func TestAddOwnAddrWhileInUse(t *testing.T) {
	rec := &dialRecorder{}
	p := newPolicy(t, Options{}, rec)
	conn, err := p.DialContext(context.Background(), "tcp", "203.0.113.7:65001")
	if err != nil {
		t.Fatalf("before AddOwnAddr: %s", Reason(err))
	}
	conn.Close()
	if err := p.AddOwnAddr("203.0.113.7:65001"); err != nil {
		t.Fatal(err)
	}
	_, err = p.DialContext(context.Background(), "tcp", "203.0.113.7:65001")
	assertUnavailable(t, err, "listeners")
}

func TestBadEntries(t *testing.T) {
	tests := []struct {
		opts Options
		want string // the error names the option and the entry
	}{
		{Options{Allow: []string{""}}, `allow-origin ""`},
		{Options{Allow: []string{"10.0.0.0/33"}}, `allow-origin "10.0.0.0/33"`},
		{Options{Allow: []string{"host:0"}}, `allow-origin "host:0"`},
		{Options{Allow: []string{"host:70000"}}, `allow-origin "host:70000"`},
		{Options{Allow: []string{"host:"}}, `allow-origin "host:"`},
		{Options{Allow: []string{"http://host"}}, `allow-origin "http://host"`},
		{Options{Allow: []string{"[host]:80"}}, `allow-origin "[host]:80"`},
		{Options{Allow: []string{"ok.test", "bad host"}}, `allow-origin "bad host"`},
		{Options{Deny: []string{"a..b"}}, `deny-origin "a..b"`},
		{Options{Deny: []string{"*.example.com"}}, `deny-origin "*.example.com"`},
		{Options{OwnAddrs: []string{"localhost:80"}}, `own address "localhost:80"`},
		{Options{OwnAddrs: []string{"127.0.0.1"}}, `own address "127.0.0.1"`},
		{Options{OwnAddrs: []string{"127.0.0.1:0"}}, `own address "127.0.0.1:0"`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			p, err := New(tt.opts)
			if err == nil {
				t.Fatalf("New accepted %+v", tt.opts)
			}
			if p != nil {
				t.Fatal("New returned a policy with its error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not name %s", err, tt.want)
			}
		})
	}
	if _, err := New(Options{Allow: []string{"::1", "[::1]", "[::1]:80", "fe80::/10", "h-1.test:8080", "test", "ip6.test.", "::ffff:10.0.0.0/104"}}); err != nil {
		t.Fatalf("valid entries: %v", err)
	}
}

func TestCheckURL(t *testing.T) {
	p := newPolicy(t, Options{Deny: []string{"denied.test"}, Allow: []string{"127.0.0.1:8080"}}, nil)
	tests := []struct {
		url     string
		wantErr string // "" ok; "unavailable" the uniform error; else text in a plain error
	}{
		{"http://example.test/x", ""},
		{"https://example.test:8443/x", ""},
		{"http://evil.test/x", ""}, // names are judged when dialing
		{"http://203.0.113.7/", ""},
		{"http://127.0.0.1:8080/", ""},
		{"http://127.0.0.1/", "unavailable"},
		{"https://[::1]/", "unavailable"},
		{"http://[::ffff:169.254.169.254]/", "unavailable"},
		{"http://0.0.0.0:8080/", "unavailable"},
		{"http://denied.test/", "unavailable"},
		{"ftp://example.test/", "scheme"},
		{"file:///etc/passwd", "scheme"},
		{"gopher://127.0.0.1/", "scheme"},
		{"http:///x", "no host"},
		{"HTTP://example.test/", ""}, // url.Parse lower-cases the scheme
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			u, err := url.Parse(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			err = p.CheckURL(u)
			switch tt.wantErr {
			case "":
				if err != nil {
					t.Fatalf("refused: %v (%s)", err, Reason(err))
				}
			case "unavailable":
				assertUnavailable(t, err, "")
			default:
				if err == nil || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want a plain error containing %q", err, tt.wantErr)
				}
			}
		})
	}
}

func TestNilPolicyIsDefault(t *testing.T) {
	srv := newCountingServer(t, nil)
	var p *Policy
	_, err := p.DialContext(context.Background(), "tcp", srv.hostport())
	assertUnavailable(t, err, "loopback")
	u, _ := url.Parse(srv.URL)
	assertUnavailable(t, p.CheckURL(u), "loopback")
	if _, err := httpClient(p).Get(srv.URL); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("GET through nil policy: %v", err)
	}
	if err := p.AddOwnAddr("127.0.0.1:80"); err == nil {
		t.Fatal("AddOwnAddr on a nil policy succeeded")
	}
	if got := srv.requests.Load(); got != 0 {
		t.Fatalf("server got %d requests, want 0", got)
	}
}

func TestPermissive(t *testing.T) {
	srv := newCountingServer(t, nil)
	p := Permissive()
	resp, err := httpClient(p).Get(srv.URL)
	if err != nil {
		t.Fatalf("permissive GET of loopback: %v", err)
	}
	resp.Body.Close()
	u, _ := url.Parse("http://169.254.169.254/")
	if err := p.CheckURL(u); err != nil {
		t.Fatalf("permissive CheckURL: %v", err)
	}
	u, _ = url.Parse("ftp://example.test/")
	if err := p.CheckURL(u); err == nil {
		t.Fatal("permissive CheckURL accepted ftp")
	}
	base := &http.Transport{Proxy: http.ProxyFromEnvironment}
	if p.Transport(base).Proxy == nil {
		t.Fatal("permissive transport dropped the proxy")
	}
}

func TestTransportBypassesNothing(t *testing.T) {
	p := newPolicy(t, Options{}, nil)
	base := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return nil, errors.New("must not be used")
		},
		MaxIdleConnsPerHost: 7,
	}
	tr := p.Transport(base)
	if tr == base {
		t.Fatal("Transport modified base instead of cloning it")
	}
	if tr.Proxy != nil || tr.DialTLSContext != nil || tr.DialContext == nil {
		t.Fatal("transport keeps a proxy or TLS dialer, or has no policy dialer")
	}
	if base.Proxy == nil || base.DialTLSContext == nil {
		t.Fatal("Transport changed base")
	}
	if tr.MaxIdleConnsPerHost != 7 {
		t.Fatal("Transport lost base's settings")
	}
	// An https URL to loopback goes through the policy, not the TLS dialer.
	_, err := (&http.Client{Transport: tr}).Get("https://127.0.0.1:1/")
	assertUnavailable(t, err, "loopback")
}

func TestReasonAndConceal(t *testing.T) {
	if Reason(nil) != "" || Conceal(nil) != nil {
		t.Fatal("nil handling")
	}
	plain := errors.New("tls: first record does not look like a TLS handshake")
	c := Conceal(plain)
	assertUnavailable(t, c, "first record")
	if errors.Is(c, plain) {
		t.Fatal("Conceal exposes the original error through Unwrap")
	}
	wrapped := &url.Error{Op: "Get", URL: "http://x", Err: unavailable("why")}
	if c := Conceal(wrapped); c.Error() != "origin unavailable" || Reason(c) != "why" {
		t.Fatalf("Conceal(%v) = %v (%s)", wrapped, c, Reason(c))
	}
	if Reason(plain) != plain.Error() {
		t.Fatal("Reason of a foreign error is not its text")
	}
}
