package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/rs/zerolog"
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
		p, err := parsePrefix(f[1])
		if err != nil {
			return nil, fmt.Errorf("rule %d %q: %w", i+1, strings.TrimSpace(item), err)
		}
		r.prefix, r.all = p, f[1] == "all"
		a.rules = append(a.rules, r)
	}
	return a, nil
}

// parsePrefix reads a CIDR, a bare address, or "all".
func parsePrefix(s string) (netip.Prefix, error) {
	if s == "all" {
		return netip.Prefix{}, nil
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// ParsePrefixes parses a comma-separated list of CIDRs or addresses.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if item == "all" {
			return nil, fmt.Errorf("%q: name the load balancers' addresses, not all", item)
		}
		p, err := parsePrefix(item)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", item, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func containsAddr(ps []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
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

// acceptPeer applies every admission control to the peer and reads the
// PROXY header a trusted balancer sends. Only a trusted balancer's header
// can change the client address, so anybody else is judged on its own
// address at accept, before a byte is read; a balancer's connections by
// the header's address.
func (s *Server) acceptPeer(sess *Session, conn net.Conn) (net.Conn, string) {
	peer := sess.ClientAddr
	trusted := containsAddr(s.cfg.ProxyProtocolTrusted, peer.Addr())
	if !trusted {
		if reason := s.gate(sess); reason != "" {
			return conn, reason
		}
	}
	if len(s.cfg.ProxyProtocolTrusted) > 0 {
		pc, client, err := inboundHeader(conn, peer, trusted, s.cfg.HandshakeTimeout)
		if err != nil {
			s.Stats.ProxyHeaderRefused.Add(1)
			s.securityEvent(zerolog.WarnLevel, sess).Str("event", "proxy_header_refused").Stringer("peer", peer).Err(err).Msg("PROXY header refused")
			return conn, closeProxyHdr
		}
		conn, sess.ClientAddr = pc, client
	}
	if trusted {
		if reason := s.gate(sess); reason != "" {
			return conn, reason
		}
	}
	return conn, ""
}

// inboundHeader reads the PROXY header (v1 or v2) that a trusted load
// balancer must send, and refuses one from anybody else. It returns the
// connection to read MQTT from and the real client address.
func inboundHeader(c net.Conn, peer netip.AddrPort, trusted bool, timeout time.Duration) (net.Conn, netip.AddrPort, error) {
	policy := proxyproto.REJECT
	if trusted {
		policy = proxyproto.REQUIRE
	}
	pc := proxyproto.NewConn(c, proxyproto.WithPolicy(policy), proxyproto.SetReadHeaderTimeout(timeout))
	if _, err := pc.Read(nil); err != nil {
		return nil, peer, err
	}
	if h := pc.ProxyHeader(); h != nil && h.Command.IsProxy() {
		if src, ok := h.SourceAddr.(*net.TCPAddr); ok {
			return pc, addrPort(src), nil
		}
	}
	return pc, peer, nil // LOCAL (health checks) or UNSPEC: the balancer itself
}

// gate applies the access rules, then the caps, rates and IP bans, to
// the client's address, before any TLS work.
func (s *Server) gate(sess *Session) string {
	if !s.allowed(sess) {
		return closeAccess
	}
	if s.cfg.Conns == nil {
		return ""
	}
	release, refused := s.cfg.Conns.Open(sess.ClientAddr.Addr(), sess.Listener)
	if refused != "" {
		s.Stats.ConnRefused.Add(1)
		s.limitHit(sess, refused)
		return closeConnLimit
	}
	sess.release = release
	return ""
}

// allowed applies the access rules to the client's address, counting and
// logging a denial.
func (s *Server) allowed(sess *Session) bool {
	if s.cfg.Access.Allowed(sess.ClientAddr.Addr()) {
		return true
	}
	s.Stats.AccessDenied.Add(1)
	s.securityEvent(zerolog.InfoLevel, sess).Str("event", "access_denied").Stringer("client", sess.ClientAddr).Msg("access rules denied client")
	return false
}
