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
			s.disconnect(sess, client, mqttwire.NotAuthorized, closeExpired)
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
	// tl counts nothing without Traffic.
	tl := tally{t: s.cfg.Traffic, dir: FromClient}
	defer tl.flush()
	for {
		if !r.Buffered() {
			tl.flush()
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
			if oe := (*net.OpError)(nil); errors.As(err, &oe) && oe.Op == "write" {
				return s.clientWriteEnd(sess, err) // a write the read made (a WebSocket pong, a TLS key update) failed
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() && sess.keepAlive > 0 {
				s.limitHit(sess, "keepalive")
				s.disconnect(sess, client, mqttwire.KeepAliveTimeout, closeKeepAlive)
				return closeKeepAlive
			}
			return s.readFailed(sess, client, err)
		}
		in.Packet = p
		tl.add(p)
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
		s.disconnect(sess, client, dec.Code, closeLimit)
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
		s.disconnect(sess, client, perr.Code, closeProtocol)
		return closeProtocol
	}
	return closeClient // EOF, reset, or closed by the other pump
}

// disconnect ends the session for reason (the close reason the caller
// then returns, named first: a write of the broker pump's that the
// DISCONNECT's bound cuts short is then not taken for the client's
// doing), and sends a v5 client DISCONNECT with a reason code; v3 has no
// way to say why, so the connection is just closed.
func (s *Server) disconnect(sess *Session, client net.Conn, code mqttwire.ReasonCode, reason string) {
	sess.name(reason)
	if sess.Version != mqttwire.V5 {
		return
	}
	sess.awaitConnack(finalWriteWait)
	sess.writeClientLast(client, mqttwire.AppendDisconnect(nil, mqttwire.V5, code, ""), true)
}
