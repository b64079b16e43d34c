package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/rs/zerolog"

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
func (s *Server) handle(sess *Session, tlsConfig *tls.Config) {
	var conn net.Conn = sess.client
	sess.ClientAddr = addrPort(conn.RemoteAddr())
	if reason := s.admit(sess, &conn, tlsConfig); reason != "" {
		s.finish(sess, reason, false)
		return
	}
	go func() { s.finish(sess, s.pump(sess, conn), true) }()
}

// finish ends a connection: both sides closed, its gate slot released,
// counted, logged, Config.OnClose told when it had been admitted, and no
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
	s.Stats.Closed.Add(1)
	s.logClose(sess)
	if admitted && s.cfg.OnClose != nil {
		s.cfg.OnClose(sess)
	}
	s.untrack(sess)
}

// admit takes a connection from accept to a forwarded CONNECT. It returns
// a close reason, or "" once the broker connection is up.
func (s *Server) admit(sess *Session, conn *net.Conn, tlsConfig *tls.Config) string {
	log := &s.cfg.Logger
	peer := sess.ClientAddr
	// Only a trusted balancer's header can change the client address, so
	// anybody else is judged on its own address by every admission
	// control (access rules, caps, rates, IP bans) at accept, before a
	// byte is read; a balancer's connections by the header's address.
	trusted := containsAddr(s.cfg.ProxyProtocolTrusted, peer.Addr())
	if !trusted {
		if reason := s.gate(sess); reason != "" {
			return reason
		}
	}
	if len(s.cfg.ProxyProtocolTrusted) > 0 {
		pc, client, err := inboundHeader(*conn, peer, trusted, s.cfg.HandshakeTimeout)
		if err != nil {
			s.Stats.ProxyHeaderRefused.Add(1)
			s.securityEvent(zerolog.WarnLevel, sess).Str("event", "proxy_header_refused").Stringer("peer", peer).Err(err).Msg("PROXY header refused")
			return closeProxyHdr
		}
		*conn, sess.ClientAddr = pc, client
	}
	if trusted {
		if reason := s.gate(sess); reason != "" {
			return reason
		}
	}
	sess.localAddr = (*conn).LocalAddr() // the address the client connected to (from the header behind a balancer)
	if tlsConfig != nil {
		tc := tls.Server(*conn, tlsConfig)
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.HandshakeTimeout)
		// In a goroutine of its own: the handshake's deep crypto calls grow
		// a stack that would otherwise stay with the connection for its life.
		hs := make(chan error, 1)
		go func() { hs <- tc.HandshakeContext(ctx) }()
		err := <-hs
		cancel()
		if err != nil {
			s.Stats.HandshakeFailed.Add(1)
			s.securityEvent(zerolog.InfoLevel, sess).Str("event", "tls_handshake_failed").Stringer("client", sess.ClientAddr).Err(err).Msg("TLS handshake failed")
			return closeHandshake
		}
		st := tc.ConnectionState()
		sess.TLS = &st
		*conn = tc
	}
	sess.setClientWriter(*conn)

	// The first packet must be a CONNECT, within the connect timeout.
	_ = (*conn).SetReadDeadline(time.Now().Add(s.cfg.ConnectTimeout))
	r := mqttwire.NewReader(*conn, initialReadBuffer, s.cfg.MaxPacketSize)
	r.UsePool(s.bufs)
	p, err := r.Next()
	if err != nil {
		s.Stats.NoConnect.Add(1)
		s.securityEvent(zerolog.InfoLevel, sess).Str("event", "no_connect").Stringer("client", sess.ClientAddr).Err(err).Msg("no CONNECT")
		return closeNoConnect
	}
	if p.Type != mqttwire.CONNECT {
		s.Stats.NoConnect.Add(1)
		s.securityEvent(zerolog.InfoLevel, sess).Str("event", "no_connect").Stringer("client", sess.ClientAddr).Stringer("packet", p.Type).Msg("first packet is not CONNECT")
		return closeNoConnect // [MQTT-3.1.0-1]
	}
	c, err := mqttwire.ParseConnect(p)
	sess.Version = c.Version
	if err != nil {
		s.Stats.BadPacket.Add(1)
		s.securityEvent(zerolog.InfoLevel, sess).Str("event", "bad_connect").Stringer("client", sess.ClientAddr).Err(err).Msg("malformed CONNECT")
		switch code := mqttwire.ReasonOf(err); {
		case code == mqttwire.UnsupportedProtocolVersion && c.Version != mqttwire.V5:
			s.refuse(sess, *conn, mqttwire.V311, code) // [MQTT-3.1.2-2]
		case c.Version == mqttwire.V5:
			s.refuse(sess, *conn, mqttwire.V5, code)
		}
		return closeProtocol
	}
	sess.ClientID, sess.Username = string(c.ClientID), string(c.Username)
	if reason := s.checkConnect(sess, *conn, &c); reason != "" {
		return reason // before authentication: a banned client costs no hashing
	}

	forward := p.Raw
	var adm Admission // no authenticator: refused
	if s.cfg.Authenticator != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ConnectTimeout)
		adm = s.cfg.Authenticator.Authenticate(ctx, sess, &c)
		cancel()
	}
	if !adm.Admit {
		s.Stats.AuthRefused.Add(1)
		code := adm.Reason
		if !code.IsError() {
			code = mqttwire.NotAuthorized
		}
		s.refuse(sess, *conn, c.Version, code)
		return closeAuth
	}
	if !adm.Expires.IsZero() && !time.Now().Before(adm.Expires) {
		s.Stats.AuthRefused.Add(1)
		s.refuse(sess, *conn, c.Version, mqttwire.NotAuthorized)
		return closeExpired
	}
	sess.Identity, sess.expires = adm.Identity, adm.Expires
	admitted := &c
	if adm.Connect != nil {
		forward, admitted = mqttwire.AppendConnect(nil, adm.Connect), adm.Connect
		sess.ClientID, sess.Username = string(adm.Connect.ClientID), string(adm.Connect.Username)
	}
	if reason := s.checkConnect(sess, *conn, admitted); reason != "" {
		return reason // the identity the credential gave may be banned
	}
	sess.keepAlive, sess.keepAliveCapped = effectiveKeepAlive(c.KeepAlive, s.cfg.MaxKeepAlive)
	if s.cfg.Limits != nil {
		sess.limiter = s.cfg.Limits(sess, admitted)
	}
	if s.cfg.Topics != nil {
		sess.topics.rights = s.cfg.Topics(sess)
		// A client that does not ask for a clean start may be given the
		// session the broker kept for its client id, with subscriptions
		// the proxy never judged for this client (another user's, made
		// under other rules): its deliveries are judged from the CONNACK
		// on if the broker reports Session Present. MQTT 3.1's CONNACK
		// does not say, so such a 3.1 client is always judged.
		sess.resumable = !admitted.CleanStart
		if s.cfg.TopicCheckDelivery || (sess.resumable && c.Version == mqttwire.V31) {
			sess.topics.recv = s.cfg.Topics(sess) // its own: each pump's rights are its alone
		}
		sess.brokerShared = sess.topics.recv != nil || sess.resumable
		if !s.checkWill(sess, &c) {
			s.refuse(sess, *conn, c.Version, mqttwire.NotAuthorized)
			return closeTopicDenied
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.DialTimeout)
	bc, err := s.cfg.Dial(ctx, "tcp", s.cfg.Backend)
	cancel()
	if err != nil {
		s.Stats.BackendDown.Add(1)
		log.Error().Str("event", "broker_unavailable").Str("backend", s.cfg.Backend).Err(err).Msg("cannot reach broker")
		s.refuse(sess, *conn, c.Version, mqttwire.ServerUnavailable)
		return closeBackend
	}
	bc = direct(bc)
	if !sess.setBroker(bc) {
		bc.Close()
		return closeShutdown
	}
	out := forward
	if s.cfg.BackendProxyProtocol {
		hdr, err := outboundHeader(sess)
		if err != nil {
			log.Error().Err(err).Msg("building PROXY header")
			s.refuse(sess, *conn, c.Version, mqttwire.ServerUnavailable)
			return closeBackend
		}
		out = append(hdr, forward...)
	}
	if _, err := bc.Write(out); err != nil {
		s.refuse(sess, *conn, c.Version, mqttwire.ServerUnavailable)
		return closeBackend
	}
	sess.bytesIn.Add(int64(len(p.Raw)))
	_ = (*conn).SetReadDeadline(time.Time{})
	s.logOpen(sess)
	sess.reader = r
	return ""
}

// checkConnect applies Config.CheckConnect (bans, client id length).
func (s *Server) checkConnect(sess *Session, conn net.Conn, c *mqttwire.Connect) string {
	if s.cfg.CheckConnect == nil {
		return ""
	}
	code, kind := s.cfg.CheckConnect(sess, c)
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

// refuse answers a CONNECT with a failure CONNACK.
func (s *Server) refuse(sess *Session, c net.Conn, v mqttwire.Version, code mqttwire.ReasonCode) {
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_ = sess.writeClient(c, mqttwire.AppendConnack(nil, v, false, code, nil))
}

// pump runs the two directions until either ends, and returns why.
func (s *Server) pump(sess *Session, client net.Conn) string {
	done := make(chan string, 1)
	go func() { done <- s.brokerToClient(sess, client) }()
	if !sess.expires.IsZero() {
		expired := time.AfterFunc(time.Until(sess.expires), func() {
			s.Stats.Expired.Add(1)
			s.cfg.Logger.Info().Str("event", "credentials_expired").Uint64("conn", sess.ID).Stringer("client", sess.ClientAddr).
				Str("client_id", sess.ClientID).Msg("credentials expired: disconnecting")
			s.disconnect(sess, client, mqttwire.NotAuthorized)
			sess.closeAll(closeExpired)
		})
		defer expired.Stop()
	}
	reason := s.clientToBroker(sess, client)
	sess.closeAll(reason)
	<-done
	return sess.closeReason()
}

// clientToBroker frames, validates and inspects every client packet, and
// writes runs of forwarded packets to the broker from the read buffer.
func (s *Server) clientToBroker(sess *Session, client net.Conn) string {
	r, v := sess.reader, sess.Version
	r.HoldPackets()
	r.Written()
	// flush writes b, held bytes, and marks everything held as dealt with.
	lim := sess.limiter
	flush := func(b []byte) bool {
		defer r.Written()
		if len(b) == 0 {
			return true
		}
		if lim != nil {
			lim.Commit()
		}
		return sess.writeBroker(b) == nil
	}
	in := new(Inspected)
	var now time.Time // of the last read from the client, once a PUBLISH needed it
	for {
		if !r.Buffered() {
			if !flush(r.Held()) {
				return closeBroker
			}
			now = time.Time{}
			if sess.keepAlive > 0 { // a silent client is gone after 1.5 keepalives
				_ = client.SetReadDeadline(time.Now().Add(sess.keepAlive * 3 / 2))
			}
		}
		p, err := r.Next()
		if err != nil {
			flush(r.Held())
			if ne, ok := err.(net.Error); ok && ne.Timeout() && sess.keepAlive > 0 {
				s.limitHit(sess, "keepalive")
				s.disconnect(sess, client, mqttwire.KeepAliveTimeout)
				return closeKeepAlive
			}
			return s.readFailed(sess, client, err)
		}
		in.Packet = p
		switch p.Type {
		case mqttwire.PUBLISH:
			in.Publish, err = mqttwire.ParsePublish(p, v)
		case mqttwire.SUBSCRIBE, mqttwire.UNSUBSCRIBE:
			in.Subscribe, err = mqttwire.ParseSubscribe(p, v)
		default:
			err = mqttwire.Validate(p, v)
		}
		if err != nil {
			flush(r.HeldBefore(p))
			return s.readFailed(sess, client, err)
		}
		if p.Type == mqttwire.PUBREL && len(sess.refusedQoS2) > 0 {
			if verdict, reason := s.releaseRefused(sess, client, r, p, flush); verdict != topicForward {
				if verdict == topicEnd {
					return reason
				}
				continue
			}
		}
		if p.Type == mqttwire.DISCONNECT {
			sess.disconnected.Store(true)
			if lim != nil {
				sessionExpiry(lim, p, v)
			}
		}
		// Limits see every packet before the ACL: topic sizes are
		// checked before an alias is stored, and SUBSCRIBE before the
		// ACL rewrites it; a PUBLISH is counted in flight only once
		// every stage forwards it.
		if lim != nil {
			if verdict, reason := s.decided(sess, client, r, in, lim.Check(in), flush, true); verdict != topicForward {
				if verdict == topicEnd {
					return reason
				}
				continue
			}
		}
		if sess.topics.rights != nil {
			switch verdict, reason := s.checkTopics(sess, client, r, in, flush); verdict {
			case topicHandled:
				continue
			case topicEnd:
				return reason
			}
		}
		if s.cfg.Inspector != nil {
			if verdict, reason := s.decided(sess, client, r, in, s.cfg.Inspector.Inspect(sess, in), flush, false); verdict != topicForward {
				if verdict == topicEnd {
					return reason
				}
				continue
			}
		}
		if lim != nil {
			lim.Sent(in)
			if p.Type == mqttwire.PUBLISH {
				if reason := s.pace(sess, client, r, p, &now, flush); reason != "" {
					return reason
				}
			}
		}
	}
}

// pace spends a forwarded PUBLISH's rate tokens before it is written on.
// When the client is over its rate, what was read before the packet goes
// on now and the pump holds the packet (and stops reading: TCP
// backpressure, as mature brokers apply) until the tokens are there; or
// ends the session when the rate is configured to disconnect.
func (s *Server) pace(sess *Session, client net.Conn, r *mqttwire.Reader, p mqttwire.Packet, now *time.Time, flush func([]byte) bool) string {
	lim := sess.limiter
	if now.IsZero() {
		*now = time.Now()
	}
	for {
		d := lim.Take(len(p.Raw), *now)
		if d == 0 {
			return ""
		}
		if t := time.Now(); t.After(*now) { // the read's time may be stale
			*now = t
			if d = lim.Take(len(p.Raw), t); d == 0 {
				return ""
			}
		}
		if !flush(r.HeldBefore(p)) {
			return closeBroker
		}
		r.WrittenBefore(p) // flush marked p too: it is still to be written
		if reason := s.throttle(sess, client, d); reason != "" {
			return reason
		}
		*now = time.Now()
	}
}

// decided carries out a limiter's or an inspector's decision on a packet.
func (s *Server) decided(sess *Session, client net.Conn, r *mqttwire.Reader, in *Inspected, d Decision, flush func([]byte) bool, limit bool) (topicVerdict, string) {
	if d.Verdict == Forward {
		return topicForward, ""
	}
	closeReason := closeInspector
	if limit {
		s.limitHit(sess, d.Kind)
		closeReason = closeLimit
	}
	if !flush(r.HeldBefore(in.Packet)) {
		return topicEnd, closeBroker
	}
	if d.Verdict == Refuse {
		s.Stats.Refused.Add(1)
		if v, reason := s.answer(sess, client, in, d.Reason); v != topicForward {
			return v, reason
		}
	}
	s.disconnect(sess, client, d.Reason)
	return topicEnd, closeReason
}

// throttle holds the client pump (so the client's TCP window fills: the
// backpressure mature brokers apply) until it may send again, once what
// was read has been written on; or ends the session when the rate is
// configured to disconnect.
func (s *Server) throttle(sess *Session, client net.Conn, d time.Duration) string {
	s.Stats.Throttled.Add(1)
	if s.cfg.RateDisconnect {
		s.limitHit(sess, "publish_rate")
		s.disconnect(sess, client, mqttwire.MessageRateTooHigh)
		return closeLimit
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return ""
	case <-sess.done:
		return closeClient
	}
}

// maxRefusedQoS2 bounds the QoS 2 PUBLISHes a client may leave refused
// and unreleased: a client that never sends their PUBREL could otherwise
// make the proxy hold 65,535 packet ids.
const maxRefusedQoS2 = 1024

// answer is the proxy's answer to a refused packet (see refusal), for
// every source of the refusal alike: a QoS 2 PUBLISH refused with PUBREC
// is remembered, so that its PUBREL is answered here too (releaseRefused)
// and never reaches a broker that did not see the PUBLISH. topicForward:
// the packet cannot be refused alone and the session must end.
func (s *Server) answer(sess *Session, client net.Conn, in *Inspected, code mqttwire.ReasonCode) (topicVerdict, string) {
	reply, ok := refusal(sess.Version, in, code)
	if !ok {
		return topicForward, ""
	}
	// A v5 PUBREC with a failure code ends the flow; a 3.1.1 PUBREC
	// cannot say, so its client sends PUBREL.
	if in.Packet.Type == mqttwire.PUBLISH && in.Publish.QoS == 2 && sess.Version != mqttwire.V5 {
		if sess.refusedQoS2 == nil {
			sess.refusedQoS2 = map[uint16]struct{}{}
		}
		if _, held := sess.refusedQoS2[in.Publish.PacketID]; !held && len(sess.refusedQoS2) >= maxRefusedQoS2 {
			s.limitHit(sess, "refused_unreleased")
			s.disconnect(sess, client, mqttwire.ReceiveMaximumExceeded)
			return topicEnd, closeLimit
		}
		sess.refusedQoS2[in.Publish.PacketID] = struct{}{}
	}
	if reply != nil && sess.writeClient(client, reply) != nil {
		return topicEnd, closeWriteError
	}
	return topicHandled, ""
}

// releaseRefused answers with PUBCOMP the PUBREL of a QoS 2 PUBLISH the
// proxy refused; other PUBRELs go on.
func (s *Server) releaseRefused(sess *Session, client net.Conn, r *mqttwire.Reader, p mqttwire.Packet, flush func([]byte) bool) (topicVerdict, string) {
	a, _ := mqttwire.ParseAck(p, sess.Version)
	if _, ok := sess.refusedQoS2[a.PacketID]; !ok {
		return topicForward, ""
	}
	delete(sess.refusedQoS2, a.PacketID)
	if !flush(r.HeldBefore(p)) {
		return topicEnd, closeBroker
	}
	if sess.writeClient(client, mqttwire.AppendPubAck(nil, mqttwire.PUBCOMP, sess.Version, a.PacketID, mqttwire.Success, nil)) != nil {
		return topicEnd, closeWriteError
	}
	return topicHandled, ""
}

// refusal is the proxy's own answer to a refused packet, so the client is
// not left waiting: PUBACK/PUBREC for QoS 1/2 PUBLISH (nothing for QoS 0),
// a SUBACK or UNSUBACK failing every filter. ok is false for packet types
// that cannot be refused on their own; the connection is then ended.
func refusal(v mqttwire.Version, in *Inspected, code mqttwire.ReasonCode) (reply []byte, ok bool) {
	if !code.IsError() {
		code = mqttwire.NotAuthorized
	}
	switch in.Packet.Type {
	case mqttwire.PUBLISH:
		switch in.Publish.QoS {
		case 1:
			return mqttwire.AppendPubAck(nil, mqttwire.PUBACK, v, in.Publish.PacketID, code, nil), true
		case 2:
			return mqttwire.AppendPubAck(nil, mqttwire.PUBREC, v, in.Publish.PacketID, code, nil), true
		}
		return nil, true
	case mqttwire.SUBSCRIBE, mqttwire.UNSUBSCRIBE:
		codes := make([]byte, in.Subscribe.Count)
		for i := range codes {
			codes[i] = byte(code)
		}
		if in.Subscribe.Unsubscribe {
			return mqttwire.AppendUnsuback(nil, v, in.Subscribe.PacketID, codes, nil), true
		}
		return mqttwire.AppendSuback(nil, v, in.Subscribe.PacketID, codes, nil), true
	}
	return nil, false
}

// readFailed turns a client read or validation error into a close reason,
// telling a v5 client why when the fault is in what it sent.
func (s *Server) readFailed(sess *Session, client net.Conn, err error) string {
	var perr *mqttwire.Error
	if errors.As(err, &perr) {
		s.Stats.BadPacket.Add(1)
		s.securityEvent(zerolog.InfoLevel, sess).Str("event", "protocol_error").Uint64("conn", sess.ID).Stringer("client", sess.ClientAddr).
			Str("client_id", sess.ClientID).Err(err).Msg("client protocol error")
		s.disconnect(sess, client, perr.Code)
		return closeProtocol
	}
	return closeClient // EOF, reset, or closed by the other pump
}

// disconnect sends a v5 client DISCONNECT with a reason code; v3 has no
// way to say why, so the connection is just closed.
func (s *Server) disconnect(sess *Session, client net.Conn, code mqttwire.ReasonCode) {
	if sess.Version != mqttwire.V5 {
		return
	}
	_ = client.SetWriteDeadline(time.Now().Add(time.Second))
	_ = sess.writeClient(client, mqttwire.AppendDisconnect(nil, mqttwire.V5, code, ""))
}

// brokerToClient copies broker packets to the client, whole packets at a
// time so that the proxy's own packets never land inside one.
func (s *Server) brokerToClient(sess *Session, client net.Conn) string {
	r := mqttwire.NewReader(sess.broker, initialReadBuffer, mqttwire.MaxRemainingLength)
	r.UsePool(s.bufs)
	r.HoldPackets()
	first := true
	for {
		if !r.Buffered() {
			if held := r.Held(); len(held) > 0 {
				if sess.writeClient(client, held) != nil {
					return closeClient
				}
				r.Written()
			}
		}
		p, err := r.Next()
		if err != nil {
			if held := r.Held(); len(held) > 0 {
				_ = sess.writeClient(client, held)
			}
			sess.closeAll(closeBroker)
			return closeBroker
		}
		if first {
			first = false
			if p.Type == mqttwire.CONNACK && sess.Version == mqttwire.V5 {
				if a, err := mqttwire.ParseAck(p, mqttwire.V5); err == nil {
					if n, _, ok := a.Properties.Lookup(mqttwire.PropTopicAliasMaximum); ok {
						sess.topicAliasMax.Store(n)
					}
				}
				if sess.limiter != nil {
					sessionExpiry(sess.limiter, p, sess.Version)
				}
			}
			if !s.judgeResumedSession(sess, p) {
				sess.closeAll(closeBroker)
				return closeBroker
			}
			if connack := s.rewriteConnack(sess, p, sess.keepAliveCapped); connack != nil {
				if !replacePacket(sess, client, r, p, connack) {
					return closeClient
				}
				continue
			}
		}
		if sess.limiter != nil {
			if qos, ok := finalAck(p, sess.Version); ok {
				sess.limiter.Acked(uint16(p.Body[0])<<8|uint16(p.Body[1]), qos)
			}
		}
		if merged := sess.mergeSuback(p); merged != nil {
			if !replacePacket(sess, client, r, p, merged) {
				return closeClient
			}
			continue
		}
		if sess.topics.recv != nil {
			switch s.checkDelivery(sess, p) {
			case deliveryDrop:
				if !replacePacket(sess, client, r, p, nil) {
					return closeClient
				}
			case deliveryBrokerGone:
				sess.closeAll(closeBroker)
				return closeBroker
			}
		}
	}
}

// replacePacket writes what was held before p, then out (nil: p is
// dropped), and marks p dealt with. Two writes: appending to the held
// bytes would write into the read buffer over the packets after p.
func replacePacket(sess *Session, client net.Conn, r *mqttwire.Reader, p mqttwire.Packet, out []byte) bool {
	defer r.Written()
	if held := r.HeldBefore(p); len(held) > 0 && sess.writeClient(client, held) != nil {
		return false
	}
	return len(out) == 0 || sess.writeClient(client, out) == nil
}

func (s *Server) logOpen(sess *Session) {
	ev := s.cfg.Logger.Info().Str("event", "open")
	s.connFields(ev, sess).Msg("connection open")
}

// logClose logs the end of a connection: always for an admitted session
// (the audit trail), and at the security events' bounded rate for one
// refused before its CONNECT was forwarded, so a flood of refused
// connections cannot flood the log.
func (s *Server) logClose(sess *Session) {
	sess.mu.Lock()
	admitted := sess.connected
	sess.mu.Unlock()
	var ev *zerolog.Event
	if admitted {
		ev = s.cfg.Logger.Info()
	} else if ev = s.securityEvent(zerolog.InfoLevel, sess); ev == nil {
		return
	}
	ev = ev.Str("event", "close")
	s.connFields(ev, sess).
		Int64("bytes_in", sess.bytesIn.Load()).
		Int64("bytes_out", sess.bytesOut.Load()).
		Dur("duration", time.Since(sess.start)).
		Str("reason", sess.closeReason()).
		Bool("client_disconnect", sess.disconnected.Load()).
		Msg("connection closed")
}

// connFields adds what is known about a connection; never a password.
func (s *Server) connFields(ev *zerolog.Event, sess *Session) *zerolog.Event {
	ev = ev.Uint64("conn", sess.ID).Stringer("client", sess.ClientAddr)
	if st := sess.TLS; st != nil {
		ev = ev.Str("tls_version", tlsVersionName(st.Version)).Str("cipher", tls.CipherSuiteName(st.CipherSuite))
		if st.ServerName != "" {
			ev = ev.Str("sni", st.ServerName)
		}
		if cert := sess.ClientCert(); cert != nil {
			ev = ev.Str("cert_subject", cert.Subject.String())
		}
	}
	if sess.Version != 0 {
		ev = ev.Stringer("mqtt", sess.Version).Str("client_id", sess.ClientID)
		if sess.Username != "" && !s.cfg.UsernameIsSecret {
			ev = ev.Str("username", sess.Username)
		}
	}
	return ev
}
