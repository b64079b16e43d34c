package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/rs/zerolog"

	"github.com/mqttgate/mqttgate/authn/identity"
	"github.com/mqttgate/mqttgate/mqttwire"
)

// initialReadBuffer is the size of the pooled buffer a direction reads
// into while bytes are in hand; it grows only for larger packets, up to
// the packet size limit.
const initialReadBuffer = 4096

func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		ap := t.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// handle runs one connection from accept until it is admitted, then
// hands it to the pumps on a goroutine of their own: this one's stack grew
// through authentication and the rest of the admission, and an idle
// connection would otherwise keep that stack for its life.
func (s *Server) handle(sess *Session, tlsConfig *tls.Config, up Upgrader) {
	sess.ClientAddr = addrPort(sess.client.RemoteAddr())
	conn, reason := s.admit(sess, sess.client, tlsConfig, up)
	if reason != "" {
		s.finish(sess, reason, false)
		return
	}
	go func() { s.finish(sess, s.pump(sess, conn), true) }()
}

// finish ends a connection: both sides closed, its gate slot released,
// counted, logged, Config.Connects told when it had been admitted, and no
// longer tracked.
func (s *Server) finish(sess *Session, reason string, admitted bool) {
	defer s.wg.Done()
	sess.closeAll(reason)
	if sess.release != nil {
		sess.release()
	}
	if sess.limiter != nil {
		sess.limiter.Close(time.Now())
	}
	if sess.node >= 0 {
		s.cfg.Brokers.Done(sess.node)
	}
	s.Stats.Closed.Add(1)
	s.logClose(sess)
	// Only a session the broker accepted counts towards flapping: a broker
	// that refuses or fails before its CONNACK (TLS to it, a restart) must
	// not get its clients banned.
	if admitted && sess.answered.Load() && s.cfg.Connects != nil {
		s.cfg.Connects.Closed(sess.ClientID, sess.Identity, sess.ClientAddr.Addr())
	}
	s.untrack(sess)
}

// admit takes a connection from accept to a forwarded CONNECT, stage by
// stage. It returns the connection to read the client from (past the
// PROXY header and TLS), and a close reason, or "" once the broker
// connection is up.
func (s *Server) admit(sess *Session, conn net.Conn, tlsConfig *tls.Config, up Upgrader) (net.Conn, string) {
	conn, reason := s.acceptPeer(sess, conn, up)
	if reason != "" {
		return conn, reason
	}
	sess.localAddr = conn.LocalAddr() // the address the client connected to (from the header behind a balancer)
	if tlsConfig != nil {
		if conn, reason = s.handshake(sess, conn, tlsConfig); reason != "" {
			return conn, reason
		}
	}
	if up != nil {
		if conn, reason = s.upgrade(sess, conn, up); reason != "" {
			return conn, reason
		}
	}
	sess.setClientWriter(conn)
	r, p, c, reason := s.readConnect(sess, conn)
	if reason != "" {
		return conn, reason
	}
	forward, admitted, reason := s.authenticate(sess, conn, p, c)
	if reason != "" {
		return conn, reason
	}
	if reason := s.prepare(sess, conn, c, admitted); reason != "" {
		return conn, reason
	}
	if reason := s.dialBroker(sess, conn, c.Version, forward, admitted); reason != "" {
		return conn, reason
	}
	sess.bytesIn.Add(int64(len(p.Raw)))
	if tr := s.cfg.Traffic; tr != nil {
		tr.count(FromClient, p)
	}
	_ = conn.SetDeadline(time.Time{})
	s.logOpen(sess)
	sess.reader = r
	return conn, ""
}

// readConnect reads the first packet, which must be a CONNECT, within the
// connect timeout, and applies the CONNECT checks that need no
// authentication (a banned client costs no hashing).
func (s *Server) readConnect(sess *Session, conn net.Conn) (*mqttwire.Reader, mqttwire.Packet, *mqttwire.Connect, string) {
	// Writes too: a WebSocket client that floods pings and reads no pong
	// must not outlive the CONNECT deadline.
	_ = conn.SetDeadline(time.Now().Add(s.cfg.ConnectTimeout))
	r := mqttwire.NewReader(conn, initialReadBuffer, s.cfg.MaxPacketSize)
	r.UsePool(s.bufs)
	p, err := r.Next()
	if err != nil {
		s.Stats.NoConnect.Add(1)
		s.securityEvent(zerolog.InfoLevel, sess).Str("event", "no_connect").Stringer("client", sess.ClientAddr).Err(err).Msg("no CONNECT")
		return nil, p, nil, closeNoConnect
	}
	if p.Type != mqttwire.CONNECT {
		s.Stats.NoConnect.Add(1)
		s.securityEvent(zerolog.InfoLevel, sess).Str("event", "no_connect").Stringer("client", sess.ClientAddr).Stringer("packet", p.Type).Msg("first packet is not CONNECT")
		return nil, p, nil, closeNoConnect // [MQTT-3.1.0-1]
	}
	c, err := mqttwire.ParseConnect(p)
	sess.Version = c.Version
	if err != nil {
		s.Stats.BadPacket.Add(1)
		s.securityEvent(zerolog.InfoLevel, sess).Str("event", "bad_connect").Stringer("client", sess.ClientAddr).Err(err).Msg("malformed CONNECT")
		switch code := mqttwire.ReasonOf(err); {
		case code == mqttwire.UnsupportedProtocolVersion && c.Version != mqttwire.V5:
			s.refuse(sess, conn, mqttwire.V311, code) // [MQTT-3.1.2-2]
		case c.Version == mqttwire.V5:
			s.refuse(sess, conn, mqttwire.V5, code)
		}
		return nil, p, nil, closeProtocol
	}
	sess.ClientID, sess.Username = string(c.ClientID), string(c.Username)
	if reason := s.checkConnect(sess, conn, &c); reason != "" {
		return nil, p, nil, reason
	}
	return r, p, &c, ""
}

// authenticate asks the Authenticator and applies the CONNECT checks
// again with the identity it gave. It returns the CONNECT to forward
// (rewritten when the identity mapping says so) and as admitted.
func (s *Server) authenticate(sess *Session, conn net.Conn, p mqttwire.Packet, c *mqttwire.Connect) (forward []byte, admitted *mqttwire.Connect, reason string) {
	var adm Admission // no authenticator: refused
	if s.cfg.Authenticator != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ConnectTimeout)
		adm = s.cfg.Authenticator.Authenticate(ctx, c, identity.Peer{Addr: sess.ClientAddr, Listener: sess.Listener, Cert: sess.ClientCert(), Token: sess.token})
		cancel()
	}
	if !adm.Admit {
		s.Stats.AuthRefused.Add(1)
		code := adm.Reason
		if !code.IsError() {
			code = mqttwire.NotAuthorized
		}
		s.auditRefused(sess, code, "refused")
		s.refuse(sess, conn, c.Version, code)
		return nil, nil, closeAuth
	}
	if adm.Identity != nil {
		sess.expires = adm.Identity.Expires
	}
	if !sess.expires.IsZero() && !time.Now().Before(sess.expires) {
		s.Stats.AuthRefused.Add(1)
		s.auditRefused(sess, mqttwire.NotAuthorized, "credentials expired")
		s.refuse(sess, conn, c.Version, mqttwire.NotAuthorized)
		return nil, nil, closeExpired
	}
	sess.Identity = adm.Identity
	forward, admitted = p.Raw, c
	if adm.Connect != nil {
		forward, admitted = mqttwire.AppendConnect(nil, adm.Connect), adm.Connect
		sess.ClientID, sess.Username = string(adm.Connect.ClientID), string(adm.Connect.Username)
	}
	if reason := s.checkConnect(sess, conn, admitted); reason != "" {
		return nil, nil, reason // the identity the credential gave may be banned
	}
	return forward, admitted, ""
}

// auditRefused writes an authentication refusal to the audit trail.
func (s *Server) auditRefused(sess *Session, code mqttwire.ReasonCode, why string) {
	ev := s.cfg.Audit.Event("auth_refused")
	if ev == nil {
		return
	}
	ev = ev.Uint64("conn", sess.ID).Stringer("client", sess.ClientAddr).Str("listener", sess.Listener).Str("client_id", sess.ClientID).
		Str("why", why).Uint8("reason_code", uint8(code))
	if sess.Username != "" && !s.cfg.UsernameIsSecret {
		ev = ev.Str("username", sess.Username)
	}
	if cert := sess.ClientCert(); cert != nil {
		ev = ev.Str("cert_cn", cert.Subject.CommonName)
	}
	ev.Send()
}

// prepare sets up what the pumps enforce for an admitted client: the
// keepalive, its limits and topic rights, and refuses a will it may not
// publish.
func (s *Server) prepare(sess *Session, conn net.Conn, c, admitted *mqttwire.Connect) string {
	sess.cleanStart = admitted.CleanStart
	sess.keepAlive = time.Duration(c.KeepAlive) * time.Second
	if s.cfg.Limits != nil {
		sess.limiter = s.cfg.Limits(sess, admitted)
		sess.keepAlive, sess.keepAliveCapped = sess.limiter.KeepAlive(c.KeepAlive)
	}
	if s.cfg.Topics == nil {
		return ""
	}
	sess.topics.rights = s.cfg.Topics(sess)
	if c.Version == mqttwire.V5 {
		// The broker may send this client Topic Aliases: they are noted
		// from the first delivery, so that the delivery check, should it
		// turn on later, knows every alias the broker set.
		n, _, _ := c.Properties.Lookup(mqttwire.PropTopicAliasMaximum)
		sess.topics.noteAliases = n > 0
	}
	// A client that does not ask for a clean start may be given the
	// session the broker kept for its client id, with subscriptions the
	// proxy never judged for this client (another user's, made under
	// other rules): its deliveries are judged from the CONNACK on if the
	// broker reports Session Present (a 3.1 client is taken as resumed:
	// its CONNACK does not say; see connackSeen).
	sess.resumable = !sess.cleanStart
	if s.cfg.TopicCheckDelivery {
		s.judgeDeliveries(sess)
	}
	// The delivery check may turn on at any time (a resumed session, a
	// filter granted in part), and it acknowledges from the broker pump.
	sess.brokerShared = true
	if !s.checkWill(sess, c) {
		s.refuse(sess, conn, c.Version, mqttwire.NotAuthorized)
		return closeTopicDenied
	}
	return ""
}

// errNoBroker: every broker node is down or was tried.
var errNoBroker = errors.New("no broker node is up")

// checkConnect applies Config.Connects (bans, client id length).
func (s *Server) checkConnect(sess *Session, conn net.Conn, c *mqttwire.Connect) string {
	if s.cfg.Connects == nil {
		return ""
	}
	code, kind := s.cfg.Connects.Check(sess.Identity, sess.ClientAddr.Addr(), c)
	if !code.IsError() {
		return ""
	}
	s.limitHit(sess, kind)
	s.refuse(sess, conn, c.Version, code)
	if code == mqttwire.Banned {
		return closeBanned
	}
	return closeLimit
}

// refuse answers a CONNECT with a failure CONNACK.
func (s *Server) refuse(sess *Session, c net.Conn, v mqttwire.Version, code mqttwire.ReasonCode) {
	sess.writeClientLast(c, mqttwire.AppendConnack(nil, v, false, code, nil), false)
}
