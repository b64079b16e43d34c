package wstransport

import (
	"fmt"
	"net/url"
	"strings"
)

// origin is one allowed browser Origin: scheme, host and port, the host
// exact or, with wild, any subdomain of it (never the host itself).
type origin struct {
	scheme, host, port string
	wild               bool
}

// parseOrigin reads "https://app.example.com", "http://localhost:8080" or
// "https://*.example.com".
func parseOrigin(s string) (origin, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil || u.Fragment != "" {
		return origin{}, fmt.Errorf("origin %q: want scheme://host[:port], e.g. https://app.example.com or https://*.example.com", s)
	}
	o := origin{scheme: u.Scheme, host: strings.ToLower(u.Hostname()), port: portOf(u)}
	if rest, ok := strings.CutPrefix(o.host, "*."); ok {
		if rest == "" || strings.Contains(rest, "*") {
			return origin{}, fmt.Errorf("origin %q: a wildcard is one leading \"*.\" label", s)
		}
		o.host, o.wild = rest, true
	} else if strings.Contains(o.host, "*") {
		return origin{}, fmt.Errorf("origin %q: a wildcard is one leading \"*.\" label", s)
	}
	return o, nil
}

func portOf(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "https" {
		return "443"
	}
	return "80"
}

// allows reports whether the Origin header value v is this origin.
func (o origin) allows(v string) bool {
	u, err := url.Parse(v)
	if err != nil || u.Scheme != o.scheme || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") {
		return false
	}
	if portOf(u) != o.port {
		return false
	}
	host := strings.ToLower(u.Hostname())
	if !o.wild {
		return host == o.host
	}
	return len(host) > len(o.host)+1 && strings.HasSuffix(host, "."+o.host)
}
