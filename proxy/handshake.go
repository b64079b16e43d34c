package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"time"

	"github.com/rs/zerolog"
)

// handshake runs the TLS handshake under the handshake timeout, in a
// goroutine of its own: the handshake's deep crypto calls grow a stack
// that would otherwise stay with the connection for its life.
func (s *Server) handshake(sess *Session, conn net.Conn, tlsConfig *tls.Config) (net.Conn, string) {
	tc := tls.Server(conn, tlsConfig)
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.HandshakeTimeout)
	hs := make(chan error, 1)
	began := time.Now()
	go func() { hs <- tc.HandshakeContext(ctx) }()
	err := <-hs
	cancel()
	if o := s.cfg.Observer; o != nil {
		var st *tls.ConnectionState
		if err == nil {
			cs := tc.ConnectionState()
			st = &cs
		}
		o.Handshake(st, err, time.Since(began))
	}
	if err != nil {
		s.Stats.HandshakeFailed.Add(1)
		s.securityEvent(zerolog.InfoLevel, sess).Str("event", "tls_handshake_failed").Stringer("client", sess.ClientAddr).Err(err).Msg("TLS handshake failed")
		return conn, closeHandshake
	}
	st := tc.ConnectionState()
	sess.TLS = &st
	return tc, ""
}

// upgrade runs the WebSocket upgrade within the handshake timeout. A
// client address forwarded by a trusted balancer replaces the one known
// so far once the access rules allow it (before the upgrade is granted).
func (s *Server) upgrade(sess *Session, conn net.Conn, up Upgrader) (net.Conn, string) {
	// One handshake timeout from accept for the PROXY header, TLS and the
	// upgrade together: a slow TLS handshake leaves the upgrade less.
	_ = conn.SetDeadline(sess.start.Add(s.cfg.HandshakeTimeout))
	// The peer whose forwarding headers may be believed: the TCP peer,
	// and nobody once a PROXY header named the client (an L4 balancer
	// passes the client's own headers through, and a client so named was
	// gated as itself: a header naming another would skip that).
	peer := addrPort(sess.client.RemoteAddr())
	if sess.proxyHeader {
		peer = netip.AddrPort{}
	}
	stream, client, token, err := up.Upgrade(conn, peer, func(a netip.AddrPort) bool {
		return s.cfg.Access == nil || s.cfg.Access.Allowed(a.Addr())
	})
	_ = conn.SetDeadline(time.Time{})
	if err != nil {
		s.Stats.UpgradeRefused.Add(1)
		s.securityEvent(zerolog.InfoLevel, sess).Str("event", "ws_upgrade_refused").Stringer("client", sess.ClientAddr).Err(err).Msg("WebSocket upgrade refused")
		return conn, closeUpgrade
	}
	if client.IsValid() {
		sess.ClientAddr = client
	}
	sess.token = token
	if sess.gateAfterUpgrade { // a trusted balancer's connection: judged as the client it names
		if reason := s.gate(sess); reason != "" {
			return stream, reason
		}
	}
	return stream, ""
}
