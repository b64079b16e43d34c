package proxy

import (
	"errors"
	"io"
	"net"

	"github.com/mqttgate/mqttgate/mqttwire"
)

// brokerToClient copies broker packets to the client, whole packets at a
// time so that the proxy's own packets never land inside one.
func (s *Server) brokerToClient(sess *Session, client net.Conn) string {
	r := mqttwire.NewReader(sess.broker, initialReadBuffer, mqttwire.MaxRemainingLength)
	r.UsePool(s.bufs)
	r.HoldPackets()
	first := true
	// accepted: the broker's CONNACK admitted the client; said: the
	// broker sent its own DISCONNECT.
	accepted, said := false, false
	// tl counts nothing without Traffic.
	tl := tally{t: s.cfg.Traffic, dir: FromBroker}
	defer tl.flush()
	for {
		if !r.Buffered() {
			tl.flush()
			if held := r.Held(); len(held) > 0 {
				if err := sess.writeClientAnswer(client, held, accepted); err != nil {
					return s.clientWriteFailed(sess, err)
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
			} else if accepted && !said {
				s.brokerLost(sess, client)
			}
			if !sess.disconnected.Load() {
				sess.closeAll(closeBroker)
			} // else the client pump reads the client's own close (see afterDisconnect): closing now would reset it
			return closeBroker
		}
		tl.add(p)
		if first && sess.Version == mqttwire.V5 && p.Type == mqttwire.AUTH {
			continue // enhanced authentication, which may come before the CONNACK [MQTT-3.2.0-1]: passed on as it is
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
			if p.Type != mqttwire.CONNACK || len(p.Body) < 2 {
				// The broker's first packet must be its CONNACK (after
				// AUTH, above) [MQTT-3.2.0-1]: anything else would reach a
				// client that is not admitted.
				s.cfg.Logger.Error().Str("event", "broker_protocol_error").Uint64("conn", sess.ID).Str("client_id", sess.ClientID).
					Stringer("packet", p.Type).Msg("the broker's first packet is not a CONNACK")
				sess.closeAll(closeBroker)
				return closeBroker
			}
			accepted = p.Body[1] == 0
			if !s.connackSeen(sess, p) {
				sess.closeAll(closeBroker)
				return closeBroker
			}
			if !accepted {
				continue // the refusal goes to the client as the broker wrote it (held); the broker closes next
			}
			if connack := s.rewriteConnack(sess, p, sess.keepAliveCapped); connack != nil {
				err := replacePacket(sess, client, r, p, nil)
				if err == nil {
					err = sess.writeClientAnswer(client, connack, accepted)
				}
				if err != nil {
					return s.clientWriteFailed(sess, err)
				}
				continue
			}
		}
		if !accepted {
			// After a CONNACK that refused the client, the broker closes
			// [MQTT-3.2.2-7]; nothing it sends first reaches the client.
			if held := r.HeldBefore(p); len(held) > 0 {
				_ = sess.writeClient(client, held)
			}
			sess.closeAll(closeBroker)
			return closeBroker
		}
		said = said || p.Type == mqttwire.DISCONNECT
		if sess.limiter != nil {
			if finalAck(p, sess.Version) {
				sess.limiter.Acked(uint16(p.Body[0])<<8|uint16(p.Body[1]), p.Type)
			}
		}
		if merged := sess.mergeSuback(p); merged != nil {
			if err := replacePacket(sess, client, r, p, merged); err != nil {
				return s.clientWriteFailed(sess, err)
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
				if err := replacePacket(sess, client, r, p, nil); err != nil {
					return s.clientWriteFailed(sess, err)
				}
			case deliveryBrokerGone:
				sess.closeAll(closeBroker)
				return closeBroker
			}
		}
	}
}

// brokerLost tells a v5 client whose broker connection ended without
// the broker's DISCONNECT (the broker died or was cut off) why its
// connection ends, as a node taken down by the checks does: DISCONNECT
// 0x9C Use another server with Config.DrainServerReference, 0x8B Server
// shutting down without. Not after the client's own DISCONNECT, nor when
// the proxy is the one closing (a kick, a drain, the client's end).
func (s *Server) brokerLost(sess *Session, client net.Conn) {
	if sess.Version != mqttwire.V5 || sess.isClosed() {
		return
	}
	sess.name(closeBroker) // before the DISCONNECT's bound cuts a waiting write short: not the client's doing
	code, ref := mqttwire.ServerShuttingDown, s.cfg.DrainServerReference
	if ref != "" {
		code = mqttwire.UseAnotherServer
	}
	sess.writeClientLast(client, mqttwire.AppendDisconnect(nil, mqttwire.V5, code, ref), true)
}

// brokerSpeaksNoV5 answers a v5 client whose CONNECT the broker did not
// answer in 5.0, and logs why.
func (s *Server) brokerSpeaksNoV5(sess *Session, client net.Conn, code mqttwire.ReasonCode, what string) {
	s.cfg.Logger.Warn().Str("event", "broker_no_v5").Uint64("conn", sess.ID).Str("client_id", sess.ClientID).Str("broker", what).
		Msg("the broker did not accept an MQTT 5.0 CONNECT: the client is refused with a 5.0 CONNACK")
	sess.writeClientLast(client, mqttwire.AppendConnack(nil, mqttwire.V5, false, code, nil), false)
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
func replacePacket(sess *Session, client net.Conn, r *mqttwire.Reader, p mqttwire.Packet, out []byte) error {
	defer r.Written()
	if held := r.HeldBefore(p); len(held) > 0 {
		if err := sess.writeClient(client, held); err != nil {
			return err
		}
	}
	if len(out) == 0 {
		return nil
	}
	return sess.writeClient(client, out)
}

// clientWriteFailed ends the session, and its broker connection with
// it, when what the broker sent cannot be written to the client (see
// clientWriteEnd): the broker pump never ends alone.
func (s *Server) clientWriteFailed(sess *Session, err error) string {
	reason := s.clientWriteEnd(sess, err)
	sess.closeAll(reason)
	return reason
}
