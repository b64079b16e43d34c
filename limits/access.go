package limits

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/mqttgate/mqttgate/limits/cidr"
)

// AccessRules is an ordered list of allow/deny CIDR rules; the first rule
// that matches an address decides. An address no rule matches is denied.
type AccessRules struct {
	rules []accessRule
}

type accessRule struct {
	allow  bool
	prefix netip.Prefix
	all    bool
}

// ParseAccessRules parses a comma-separated list such as
// "allow 10.0.0.0/8, allow ::1, deny all". An empty string allows everyone.
func ParseAccessRules(s string) (*AccessRules, error) {
	a := &AccessRules{}
	if strings.TrimSpace(s) == "" {
		a.rules = []accessRule{{allow: true, all: true}}
		return a, nil
	}
	for i, item := range strings.Split(s, ",") {
		f := strings.Fields(item)
		if len(f) != 2 {
			return nil, fmt.Errorf("rule %d %q: want \"allow|deny CIDR|all\"", i+1, strings.TrimSpace(item))
		}
		var r accessRule
		switch strings.ToLower(f[0]) {
		case "allow":
			r.allow = true
		case "deny":
		default:
			return nil, fmt.Errorf("rule %d %q: action must be allow or deny", i+1, strings.TrimSpace(item))
		}
		p, err := accessPrefix(f[1])
		if err != nil {
			return nil, fmt.Errorf("rule %d %q: %w", i+1, strings.TrimSpace(item), err)
		}
		r.prefix, r.all = p, f[1] == "all"
		a.rules = append(a.rules, r)
	}
	return a, nil
}

// accessPrefix reads a CIDR, a bare address, or "all".
func accessPrefix(s string) (netip.Prefix, error) {
	if s == "all" {
		return netip.Prefix{}, nil
	}
	return cidr.Parse(s)
}

// Allowed reports whether a client at addr may connect.
func (a *AccessRules) Allowed(addr netip.Addr) bool {
	if a == nil {
		return true
	}
	addr = addr.Unmap()
	for _, r := range a.rules {
		if r.all || r.prefix.Contains(addr) {
			return r.allow
		}
	}
	return false
}
