package proxy

import (
	"net"
	"net/netip"
	"time"

	"github.com/mqttgate/mqttgate/limits/cidr"
	"github.com/pires/go-proxyproto"
	"github.com/rs/zerolog"
)

// acceptPeer applies every admission control to the peer and reads the
// PROXY header a trusted balancer sends. Only a trusted balancer can
// change the client address, so anybody else is judged on its own
// address at accept, before a byte is read; a balancer's connections by
// the address it names.
//
// Two kinds of balancer are trusted, each by a list of its own: an L4
// balancer (Config.ProxyProtocolTrusted) must send a PROXY header, which
// names the client; an HTTP balancer in front of a WebSocket listener
// (up.Forwards) names it in X-Forwarded-For or Forwarded, and its
// connections are judged once the upgrade has read those
// (gateAfterUpgrade). A peer in both lists may do either on a WebSocket
// listener: a PROXY header, when sent, names the client, and the
// request's headers (the client's own, through an L4 balancer) are then
// not believed.
func (s *Server) acceptPeer(sess *Session, conn net.Conn, up Upgrader) (net.Conn, string) {
	peer := sess.ClientAddr
	l4 := cidr.Contains(s.cfg.ProxyProtocolTrusted, peer.Addr())
	http := up != nil && up.Forwards(peer.Addr())
	if !l4 && !http {
		if reason := s.gate(sess); reason != "" {
			return conn, reason
		}
	}
	if len(s.cfg.ProxyProtocolTrusted) > 0 {
		pc, client, err := inboundHeader(conn, peer, l4, l4 && http, s.cfg.HandshakeTimeout)
		if err != nil {
			s.Stats.ProxyHeaderRefused.Add(1)
			s.securityEvent(zerolog.WarnLevel, sess).Str("event", "proxy_header_refused").Stringer("peer", peer).Err(err).Msg("PROXY header refused")
			return conn, closeProxyHdr
		}
		sess.proxyHeader = pc.(*proxyproto.Conn).ProxyHeader() != nil
		conn, sess.ClientAddr = pc, client
	}
	if http && !sess.proxyHeader {
		sess.gateAfterUpgrade = true
		return conn, ""
	}
	if l4 {
		if reason := s.gate(sess); reason != "" {
			return conn, reason
		}
	}
	return conn, ""
}

// inboundHeader reads the PROXY header (v1 or v2) that a trusted load
// balancer must send (may, when optional), and refuses one from anybody
// else. It returns the
// connection to read MQTT from and the real client address.
func inboundHeader(c net.Conn, peer netip.AddrPort, trusted, optional bool, timeout time.Duration) (net.Conn, netip.AddrPort, error) {
	policy := proxyproto.REJECT
	switch {
	case trusted && optional:
		policy = proxyproto.USE
	case trusted:
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
	if s.cfg.Access == nil || s.cfg.Access.Allowed(sess.ClientAddr.Addr()) {
		return true
	}
	s.Stats.AccessDenied.Add(1)
	s.securityEvent(zerolog.InfoLevel, sess).Str("event", "access_denied").Stringer("client", sess.ClientAddr).Msg("access rules denied client")
	return false
}
