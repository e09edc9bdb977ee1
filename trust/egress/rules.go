package egress

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// entry is one parsed --allow-origin or --deny-origin value: a hostname
// (matched against the host as written in the URL) or an IP range (matched
// against every resolved address), optionally restricted to one port.
type entry struct {
	raw    string
	host   string       // lower-case hostname without a trailing dot; "" for an IP entry
	prefix netip.Prefix // IP entries: the CIDR, or the single address
	port   uint16       // 0: any port (always 0 for a CIDR)
}

// parseEntry parses HOST[:PORT] or CIDR. HOST is a hostname, an IPv4
// address or an IPv6 address (in brackets when a port follows).
func parseEntry(s string) (entry, error) {
	e := entry{raw: s}
	s = strings.TrimSpace(s)
	if s == "" {
		return e, errors.New("empty entry")
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return e, fmt.Errorf("not a CIDR: %v", err)
		}
		e.prefix = unmapPrefix(p.Masked())
		return e, nil
	}
	if a, err := netip.ParseAddr(s); err == nil { // bare IPv4 or IPv6, no port
		e.prefix = singleIP(a)
		return e, nil
	}
	host, port := s, ""
	switch {
	case strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]"):
		host = s[1 : len(s)-1]
	case strings.HasPrefix(s, "[") || strings.Contains(s, ":"):
		h, p, err := net.SplitHostPort(s)
		if err != nil {
			return e, fmt.Errorf("not HOST[:PORT]: %v", err)
		}
		host, port = h, p
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return e, fmt.Errorf("port %q is not a number from 1 to 65535", port)
		}
		e.port = uint16(n)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		e.prefix = singleIP(a)
		return e, nil
	}
	if strings.HasPrefix(s, "[") {
		return e, fmt.Errorf("%q in brackets is not an IPv6 address", host)
	}
	h, ok := normHost(host)
	if !ok {
		return e, fmt.Errorf("%q is not a hostname, IP address or CIDR", host)
	}
	e.host = h
	return e, nil
}

// matches reports whether the entry covers a connection to ip:port for a
// URL whose host was written as host (normalised with normHost).
func (e entry) matches(host string, ip netip.Addr, port uint16) bool {
	if e.port != 0 && e.port != port {
		return false
	}
	if e.host != "" {
		return e.host == host
	}
	return e.prefix.Contains(ip)
}

// names reports whether the entry names exactly host:port or ip:port (a
// HOST:PORT entry, not a CIDR or a port-less host).
func (e entry) names(host string, ip netip.Addr, port uint16) bool {
	if e.port == 0 || e.port != port {
		return false
	}
	if e.host != "" {
		return e.host == host
	}
	return e.prefix.IsSingleIP() && e.prefix.Addr() == ip
}

// normHost lower-cases a hostname and drops one trailing dot; ok is false
// when it is not a syntactically valid DNS name (letters, digits, '-' and
// '_' in labels of 1 to 63 bytes, 253 bytes in all).
func normHost(h string) (string, bool) {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if h == "" || len(h) > 253 {
		return "", false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return "", false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", false
			}
		}
	}
	return h, true
}

// normAddr is the form every check works on: no zone, IPv4-mapped IPv6
// (::ffff:a.b.c.d) turned into plain IPv4.
func normAddr(a netip.Addr) netip.Addr { return a.WithZone("").Unmap() }

func singleIP(a netip.Addr) netip.Prefix {
	a = normAddr(a)
	return netip.PrefixFrom(a, a.BitLen())
}

// unmapPrefix turns a prefix inside ::ffff:0:0/96 into the IPv4 prefix it
// denotes, so that it matches unmapped addresses.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}

var (
	// metadataAddrs are cloud instance-metadata services (AWS, GCP, Azure,
	// OpenStack: 169.254.169.254; AWS over IPv6: fd00:ec2::254; Alibaba:
	// 100.100.100.200). metadata.google.internal resolves to the first.
	metadataAddrs = []netip.Addr{
		netip.MustParseAddr("169.254.169.254"),
		netip.MustParseAddr("fd00:ec2::254"),
		netip.MustParseAddr("100.100.100.200"),
	}
	broadcast4  = netip.MustParseAddr("255.255.255.255")
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")

	// IPv6 forms that embed an IPv4 address in their last 32 bits (or, for
	// 6to4, bits 16 to 48): IPv4-translated (RFC 2765), NAT64's well-known
	// prefix (RFC 6052), IPv4-compatible (deprecated) and 6to4 (RFC 3056).
	translated = netip.MustParsePrefix("::ffff:0:0:0/96")
	nat64      = netip.MustParsePrefix("64:ff9b::/96")
	compatible = netip.MustParsePrefix("::/96")
	sixToFour  = netip.MustParsePrefix("2002::/16")
)

// builtin classifies a normalised address against the built-in refusals.
// reason is "" when the address is not refused by default; never means no
// allow entry can lift the refusal (the address cannot be a real origin and
// reaches the local host or a group of hosts).
func builtin(ip netip.Addr) (reason string, never bool) {
	switch {
	case ip.IsUnspecified():
		return "the unspecified address", true
	case ip.Is4() && thisNetwork.Contains(ip):
		return "in 0.0.0.0/8 (this host)", true
	case ip == broadcast4:
		return "the broadcast address", true
	case ip.IsMulticast():
		return "multicast", true
	case ip.IsLoopback():
		return "loopback", false
	}
	for _, m := range metadataAddrs {
		if ip == m {
			return "a cloud metadata address", false
		}
	}
	if ip.IsLinkLocalUnicast() {
		return "link-local", false
	}
	if v4, ok := embeddedIPv4(ip); ok {
		if r, never := builtin(v4); r != "" {
			return "embeds " + v4.String() + " which is " + r, never
		}
	}
	return "", false
}

// embeddedIPv4 extracts the IPv4 address an IPv6 transition address carries.
func embeddedIPv4(ip netip.Addr) (netip.Addr, bool) {
	if !ip.Is6() {
		return netip.Addr{}, false
	}
	b := ip.As16()
	switch {
	case translated.Contains(ip), nat64.Contains(ip), compatible.Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFour.Contains(ip):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}
