// Package cidr reads the address ranges that access rules, trusted
// balancers, bans and ACL rules name: the one parser for all of them.
package cidr

import (
	"fmt"
	"net/netip"
	"strings"
)

// Parse reads a CIDR (masked to its network) or a bare address (a prefix
// of that one address). IPv4-mapped IPv6 forms are read as IPv4, since
// clients' addresses are compared unmapped: ::ffff:10.0.0.0/104 is
// 10.0.0.0/8; a mapped prefix shorter than /96 is refused (it would
// match no IPv4 client).
func Parse(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, err
		}
		if p.Addr().Is4In6() { // as written, before masking
			if p.Bits() < 96 {
				return netip.Prefix{}, fmt.Errorf("%q: an IPv4-mapped prefix shorter than /96; name the IPv4 range", s)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ParseList reads a comma-separated list of CIDRs or addresses; empty
// items are skipped, and "all" is refused: a list names addresses.
func ParseList(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if item == "all" {
			return nil, fmt.Errorf("%q: name the addresses, not all", item)
		}
		p, err := Parse(item)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", item, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// Contains reports whether any of ps holds a.
func Contains(ps []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
