package proxy

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
)

// Rule decides what happens to a URL, as the classic dfdaemon's
// `proxies` list did: the first rule whose regular expression matches the
// URL wins; a URL no rule matches passes through directly.
type Rule struct {
	// Regx is matched against the whole upstream URL.
	Regx string `json:"regx"`
	// Direct passes matching requests straight to the upstream instead of
	// through P2P.
	Direct bool `json:"direct,omitempty"`
	// UseHTTPS fetches matching forward-proxy URLs over https.
	UseHTTPS bool `json:"use_https,omitempty"`
	// Redirect replaces the host of matching forward-proxy URLs.
	Redirect string `json:"redirect,omitempty"`

	re *regexp.Regexp
}

// DefaultRules send registry blobs through P2P and everything else
// directly.
func DefaultRules() []Rule {
	return []Rule{mustRule(Rule{Regx: `/v2/.+/blobs/sha256:[a-f0-9]{64}$`})}
}

func mustRule(r Rule) Rule {
	if err := r.compile(); err != nil {
		panic(err)
	}
	return r
}

func (r *Rule) compile() error {
	re, err := regexp.Compile(r.Regx)
	if err != nil {
		return fmt.Errorf("proxy rule %q: %w", r.Regx, err)
	}
	if r.Redirect != "" && strings.ContainsAny(r.Redirect, "/?#@ ") {
		return fmt.Errorf("proxy rule %q: redirect %q must be host[:port]", r.Regx, r.Redirect)
	}
	r.re = re
	return nil
}

// ParseRule parses a --proxy-rule flag value: "REGEX" or "p2p:REGEX" (P2P),
// "direct:REGEX" (pass through).
func ParseRule(s string) (Rule, error) {
	var r Rule
	switch {
	case strings.HasPrefix(s, "direct:"):
		r = Rule{Regx: strings.TrimPrefix(s, "direct:"), Direct: true}
	case strings.HasPrefix(s, "p2p:"):
		r = Rule{Regx: strings.TrimPrefix(s, "p2p:")}
	default:
		r = Rule{Regx: s}
	}
	if r.Regx == "" {
		return Rule{}, fmt.Errorf("proxy rule %q: empty regular expression", s)
	}
	return r, r.compile()
}

// LoadRules reads rules from a JSON file: {"proxies": [{"regx": ...,
// "direct": true, "use_https": true, "redirect": "host"}, ...]}, or the
// bare list.
func LoadRules(path string) ([]Rule, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("proxy rules: %w", err)
	}
	var doc struct {
		Proxies []Rule `json:"proxies"`
	}
	trimmed := strings.TrimSpace(string(b))
	if strings.HasPrefix(trimmed, "[") {
		err = json.Unmarshal(b, &doc.Proxies)
	} else {
		err = json.Unmarshal(b, &doc)
	}
	if err != nil {
		return nil, fmt.Errorf("proxy rules %s: %w", path, err)
	}
	for i := range doc.Proxies {
		if err := doc.Proxies[i].compile(); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return doc.Proxies, nil
}

// match returns the first rule matching rawURL, or nil.
func match(rules []Rule, rawURL string) *Rule {
	for i := range rules {
		if rules[i].re.MatchString(rawURL) {
			return &rules[i]
		}
	}
	return nil
}

// apply rewrites u as the rule says (https, another host).
func (r *Rule) apply(u *url.URL) {
	if r == nil {
		return
	}
	if r.UseHTTPS {
		u.Scheme = "https"
	}
	if r.Redirect != "" {
		u.Host = r.Redirect
	}
}
