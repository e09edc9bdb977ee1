package main

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// headerScope says which URLs get the -H headers: those on the mount URL's
// own scheme://host:port, and those on a --header-host HOST[:PORT] (any
// port of HOST when no port is given). A dataset manifest may name files
// anywhere; credentials meant for its own host must not follow them.
type headerScope struct {
	origin string   // scheme://host:port of the mount URL
	hosts  []string // --header-host entries, lower case
}

func newHeaderScope(rawURL string, headerHosts []string) (*headerScope, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", rawURL, err)
	}
	s := &headerScope{origin: originOf(u)}
	for _, h := range headerHosts {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == "" || strings.Contains(h, "/") {
			return nil, fmt.Errorf("--header-host %q: want HOST[:PORT]", h)
		}
		s.hosts = append(s.hosts, h)
	}
	return s, nil
}

// originOf is u's scheme://host:port with the scheme's default port made
// explicit.
func originOf(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[strings.ToLower(u.Scheme)]
	}
	return strings.ToLower(u.Scheme) + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// allows reports whether rawURL may get the headers.
func (s *headerScope) allows(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return false
	}
	if originOf(u) == s.origin {
		return true
	}
	host := strings.ToLower(u.Hostname())
	hostport := strings.TrimPrefix(originOf(u), strings.ToLower(u.Scheme)+"://")
	for _, h := range s.hosts {
		if h == host || h == hostport || (strings.HasPrefix(h, "[") && strings.TrimSuffix(strings.TrimPrefix(h, "["), "]") == host) {
			return true
		}
	}
	return false
}

// header is h for rawURL when it may get the headers, else nil.
func (s *headerScope) header(rawURL string, h http.Header) http.Header {
	if len(h) == 0 || !s.allows(rawURL) {
		return nil
	}
	return h
}
