package proxy

import (
	"errors"
	"io"
	"net"
	"time"

	"github.com/rs/zerolog"

	"github.com/mqttgate/mqttgate/mqttwire"
)

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
	tr := s.cfg.Traffic
	tl := tally{t: tr, dir: FromClient}
	if tr != nil {
		defer tl.flush()
	}
	for {
		if !r.Buffered() {
			if tr != nil {
				tl.flush()
			}
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
		if tr != nil {
			tl.add(p)
		}
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
		}
		// The stages, in the one order they run (written out here, not
		// as a list: as data they cost 3-7% of the PUBLISH path):
		//  1. a PUBREL of a QoS 2 PUBLISH the proxy refused (above);
		//  2. the limits, before the topic rights: topic sizes are
		//     checked before an alias is stored, a SUBSCRIBE before the
		//     ACL rewrites it;
		//  3. the topic rights;
		//  4. the inspector.
		// Each decision is carried out by enforce; what all of them
		// forward is then recorded by the limits and paced.
		if lim != nil {
			if verdict, reason := s.enforce(sess, client, r, in, limitCheck(lim, in), flush, byLimits); verdict != topicForward {
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
			if verdict, reason := s.enforce(sess, client, r, in, s.cfg.Inspector.Inspect(sess, in), flush, byInspector); verdict != topicForward {
				if verdict == topicEnd {
					return reason
				}
				continue
			}
		}
		if lim != nil {
			switch p.Type {
			case mqttwire.PUBLISH:
				lim.Sent(in.Publish.QoS, in.Publish.PacketID)
				if reason := s.pace(sess, client, r, p, &now, flush); reason != "" {
					return reason
				}
			case mqttwire.SUBSCRIBE:
				it := in.Subscribe.Filters()
				for f, ok := it.Next(); ok; f, ok = it.Next() {
					lim.Subscribed(f.Topic)
				}
			case mqttwire.UNSUBSCRIBE:
				lim.Unsubscribe(&in.Subscribe)
			case mqttwire.PUBREL:
				lim.Released(uint16(p.Body[0])<<8 | uint16(p.Body[1])) // validated: it has an id
			case mqttwire.DISCONNECT:
				sessionExpiry(lim, p, v) // forwarded: the broker takes it
			}
		}
		if p.Type == mqttwire.DISCONNECT {
			if !flush(r.Held()) {
				return closeBroker
			}
			return s.afterDisconnect(client)
		}
	}
}

// afterDisconnectWait bounds how long a client that sent DISCONNECT has
// to close its side.
const afterDisconnectWait = time.Second

// afterDisconnect waits, after a client's DISCONNECT went to the broker,
// for the client to close the connection as the protocol says it does,
// reading (and dropping) what it still sends, such as TLS's close_notify.
// Closing first with those bytes unread would send the client a TCP
// reset where the broker itself would have closed cleanly.
func (s *Server) afterDisconnect(client net.Conn) string {
	_ = client.SetReadDeadline(time.Now().Add(afterDisconnectWait))
	_, _ = io.Copy(io.Discard, io.LimitReader(client, 64<<10))
	return closeClient
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

// throttle holds the client pump (so the client's TCP window fills: the
// backpressure mature brokers apply) until it may send again, once what
// was read has been written on; or ends the session when the rate is
// configured to disconnect.
func (s *Server) throttle(sess *Session, client net.Conn, d time.Duration) string {
	s.Stats.Throttled.Add(1)
	if dec := sess.limiter.OverRate(); dec.Verdict == End {
		s.limitHit(sess, dec.Why)
		s.disconnect(sess, client, dec.Code)
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
	tr := s.cfg.Traffic
	tl := tally{t: tr, dir: FromBroker}
	if tr != nil {
		defer tl.flush()
	}
	for {
		if !r.Buffered() {
			if tr != nil {
				tl.flush()
			}
			if held := r.Held(); len(held) > 0 {
				if sess.writeClientAnswer(client, held, !first) != nil {
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
			if first && sess.Version == mqttwire.V5 && errors.Is(err, io.EOF) {
				// The broker closed on the v5 CONNECT without a CONNACK:
				// what a broker that speaks only 3.1.1 does (RabbitMQ
				// 3.10). The client is told so, rather than left with a
				// bare close.
				s.brokerSpeaksNoV5(sess, client, mqttwire.UnsupportedProtocolVersion, "closed without CONNACK")
			} else if first && s.cfg.BackendTLS != nil && !errors.Is(err, io.EOF) {
				// Over TLS, an error rather than a close: most often an alert
				// sent after a TLS 1.3 handshake that was complete on this
				// side (the broker wanted a client certificate).
				s.brokerTLSEnded(sess, client, err)
			}
			if !sess.disconnected.Load() {
				sess.closeAll(closeBroker)
			} // else the client pump reads the client's own close (see afterDisconnect): closing now would reset it
			return closeBroker
		}
		if tr != nil {
			tl.add(p)
		}
		if first {
			first = false
			if sess.Version == mqttwire.V5 && p.Type == mqttwire.CONNACK && len(p.Body) == 2 {
				// A 3.1.1 CONNACK (no properties) to a v5 CONNECT: the
				// broker does not speak 5.0; its code, in 5.0's terms.
				code := mqttwire.UnsupportedProtocolVersion
				switch p.Body[1] {
				case 0x02:
					code = mqttwire.ClientIdentifierNotValid
				case 0x03:
					code = mqttwire.ServerUnavailable
				case 0x04:
					code = mqttwire.BadUserNameOrPassword
				case 0x05:
					code = mqttwire.NotAuthorized
				}
				s.brokerSpeaksNoV5(sess, client, code, "3.1.1 CONNACK")
				sess.closeAll(closeBroker)
				return closeBroker
			}
			if !s.connackSeen(sess, p) {
				sess.closeAll(closeBroker)
				return closeBroker
			}
			if connack := s.rewriteConnack(sess, p, sess.keepAliveCapped); connack != nil {
				if !replacePacket(sess, client, r, p, nil) || sess.writeClientAnswer(client, connack, true) != nil {
					return closeClient
				}
				continue
			}
		}
		if sess.limiter != nil {
			if finalAck(p, sess.Version) {
				sess.limiter.Acked(uint16(p.Body[0])<<8|uint16(p.Body[1]), p.Type)
			}
		}
		if merged := sess.mergeSuback(p); merged != nil {
			if !replacePacket(sess, client, r, p, merged) {
				return closeClient
			}
			continue
		}
		if rc := sess.topics.recv.Load(); rc == nil {
			if sess.topics.noteAliases && p.Type == mqttwire.PUBLISH {
				sess.noteBrokerAlias(p)
			}
		} else {
			switch s.checkDelivery(sess, rc.rights, p) {
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

// brokerSpeaksNoV5 answers a v5 client whose CONNECT the broker did not
// answer in 5.0, and logs why.
func (s *Server) brokerSpeaksNoV5(sess *Session, client net.Conn, code mqttwire.ReasonCode, what string) {
	s.cfg.Logger.Warn().Str("event", "broker_no_v5").Uint64("conn", sess.ID).Str("client_id", sess.ClientID).Str("broker", what).
		Msg("the broker did not accept an MQTT 5.0 CONNECT: the client is refused with a 5.0 CONNACK")
	_ = client.SetWriteDeadline(time.Now().Add(time.Second))
	_ = sess.writeClient(client, mqttwire.AppendConnack(nil, mqttwire.V5, false, code, nil))
}

// connackSeen takes from the broker's first packet, its CONNACK, once,
// what the session's enforcement needs: whether the broker accepted the
// client and resumed a session (MQTT 3.1's CONNACK cannot say: a client
// that did not ask for a clean start is taken as resumed), the v5 Topic
// Alias Maximum the client was given and the Session Expiry the broker
// set. It turns the delivery check on for a resumed session
// (judgeResumedSession), and reports false when the session must end.
func (s *Server) connackSeen(sess *Session, p mqttwire.Packet) bool {
	if p.Type != mqttwire.CONNACK || len(p.Body) < 2 || p.Body[1] != 0 {
		return true // not accepted: the client reads why from it
	}
	present := p.Body[0]&1 != 0
	if sess.Version == mqttwire.V31 {
		present = !sess.cleanStart
	}
	var expiry uint32
	var expirySet bool
	var assigned []byte
	if sess.Version == mqttwire.V5 {
		if a, err := mqttwire.ParseAck(p, mqttwire.V5); err == nil {
			if n, _, ok := a.Properties.Lookup(mqttwire.PropTopicAliasMaximum); ok {
				sess.topicAliasMax.Store(n)
			}
			expiry, _, expirySet = a.Properties.Lookup(mqttwire.PropSessionExpiry)
			_, assigned, _ = a.Properties.Lookup(mqttwire.PropAssignedClientID)
		}
	}
	if lim := sess.limiter; lim != nil {
		lim.Started(present, string(assigned))
		if expirySet {
			lim.Expiry(expiry)
		}
	}
	return s.judgeResumedSession(sess, present)
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
